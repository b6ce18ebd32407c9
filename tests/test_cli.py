"""The ``plex`` command line: flags and help come from the config dataclasses, defaults chain from one
step to the next, and bad settings end in one line that names the fix (with the traceback under -v)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil

import datasets
import pytest

import plex.assets
from plex.cli import build_parser, main
from plex.config import (
    DEFAULT_CLASSIFIER,
    BenchConfig,
    ClassifierTrainConfig,
    DemoConfig,
    EvaluateConfig,
    ExplainConfig,
    LabelConfig,
    StudentTrainConfig,
)


def subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in subcommands(sub))


def test_every_option_of_every_subcommand_has_help():
    missing = []
    for name, sub in subcommands(build_parser()):
        for action in sub._actions:
            text = (action.help or "").strip()
            if action.dest != "help" and (not text or text.startswith("default:")):
                missing.append(f"plex {name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "options without help: " + ", ".join(missing)


@pytest.mark.parametrize("command,cls", [("label", LabelConfig), ("train", StudentTrainConfig),
                                         ("explain", ExplainConfig), ("evaluate", EvaluateConfig),
                                         ("bench", BenchConfig), ("demo", DemoConfig)])
def test_flags_are_the_config_fields_with_their_defaults_shown(command, cls):
    sub = dict(subcommands(build_parser()))[command]
    by_dest = {a.dest: a for a in sub._actions}
    for f in dataclasses.fields(cls):
        action = by_dest[f.name]
        assert action.default is None  # unset flags leave the dataclass default in charge
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, str) and default and "default" not in action.help.lower().split("(default")[0]:
            assert f"(default: {default})" in action.help.replace("%%", "%"), (f.name, action.help)


def test_bare_commands_chain():
    assert ClassifierTrainConfig().output == DEFAULT_CLASSIFIER  # where bare plex label looks
    assert LabelConfig().output == StudentTrainConfig().labels
    checkpoint = StudentTrainConfig().output
    assert ExplainConfig().checkpoint == EvaluateConfig().checkpoint == BenchConfig().checkpoint == checkpoint


@pytest.fixture
def fake_polarity(monkeypatch):
    names = datasets.ClassLabel(names=["class_0", "class_1"])
    features = datasets.Features({"text": datasets.Value("string"), "label": names})
    texts = ["a good film", "a bad film", "good music , bad plot", "dull and slow", "a fine cast", "great fun"]
    split = datasets.Dataset.from_dict({"text": texts, "label": [1, 0, 1, 0, 1, 1]}, features=features)
    monkeypatch.setitem(plex.assets.CORPORA, "polarity", lambda: datasets.DatasetDict({"train": split, "test": split}))


def test_bare_label_train_explain_chain_in_a_fresh_folder(tmp_path, monkeypatch, capsys, tiny_bert_path,
                                                          fake_polarity):
    """With the classifier where ``plex classifier train`` puts it, label -> train -> explain need no paths."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_bert_path, tmp_path / DEFAULT_CLASSIFIER)
    assert main(["label", "--limit", "6", "--teacher-args", "{num_samples: 10}", "--device", "cpu"]) == 0
    assert (tmp_path / LabelConfig().output / "manifest.json").is_file()
    assert main(["train", "--max-epochs", "1", "--accelerator", "cpu", "--logger", "none"]) == 0
    assert (tmp_path / StudentTrainConfig().output / "model.safetensors").is_file()
    (tmp_path / "in.txt").write_text("a good film\nbad plot\n")
    capsys.readouterr()
    assert main(["explain", "--input", "in.txt", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]  # -o defaults to stdout
    assert [r["text"] for r in rows] == ["a good film", "bad plot"]
    assert [len(r["scores"]) for r in rows] == [3, 2]
    assert main(["explain", "--input", "in.txt", "--device", "cpu", "--target", "class_1", "-o", "t.jsonl"]) == 0
    assert {json.loads(line)["target"] for line in (tmp_path / "t.jsonl").read_text().splitlines()} == {1}


def test_malformed_teacher_args_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["label", "--teacher-args", "{num_samples: [500"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--teacher-args" in err and "not valid YAML" in err and "num_samples: 500" in err
    assert "Traceback" not in err


def test_malformed_config_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("teacher: lime\nteacher_args: {num_samples: 5\n")
    assert main(["label", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "YAML" in err and "Traceback" not in err


def test_errors_are_one_line_and_verbose_shows_the_traceback(tmp_path, capsys):
    args = ["train", "--labels", str(tmp_path / "nowhere")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a labels folder" in err and "-v" in err
    assert main(["-v", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "not a labels folder" in err


def test_explain_without_input_names_the_flag(capsys):
    assert main(["explain"]) == 2
    assert "--input" in capsys.readouterr().err


def test_demo_writes_every_artefact_under_its_output(tmp_path, monkeypatch, tiny_bert_path, fake_polarity):
    from plex.demo import run_demo

    monkeypatch.chdir(tmp_path)
    lines = []
    summary = run_demo(DemoConfig(output="elsewhere/demo", classifier=str(tiny_bert_path), limit=6, num_samples=10,
                                  held_out=3, reference_samples=30), echo=lines.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]  # nothing in ./checkpoints or ./outputs
    out = tmp_path / "elsewhere" / "demo"
    assert {"labels-lime-10", "student", "test-lime-10", "test-lime-10-seed1", "test-lime-30-reference",
            "explanations.jsonl", "explanations.html", "summary.json"} <= {p.name for p in out.iterdir()}
    assert summary["held_out"] == 3 and (out / "student" / "model.safetensors").is_file()
    # the table sets the student, its teacher at its budget and the teacher's retest against the reference
    table = "\n".join(lines)
    assert "agreement with the reference LIME-30" in table and "LIME-10, seed 1" in table
    assert "retest reliability r" in table and summary["denoising"]["verdict"] in table
    assert set(summary["vs_reference"]) == {"student", "teacher", "retest"}

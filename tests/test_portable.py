"""Portable artefacts: checkpoints and labels folders that name their classifier so they can move,
save_pretrained / from_pretrained, the model card, corrupt checkpoints, and labelling warnings."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import plex
from plex.classifiers.portable import candidates, locate, portable, without_locations
from plex.config import LabelConfig, StudentTrainConfig
from plex.label import LabelsMismatchError, load_labels, read_manifest, run_label
from plex.student.checkpoint import CheckpointError, read_model_card
from plex.student.train import train_student

from conftest import make_tiny_bert

WORDS = "good bad great awful fun dull film plot music slow".split()
PROBE = ["good film , great music", "a dull and slow plot", "fun"]


def write_corpus(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("text\n" + "\n".join(" ".join(rng.choice(WORDS, size=rng.integers(3, 7))) for _ in range(n)) + "\n")


def label_cfg(root: Path, limit: int, classifier: str | None) -> LabelConfig:
    return LabelConfig(dataset=str(root / "data" / "c.csv"), label_column=None, classifier=classifier, teacher="lime",
                       teacher_args={"num_samples": 10, "seed": 0}, output=str(root / "labels"), limit=limit,
                       shard_size=4, device="cpu", batch_size=8)


def train(root: Path, name: str):
    return train_student(StudentTrainConfig(labels=str(root / "labels"), output=str(root / "checkpoints" / name),
                                            max_epochs=1, accelerator="cpu", logger="none"), progress=False)


def rows(folder: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in load_labels(folder)]


def scores(student) -> list[np.ndarray]:
    return [a.scores for a in student.explain(PROBE)]


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A classifier, labels and a student made under ``a/``, then the whole tree moved to ``b/``."""
    top = tmp_path_factory.mktemp("portable")
    a, b = top / "a", top / "b"
    make_tiny_bert(a / "checkpoints" / "classifier")
    write_corpus(a / "data" / "c.csv", 9, seed=1)
    run_label(label_cfg(a, 6, str(a / "checkpoints" / "classifier")), progress=False)
    train(a, "student")
    before = {"scores": scores(plex.Plex.from_pretrained(a / "checkpoints" / "student", device="cpu")),
              "rows": rows(a / "labels"),
              "config": json.loads((a / "checkpoints" / "student" / "config.json").read_text()),
              "manifest": read_manifest(a / "labels")}
    shutil.move(a, b)
    return a, b, before


def test_records_are_relative_with_an_absolute_hint(moved):
    a, b, before = moved
    clf = before["config"]["classifier"]
    assert clf["path"] == "../classifier" and clf["path_hint"] == str((a / "checkpoints" / "classifier").resolve())
    emb = before["config"]["embedding"]
    assert emb["white_box"] and emb["encoder"] == "../classifier" and emb["encoder_hint"] == clf["path_hint"]
    recorded = before["manifest"]["settings"]["classifier"]
    assert recorded["path"] == "../checkpoints/classifier" and recorded["path_hint"] == clf["path_hint"]
    assert recorded["weights_sha256"] == clf["weights_sha256"]


def test_moved_student_loads_and_explains_the_same(moved):
    a, b, before = moved
    assert not a.exists()
    student = plex.Plex.from_pretrained(b / "checkpoints" / "student", device="cpu")
    assert student.classifier.identity()["path"] == str((b / "checkpoints" / "classifier").resolve())
    for old, new in zip(before["scores"], scores(student)):
        np.testing.assert_allclose(new, old, atol=1e-6)


def test_moved_labels_train_and_resume(moved):
    a, b, before = moved
    # plex train finds the classifier through the manifest's relative path (the hint is gone)
    result = train(b, "student-2")
    assert json.loads((result.checkpoint / "config.json").read_text())["classifier"]["path"] == "../classifier"
    # a larger limit resumes: the classifier found the same way (classifier=None), rows added, none lost
    resumed = run_label(label_cfg(b, 9, None), progress=False)
    assert (resumed.rows, resumed.added) == (9, 3)
    now = rows(b / "labels")
    assert [r["idx"] for r in now] == list(range(9)) and now[:6] == before["rows"]
    recorded = read_manifest(b / "labels")["settings"]["classifier"]
    assert recorded["path"] == "../checkpoints/classifier"
    assert recorded["path_hint"] == str((b / "checkpoints" / "classifier").resolve())  # rewritten for the new place
    # and with the classifier named explicitly at its new place
    again = run_label(label_cfg(b, 9, str(b / "checkpoints" / "classifier")), progress=False)
    assert (again.rows, again.added) == (9, 0)


def test_resume_with_other_weights_is_refused(moved, tmp_path):
    a, b, before = moved
    other = make_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(LabelsMismatchError, match="weights_sha256"):
        run_label(label_cfg(b, 9, str(other)), progress=False)


def test_save_pretrained_rewrites_the_record_for_the_new_place(moved, tmp_path):
    a, b, before = moved
    student = plex.Plex.from_pretrained(b / "checkpoints" / "student", device="cpu")
    target = b / "shared" / "deep" / "copy"
    assert student.save_pretrained(target) == target
    config = json.loads((target / "config.json").read_text())
    assert config["classifier"]["path"] == "../../../checkpoints/classifier"
    assert config["embedding"]["encoder"] == "../../../checkpoints/classifier"
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    again = plex.Plex.from_pretrained(target, device="cpu")
    for old, new in zip(before["scores"], scores(again)):
        np.testing.assert_allclose(new, old, atol=1e-6)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a plex checkpoint"):
        student.save_pretrained(tmp_path / "busy")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_model_card_front_matter(moved):
    a, b, before = moved
    folder = b / "checkpoints" / "student"
    meta = read_model_card(folder)
    assert meta["library_name"] == "plex" and meta["base_model"] == "../classifier"
    assert {"plex", "explainability", "feature-attribution"} <= set(meta["tags"])
    assert meta["teacher"]["name"] == "lime" and meta["teacher"]["settings"]["num_samples"] == 10
    metrics = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert set(metrics) == {"val/spearman", "val/top3"}
    assert metrics["val/spearman"] == pytest.approx(before["config"]["metrics"]["val/spearman"], nan_ok=True)
    body = (folder / "README.md").read_text()
    assert "plex.Plex.from_pretrained(" in body


def test_classifier_gone_needs_an_explicit_one(moved, tmp_path):
    a, b, before = moved
    lonely = tmp_path / "lonely"
    shutil.copytree(b / "checkpoints" / "student", lonely)
    with pytest.raises(CheckpointError) as err:
        plex.Plex.from_pretrained(lonely, device="cpu")
    message = str(err.value)
    assert "\n" not in message and "classifier=" in message and "--classifier" in message
    assert str((tmp_path / "classifier").resolve()) in message  # the relative path, then the hint, were tried
    assert before["config"]["classifier"]["path_hint"] in message
    student = plex.Plex.from_pretrained(lonely, classifier=str(b / "checkpoints" / "classifier"), device="cpu")
    for old, new in zip(before["scores"], scores(student)):
        np.testing.assert_allclose(new, old, atol=1e-6)
    other = make_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(CheckpointError, match="use the same classifier"):
        plex.Plex.from_pretrained(lonely, classifier=str(other), device="cpu")


def shrink_hidden_layer(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["scorer"]["hidden_dim"] = 7
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda f: (f / "model.safetensors").write_bytes(b"\x00garbage!"), r"model\.safetensors is not readable"),
        (lambda f: (f / "config.json").write_text('{"format": "plex-student/1", "sc'), r"config\.json is not readable"),
        (shrink_hidden_layer, "do not fit"),
    ],
    ids=["garbage-weights", "malformed-config", "weights-do-not-fit"],
)
def test_corrupt_checkpoint_is_one_clear_line(moved, tmp_path, damage, match):
    a, b, before = moved
    broken = tmp_path / "broken"
    shutil.copytree(b / "checkpoints" / "student", broken)
    damage(broken)
    with pytest.raises(CheckpointError, match=match) as err:
        plex.Plex.from_pretrained(broken, device="cpu")
    assert "\n" not in str(err.value) and "retrain" in str(err.value) and str(broken) in str(err.value)


def test_hub_name_offline_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError, match="unreachable") as err:
        plex.Plex.from_pretrained("someone/plex-student-nowhere", device="cpu")
    assert "local folder" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="not a folder"):
        plex.Plex.from_pretrained(str(tmp_path / "no" / "such" / "student"), device="cpu")


def test_portable_records_and_resolution_order(tmp_path):
    clf = tmp_path / "models" / "clf"
    clf.mkdir(parents=True)
    art = tmp_path / "runs" / "student"
    hub = {"kind": "huggingface", "path": "org/model", "weights_sha256": "x", "labels": ["a", "b"]}
    assert portable(hub, art) == hub
    assert portable({"kind": "prompt", "path": "prompt:smollm2", "model": "smollm2"}, art)["path"] == "prompt:smollm2"
    assert portable({"kind": "callable", "path": "/not/a/location"}, art)["path"] == "/not/a/location"
    local = portable({**hub, "path": str(clf)}, art)
    assert local["path"] == "../../models/clf" and local["path_hint"] == str(clf.resolve())
    spec = portable({"kind": "prompt", "path": f"prompt:{clf}", "model": str(clf)}, art)
    assert spec["path"] == "prompt:../../models/clf" and spec["path_hint"] == f"prompt:{clf.resolve()}"
    assert spec["model"] == "../../models/clf"
    assert without_locations(local) == without_locations({**hub, "path": "elsewhere"})

    assert locate(hub, art) == "org/model"  # a name is passed on to the loader
    assert locate(local, art) == str(clf.resolve())  # the relative path first
    moved = tmp_path / "moved" / "runs" / "student"
    assert candidates(local, moved) == [str(tmp_path / "moved" / "models" / "clf"), str(clf.resolve())]
    assert locate(local, moved) == str(clf.resolve())  # then the hint
    old = {**hub, "path": str(clf)}  # written before records were portable: the absolute path is a hint
    assert locate(old, art) == str(clf)
    shutil.rmtree(clf)
    with pytest.raises(CheckpointError, match="tried"):
        locate(old, art)


def test_old_manifest_with_an_absolute_path_resumes(tmp_path, tiny_bert_path):
    root = tmp_path / "r"
    write_corpus(root / "data" / "c.csv", 5, seed=2)
    run_label(label_cfg(root, 3, str(tiny_bert_path)), progress=False)
    manifest = read_manifest(root / "labels")
    record = manifest["settings"]["classifier"]
    record["path"] = record.pop("path_hint")  # as written before this change
    (root / "labels" / "manifest.json").write_text(json.dumps(manifest))
    result = run_label(label_cfg(root, 5, None), progress=False)
    assert (result.rows, result.added) == (5, 2)


def test_labelling_warns_about_empty_texts_and_conflicting_gold(tmp_path, linear_bow, caplog):
    texts = ["good film", "", "bad plot", "   ", "good film", "fun", "bad plot", "bad plot"]
    gold = [1, 0, 0, 1, 0, 1, 0, 0]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(texts, gold)))
    cfg = LabelConfig(dataset=str(data), classifier="linear-bow", teacher="occlusion", output=str(tmp_path / "l"))
    with caplog.at_level(logging.WARNING, logger="plex.label"):
        result = run_label(cfg, classifier=linear_bow[1], progress=False)
    assert result.rows == len(texts)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    empty = [m for m in messages if "no words" in m]
    assert len(empty) == 1 and "2 of 8 texts" in empty[0] and "rows 1, 3" in empty[0]
    conflicts = [m for m in messages if "different gold labels" in m]
    assert len(conflicts) == 1 and "labels: 1 (in 2 rows)" in conflicts[0] and "rows 0, 4" in conflicts[0]
    labels = load_labels(cfg.output)
    assert labels[1]["words"] == [] and labels[3]["words"] == [] and labels[3]["scores"] == [[], []]


def test_labelling_a_csv_keeps_an_empty_field_and_names_a_broken_quote(tmp_path, linear_bow, caplog):
    from plex.data import DataError

    data = tmp_path / "d.csv"
    data.write_text('text,label\ngood film,1\n"",0\nbad plot,0\n')  # an empty field reads as None
    cfg = LabelConfig(dataset=str(data), classifier="linear-bow", teacher="occlusion", output=str(tmp_path / "l"))
    with caplog.at_level(logging.WARNING):
        assert run_label(cfg, classifier=linear_bow[1], progress=False).rows == 3
    assert any("no words" in r.getMessage() and "rows 1" in r.getMessage() for r in caplog.records)
    assert load_labels(cfg.output)[1]["words"] == []
    broken = tmp_path / "b.csv"
    broken.write_text('text,label\ngood film,1\n"bad plot,0\nfun,1\n')
    with pytest.raises(DataError, match=r"line 3 of .* opens a quoted field"):
        run_label(LabelConfig(dataset=str(broken), classifier="linear-bow", teacher="occlusion",
                              output=str(tmp_path / "l2")), classifier=linear_bow[1], progress=False)
    assert not (tmp_path / "l2").exists()


def test_a_recorded_function_is_never_located(tmp_path):
    """A callable classifier has no location: loading a student or labels of one asks for it."""
    from plex.classifiers.portable import locate

    record = {"kind": "callable", "path": "linear-bow", "labels": ["negative", "positive"]}
    with pytest.raises(CheckpointError, match=r"Python function \('linear-bow'\).*classifier="):
        locate(record, tmp_path)

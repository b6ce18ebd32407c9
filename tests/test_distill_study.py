"""``plex study distill`` end to end on a tiny random BERT: labels shared across allocations, draws,
variants chosen on selection texts, figures on test texts, and a resumed run that redoes nothing."""

import json

import numpy as np
import pytest

from plex.cli import main
from plex.config import DistillStudyConfig
from plex.evaluate.distill import allocations, run_distill_study, variants

WORDS = "good bad great awful fun dull film plot music slow fast calm loud".split()


def corpus(path, n, seed):
    rng = np.random.default_rng(seed)
    rows = [(" ".join(rng.choice(WORDS, size=rng.integers(4, 9))), f"class_{i % 2}") for i in range(n)]
    path.write_text("text,label\n" + "\n".join(f"{t},{y}" for t, y in rows) + "\n")


@pytest.fixture()
def study_cfg(tmp_path, tiny_bert_path):
    corpus(tmp_path / "train.csv", 20, seed=1)
    corpus(tmp_path / "test.csv", 6, seed=2)
    return DistillStudyConfig(
        classifier=str(tiny_bert_path), dataset=str(tmp_path / "train.csv"), test_data=str(tmp_path / "test.csv"),
        allocations=[{"texts": 12, "samples": 20}, {"texts": 6, "samples": 20, "draws": 2},
                     {"texts": 8, "samples": 10}],
        variants=[{"name": "frozen", "context_layers": 0, "max_epochs": 2},
                  {"name": "context", "context_layers": 1, "max_epochs": 2},
                  {"name": "branch", "branch_layers": 1, "context_layers": 0, "max_epochs": 1,
                   "allocations": ["8x10"]}],
        n_test=5, select_n=4, reference_samples=60, shard_size=4, out=str(tmp_path / "study"))


def test_distill_study_end_to_end_and_resumed(study_cfg, tmp_path, monkeypatch):
    summary = run_distill_study(study_cfg, progress=False)
    out = tmp_path / "study"
    assert {"study.json", "study.md", "agreement.png", "select.jsonl"} <= {p.name for p in out.iterdir()}
    # one labels folder per (budget, seed), as large as its largest allocation; the draw of seed 1 only as large as needed
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["lime-10-seed0", "lime-20-seed0", "lime-20-seed1"]
    from plex.label import load_labels

    assert len(load_labels(out / "labels" / "lime-20-seed0")) == 12
    assert len(load_labels(out / "labels" / "lime-20-seed1")) == 6
    # selection texts are the end of the training split, never labelled for training
    select = [json.loads(line)["text"] for line in (out / "select.jsonl").read_text().splitlines()]
    trained = set(load_labels(out / "labels" / "lime-20-seed0")["text"])
    assert len(select) == 4 and not set(select) & trained

    assert set(summary["teachers"]) == {"lime-10", "lime-20"}
    for t in summary["teachers"].values():
        assert t["test"]["spearman"]["n"] == 5 and 0 < t["sqrt_r"]["mean"] ** 2 == pytest.approx(t["retest_r"]["mean"])
    rows = summary["students"]
    assert len(rows) == 7 and {r["variant"] for r in rows} == {"frozen", "context", "branch"}
    assert [r["allocation"] for r in rows if r["variant"] == "branch"] == ["8x10"]  # where it was asked to run
    by = {(r["allocation"], r["variant"]): r for r in rows}
    assert by[("6x20x2", "context")]["compute"] == 6 * 20 * 2 and by[("12x20", "frozen")]["draws"] == 1
    for r in rows:
        assert r["test"]["spearman"]["n"] == 5 and r["forward_passes"] > 0
        config = json.loads((tmp_path / "study" / "students" / r["allocation"] / r["variant"] / "config.json")
                            .read_text())
        assert config["train_texts"] + config["val_texts"] == r["texts"]
        assert len(config["draws"]) == r["draws"] - 1
        assert (config["scorer"]["context_layers"] == 1) == (r["variant"] == "context")
        assert config["scorer"]["branch_layers"] == (r["variant"] == "branch")
    # the choice is made on the selection texts, per allocation
    for alloc, variant in summary["chosen_per_allocation"].items():
        there = [r["select"]["spearman"]["mean"] for r in rows if r["allocation"] == alloc]
        assert by[(alloc, variant)]["select"]["spearman"]["mean"] == max(there)
    assert summary["baseline"] == {"allocation": "12x20", "variant": "frozen"}
    assert by[("12x20", "frozen")]["minus_baseline"]["mean"] == 0.0
    other = by[("8x10", "context")]
    assert other["minus_baseline"]["mean"] == pytest.approx(
        np.nanmean(np.subtract(other["per_text_spearman"], by[("12x20", "frozen")]["per_text_spearman"])))
    md = (out / "study.md").read_text()
    assert "| 6x20x2 | 240 | context |" in md and "## Teacher at each budget" in md

    # resumed: nothing is labelled or trained again
    import plex.evaluate.distill as distill
    import plex.student.train as train

    monkeypatch.setattr(train, "train_student", lambda *a, **k: pytest.fail("retrained a finished student"))
    again = distill.run_distill_study(study_cfg, progress=False)
    assert [r["test"] for r in again["students"]] == [r["test"] for r in rows]
    # a trained student whose measurement was lost is measured again, not retrained
    (out / "students" / "8x10" / "frozen" / "study-result.json").unlink()
    again = distill.run_distill_study(study_cfg, progress=False)
    assert [r["test"] for r in again["students"]] == [r["test"] for r in rows]


def test_distill_study_settings_fail_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="texts, samples"):
        allocations(DistillStudyConfig(allocations=[{"texts": 10}]))
    with pytest.raises(ValueError, match="set by the study itself"):
        variants(DistillStudyConfig(variants=[{"name": "x", "max_texts": 3}]))
    with pytest.raises(ValueError, match="unknown plex train setting"):
        variants(DistillStudyConfig(variants=[{"name": "x", "context_layer": 1}]))
    with pytest.raises(ValueError, match="allocations must list some of"):
        variants(DistillStudyConfig(variants=[{"name": "x", "allocations": ["1x1"]}]))
    with pytest.raises(ValueError, match="baseline"):
        variants(DistillStudyConfig(variants=[{"name": "x", "allocations": ["3000x40"]}, {"name": "y"}]))
    assert main(["study", "distill", "--config", str(tmp_path / "missing.yaml")]) != 0

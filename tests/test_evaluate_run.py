"""`plex evaluate` end to end on a tiny run: files, schema, and that the numbers are the metrics'."""

import json

import numpy as np
import pytest

from plex.config import EvaluateConfig, LabelConfig, StudentTrainConfig
from plex.evaluate.metrics import AGREEMENT_KEYS, FAITH_KEYS, FIDELITY_KEYS, PLAUS_KEYS
from plex.evaluate.run import run_evaluate
from plex.label import run_label
from plex.student.train import train_student


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory, tiny_bert_path, tiny_classifier):
    root = tmp_path_factory.mktemp("eval")
    rows = ["good film , great music", "bad plot and dull acting", "a fun , fast film", "slow and loud",
            "great acting but a bad plot", "calm music , good story"]
    (root / "train.csv").write_text("text\n" + "\n".join(f'"{r}"' for r in rows * 2) + "\n")
    run_label(LabelConfig(dataset=str(root / "train.csv"), label_column=None, classifier=str(tiny_bert_path),
                          teacher="lime", teacher_args={"num_samples": 20}, output=str(root / "labels")),
              classifier=tiny_classifier, progress=False)
    train_student(StudentTrainConfig(labels=str(root / "labels"), output=str(root / "student"), max_epochs=2,
                                     accelerator="cpu", logger="none"), progress=False)
    lines = [{"text": "A good film with great music.", "label": 1, "rationale_spans": [[2, 6], [17, 22]]},
             {"text": "Bad, bad plot.", "label": 0, "rationale_spans": [[0, 3], [5, 8]]},
             {"text": "Fine", "label": 1, "rationale_spans": [[0, 4]]}]
    (root / "rationales.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def _declared(group: dict) -> set[str]:
    return {k for k, v in group.items() if isinstance(v, dict) and "mean" in v}


def test_evaluate_writes_report_with_declared_metrics(tiny_student, monkeypatch):
    root = tiny_student
    monkeypatch.chdir(root)
    cfg = EvaluateConfig(checkpoint="student", teachers="lime,shap", reference_samples=40,
                         data="rationales.jsonl", split="train", n=3, out="report", stability_edits=False,
                         device="cpu")
    run_evaluate(cfg, progress=False)
    out = root / "report"
    assert {"metrics.json", "report.md", "curves.png", "agreement.png", "speed.png"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["schema"] == "plex-evaluate/2" and saved["n_texts"] == 3 and saved["has_rationales"]
    assert saved["checkpoint"] == "student" and saved["student_teacher"] == "lime"
    assert set(saved["explainers"]) == {"plex", "lime", "shap", "reference"}
    assert saved["reference"]["description"] == "LIME with 40 samples (seed 1000)"
    declared = {m["name"] for m in saved["metrics"]}

    # the headline: every explainer and the teacher's retest against the same reference, with intervals
    headline = saved["headline"]
    assert set(headline["agreement_with_reference"]) == {"plex", "lime", "shap", "lime (seed 1)"}
    for row in headline["agreement_with_reference"].values():
        assert set(row) == set(AGREEMENT_KEYS)
        assert all(set(v) == {"mean", "low", "high", "n"} for v in row.values())
        s = row["spearman"]
        assert s["n"] == 0 or s["low"] <= s["mean"] <= s["high"] or np.isnan(s["low"])
    den = headline["denoising"]
    assert den["teacher"] == "lime" and den["verdict"] in ("denoises", "does not denoise", "inconclusive")
    assert den["difference"]["mean"] == pytest.approx(
        den["student_agreement"]["mean"] - den["teacher_agreement"]["mean"], abs=1e-9) or den["difference"]["n"] < 3
    # student - teacher, paired on the same texts, for every family: the spearman one is the denoising line's
    paired = headline["paired"]
    assert set(paired) == {"lime", "shap"}
    assert paired["lime"]["spearman"] == den["difference"]
    assert {"comprehensiveness", "deletion_auc", "auprc", "token_f1_oracle_k"} <= set(paired["shap"])
    ex = saved["explainers"]
    for teacher in ("lime", "shap"):
        diff = paired[teacher]["comprehensiveness"]
        assert diff["n"] == 3
        assert diff["mean"] == pytest.approx(ex["plex"]["faithfulness"]["all"]["comprehensiveness"]["mean"]
                                             - ex[teacher]["faithfulness"]["all"]["comprehensiveness"]["mean"])
        assert paired[teacher]["auprc"]["n"] == ex["plex"]["plausibility"]["auprc"]["n"]
    rel = headline["reliability"]
    assert rel["shap"] == {"deterministic": True}
    assert rel["lime"]["deterministic"] is False
    r = rel["lime"]["retest_r"]["mean"]
    assert rel["lime"]["sqrt_r"]["mean"] == pytest.approx(np.sqrt(r)) if r >= 0 else np.isnan(rel["lime"]["sqrt_r"]["mean"])

    for name, entry in saved["explainers"].items():
        assert set(entry["agreement"]) == {"lime", "shap"} - {name}
        assert set(FAITH_KEYS) <= _declared(entry["faithfulness"]["all"])
        assert set(PLAUS_KEYS) | {"iou_f1"} <= _declared(entry["plausibility"])
        assert entry["speed"]["ms_per_text"] > 0 and entry["speed"]["cold_start_seconds"] > 0
        groups = [entry["faithfulness"]["all"], entry["plausibility"], entry.get("stability", {}), entry["speed"],
                  *entry["agreement"].values(), entry.get("fidelity", {})]
        for group in groups:  # every figure written is a declared metric
            assert set(group) - {"n", "edited_texts", "deterministic", "texts", "fixed_k"} <= declared, set(group)
    # the same random orders for every explainer of a text: identical random baselines in every row
    randoms = {e["faithfulness"]["all"]["deletion_auc_random"]["mean"] for e in saved["explainers"].values()}
    assert len(randoms) == 1
    assert set(saved["explainers"]["lime"]["fidelity"]) == set(FIDELITY_KEYS)
    assert "fidelity" not in saved["explainers"]["plex"] and "fidelity" not in saved["explainers"]["shap"]
    assert saved["explainers"]["plex"]["speed"]["relative_to_student"] == 1.0
    # the student is deterministic: a second run has identical top-k sets
    assert saved["explainers"]["plex"]["stability"]["jaccard_seed"]["mean"] == 1.0
    assert saved["explainers"]["shap"]["stability"]["deterministic"] is True
    md = (out / "report.md").read_text()
    assert "## Agreement with the reference" in md and den["summary"] in md
    assert "## Reliability of the teachers" in md and "| shap | deterministic |" in md
    assert "## The student against each teacher (paired)" in md and "| plex − lime |" in md
    assert "noise ceiling" not in md and "comprehensiveness ↑" in md and "sufficiency ↓" in md
    assert "## Plausibility" in md and "iou_f1 ↑" in md and "exact_fit ↓" in md
    assert str(root) not in md
    # the terminal gets the headline too
    from plex.evaluate.report import headline_lines

    lines = headline_lines(saved)
    assert den["summary"] in lines and "shap: deterministic (no retest)" in lines
    assert any(line.strip().startswith("lime (seed 1)") and "Spearman" in line for line in lines)


def test_evaluate_with_a_mean_reference_of_teacher_runs(tiny_student):
    root = tiny_student
    cfg = EvaluateConfig(checkpoint=str(root / "student"), teachers="lime", reference_samples=0, reference_runs=2,
                         data=str(root / "rationales.jsonl"), split="train", n=2, out=str(root / "report-runs"),
                         stability_edits=False, device="cpu")
    saved = run_evaluate(cfg, progress=False)
    assert saved["reference"]["description"].startswith("mean of 2 runs of lime") and saved["reference"]["runs"] == 2
    assert set(saved["headline"]["agreement_with_reference"]) == {"plex", "lime", "lime (seed 1)"}


def test_model_size_study_writes_one_row_per_size(tmp_path, tiny_bert_path):
    from plex.config import StudyConfig
    from plex.evaluate.study import run_study

    rows = [("a great and moving film", "positive"), ("dull , boring and far too long", "negative")] * 10
    (tmp_path / "corpus.csv").write_text("text,label\n" + "\n".join(f'"{t}",{y}' for t, y in rows) + "\n")
    lines = [{"text": "a great film", "label": 1, "rationale_spans": [[2, 7]]},
             {"text": "dull and boring", "label": 0, "rationale_spans": [[0, 4], [9, 15]]}]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    cfg = StudyConfig(encoder=str(tiny_bert_path), dataset=str(tmp_path / "corpus.csv"), layers=[1, 2], epochs=1,
                      lime_samples=10, data=str(tmp_path / "r.jsonl"), n=2, out=str(tmp_path / "study"),
                      checkpoints=str(tmp_path / "ckpt"))
    result = run_study(cfg, progress=False)
    assert [r["layers"] for r in result] == [1, 2]
    assert result[0]["parameters"] < result[1]["parameters"]
    assert all(0 <= r["test_accuracy"] <= 1 and np.isfinite(r["comprehensiveness"]) for r in result)
    table = (tmp_path / "study" / "study.md").read_text()
    assert "| 1 layers |" in table and "comprehensiveness ↑" in table


def test_evaluate_gsmile_reports_fidelity_and_consistency(tiny_student):
    root = tiny_student
    cfg = EvaluateConfig(checkpoint=str(root / "student"), teachers="gsmile", reference_samples=0,
                         data=str(root / "rationales.jsonl"), split="train", n=3, out=str(root / "report-gsmile"),
                         stability_edits=False, device="cpu", repeats=3)
    saved = run_evaluate(cfg, progress=False)
    assert set(saved["explainers"]) == {"plex", "lime", "gsmile"}  # the student's own teacher is added
    assert "agreement_with_reference" not in saved["headline"]
    gsmile, student = saved["explainers"]["gsmile"], saved["explainers"]["plex"]
    assert set(FIDELITY_KEYS) == set(gsmile["fidelity"])
    assert 0 <= gsmile["fidelity"]["r2"]["mean"] <= 1
    # three runs with seeds 0, 1, 2 draw different masks of the 6-word text, so the scores spread;
    # "Fine" has one word and a single possible mask: its runs agree exactly
    assert gsmile["stability"]["consistency_spread"]["mean"] > 0
    assert student["stability"]["consistency_spread"]["mean"] == 0.0
    assert 0 <= gsmile["plausibility"]["roc_auc"]["mean"] <= 1
    assert "consistency spread" in (root / "report-gsmile" / "report.md").read_text().lower()
    with pytest.raises(ValueError, match="repeats"):
        run_evaluate(EvaluateConfig(checkpoint=str(root / "student"), repeats=1), progress=False)


def test_score_spread_by_hand():
    from plex.evaluate.stability import score_spread

    assert score_spread([[1.0, 2.0], [1.0, 2.0]]) == 0.0
    # stds 1 and 0, mean |score| (0 + 2 + 2 + 2) / 4 = 1.5
    assert score_spread([[0.0, 2.0], [2.0, 2.0]]) == pytest.approx(0.5 / 1.5)
    assert np.isnan(score_spread([[1.0, 2.0]])) and np.isnan(score_spread([[0.0], [0.0]]))

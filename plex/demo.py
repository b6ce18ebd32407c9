"""``plex demo``: the main job on the embedded default, end to end, with nothing to download.

1. trains the default black box (MiniLM fine-tuned on polarity) unless it is already saved, or
   takes the classifier named by ``--classifier``;
2. labels a slice of the polarity train split with LIME (resumable);
3. trains the PLEX student on those labels (reused when the labels have not changed);
4. explains held-out test sentences with the student, to JSONL and an HTML heatmap;
5. explains the same sentences with LIME at the labelling budget (seeds 0 and 1) and with a
   high-budget LIME reference, and prints how close the student and its teacher are to the
   reference, the teacher's retest reliability, and whether the student denoises its teacher.

Every artefact goes under ``--output`` (default ``outputs/demo``)::

    classifier/                      the fine-tuned MiniLM (unless --classifier names another one)
    labels-lime-<samples>/           LIME labels of the train sentences
    student/                         the PLEX student (Plex.from_pretrained reads it)
    test-lime-<samples>/             LIME on the held-out test sentences (seed 0; -seed1: the retest)
    test-lime-<ref>-reference/       the high-budget LIME reference on them
    explanations.jsonl, .html        the student's explanations of them
    summary.json                     the figures of the final table

The defaults (:class:`plex.config.DemoConfig`) are chosen to finish well within 25 minutes on a
2-core CPU; re-running reuses what exists (classifier, labels, student), so a second run takes about
a minute.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from plex.config import ClassifierTrainConfig, DemoConfig, LabelConfig, StudentTrainConfig

logger = logging.getLogger(__name__)


def run_demo(cfg: DemoConfig | None = None, echo: Callable[[str], None] = logger.info) -> dict:
    """Run the demo; ``echo`` receives the progress lines and the final table (the CLI prints them)."""
    from plex.classifiers.train import train_classifier
    from plex.evaluate.agreement import agreement_rows
    from plex.evaluate.reference import REFERENCE_SEED_OFFSET, denoising, reliability
    from plex.evaluate.speed import forward_ms_per_text
    from plex.evaluate.stats import mean_ci
    from plex.io import attribution_record, write_jsonl
    from plex.label import label_attributions, load_labels, run_label
    from plex.render import write_html
    from plex.student import Plex
    from plex.student.train import train_student

    cfg = cfg or DemoConfig()
    for name in ("limit", "num_samples", "held_out", "reference_samples"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    start = time.perf_counter()
    output = Path(cfg.output)
    limit, held_out, num_samples = cfg.limit, cfg.held_out, cfg.num_samples
    echo(f"plex demo: LIME with {num_samples} samples on {limit} polarity train sentences, "
          f"student compared with LIME on {held_out} test sentences; outputs in {output}")

    clf_cfg = ClassifierTrainConfig(output=str(output / "classifier"))
    clf_dir = Path(cfg.classifier or clf_cfg.output)
    if cfg.classifier is not None:
        echo(f"[1/5] classifier: {cfg.classifier}")
    elif (clf_dir / "config.json").is_file():
        echo(f"[1/5] classifier: reusing {clf_dir}")
    else:
        echo(f"[1/5] classifier: fine-tuning {clf_cfg.encoder} on polarity ({clf_cfg.epochs} epochs) -> {clf_dir}")
        train_classifier(clf_cfg)
    metrics_file = clf_dir / "metrics.json"
    clf_metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}

    teacher_args = {"num_samples": num_samples, "seed": 0}
    echo(f"[2/5] labels: LIME on the first {limit} train sentences")
    train_labels = run_label(LabelConfig(classifier=str(clf_dir), teacher="lime", teacher_args=teacher_args,
                                         output=str(output / f"labels-lime-{num_samples}"), limit=limit,
                                         shard_size=16))

    student_dir = output / "student"
    student_cfg = StudentTrainConfig(labels=str(train_labels.output), output=str(student_dir))
    fingerprint = {"labels_path": str(train_labels.output), "rows": train_labels.rows}
    config_file = student_dir / "config.json"
    previous = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if previous.get("demo_labels") == fingerprint and previous.get("training") == dataclasses.asdict(student_cfg):
        echo(f"[3/5] student: reusing {student_dir}")
    else:
        echo(f"[3/5] student: training on {train_labels.rows} labelled sentences -> {student_dir}")
        train_student(student_cfg)
        config = json.loads(config_file.read_text())
        config["demo_labels"] = fingerprint
        config_file.write_text(json.dumps(config, indent=2))

    ref_samples = cfg.reference_samples
    echo(f"[4/5] held-out test sentences: LIME-{num_samples} (the teacher at its labelling budget, seeds 0 and 1) "
         f"and the reference LIME-{ref_samples}")

    def lime_on_test(samples: int, seed: int, name: str):
        done = run_label(LabelConfig(classifier=str(clf_dir), split="test", teacher="lime",
                                     teacher_args={"num_samples": samples, "seed": seed}, output=str(output / name),
                                     limit=held_out, shard_size=16))
        return load_labels(done.output)

    teacher_rows = lime_on_test(num_samples, 0, f"test-lime-{num_samples}")
    retest_rows = lime_on_test(num_samples, 1, f"test-lime-{num_samples}-seed1")
    reference_rows = lime_on_test(ref_samples, REFERENCE_SEED_OFFSET, f"test-lime-{ref_samples}-reference")
    texts = list(reference_rows["text"])

    echo(f"[5/5] student: explaining the {held_out} test sentences")
    student = Plex.from_pretrained(student_dir)
    student.explain(texts[:4])  # warm-up
    timings = []
    for _ in range(3):  # best of 3, as for the forward pass
        t0 = time.perf_counter()
        attributions = student.explain(texts, batch_size=64)
        timings.append(time.perf_counter() - t0)
    student_ms = 1000 * min(timings) / len(texts)
    forward_ms = forward_ms_per_text(student.classifier, texts)
    write_jsonl(output / "explanations.jsonl", (attribution_record(a) for a in attributions))
    write_html(output / "explanations.html", attributions, title="plex demo: student explanations of held-out sentences")

    reference, teacher, retest = (label_attributions(rows) for rows in (reference_rows, teacher_rows, retest_rows))
    against = {name: agreement_rows(attrs, reference) for name, attrs in
               (("student", attributions), ("teacher", teacher), ("retest", retest))}
    rel = reliability(teacher, retest, deterministic=False)
    verdict = denoising(against["student"], against["teacher"], "student", f"LIME-{num_samples}")
    student_cfg = json.loads(config_file.read_text())
    summary = {
        "classifier_val_accuracy": clf_metrics.get("val_accuracy"),
        "classifier_test_accuracy": clf_metrics.get("test_accuracy"),
        "student_val_spearman": student_cfg["metrics"].get("val/spearman"),
        "student_val_top3": student_cfg["metrics"].get("val/top3"),
        "held_out": len(texts),
        "num_samples": num_samples,
        "reference_samples": ref_samples,
        "vs_reference": {name: {k: mean_ci([r[k] for r in rows]).to_dict() for k in ("spearman", "top3")}
                         for name, rows in against.items()},
        "retest_r": rel["retest_r"],
        "sqrt_r": rel["sqrt_r"],
        "denoising": verdict,
        "student_ms_per_text": student_ms,
        "lime_ms_per_text": 1000 * float(np.mean(teacher_rows["seconds"])),
        "reference_ms_per_text": 1000 * float(np.mean(reference_rows["seconds"])),
        "forward_ms_per_text": forward_ms,
        "wall_seconds": time.perf_counter() - start,
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    echo("")
    echo(format_demo_table(summary))
    echo(f"\nexplanations: {output / 'explanations.jsonl'}, {output / 'explanations.html'}")
    echo(f"demo finished in {summary['wall_seconds'] / 60:.1f} min")
    return summary


def format_demo_table(s: dict) -> str:
    """The demo's final table: everything against the reference, with 95 % bootstrap intervals."""
    def cell(est: dict) -> str:
        return f"{est['mean']:.3f} [{est['low']:.2f}, {est['high']:.2f}]"

    acc = (f"classifier: validation accuracy {s['classifier_val_accuracy']:.3f}, test accuracy "
           f"{s['classifier_test_accuracy']:.3f}\n" if s.get("classifier_val_accuracy") is not None else "")
    budget, ref = s["num_samples"], s["reference_samples"]
    vs = s["vs_reference"]
    names = {"teacher": f"LIME-{budget} (teacher)", "retest": f"LIME-{budget}, seed 1", "student": "PLEX student"}
    ms = {"teacher": s["lime_ms_per_text"], "retest": s["lime_ms_per_text"], "student": s["student_ms_per_text"]}
    rows = [
        f"{acc}agreement with the reference LIME-{ref} on {s['held_out']} held-out test sentences "
        "(mean [95% bootstrap interval]):",
        f"{'explainer':<24}{'Spearman':>22}{'top-3':>22}{'ms/text':>10}",
    ]
    for key in ("teacher", "retest", "student"):
        rows.append(f"{names[key]:<24}{cell(vs[key]['spearman']):>22}{cell(vs[key]['top3']):>22}{ms[key]:>10.2f}")
    rows += [
        f"{'classifier forward only':<24}{'':>22}{'':>22}{s['forward_ms_per_text']:>10.2f}",
        f"LIME-{budget} retest reliability r = {cell(s['retest_r'])} (seed 0 vs 1); a perfect learner of its "
        f"expectation would reach about sqrt(r) = {s['sqrt_r']['mean']:.3f} against one run",
        s["denoising"]["summary"],
        f"student / forward pass: {s['student_ms_per_text'] / s['forward_ms_per_text']:.2f}x; "
        f"LIME-{budget} / student: {s['lime_ms_per_text'] / s['student_ms_per_text']:.0f}x",
        f"student validation (train-split labels): Spearman {s['student_val_spearman']:.3f}, "
        f"top-3 {s['student_val_top3']:.3f}",
    ]
    return "\n".join(rows)

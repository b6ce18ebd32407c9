"""``plex evaluate``: explain the same texts with the student and its teachers, and compare them.

Every explainer (the student, each named teacher at its labelling budget, LIME at a high reference
budget) explains the first ``n`` texts of a split for the classifier's predicted label. Then, per
explainer: agreement with each teacher and the reference (and each teacher against itself with
another seed: the noise ceiling), faithfulness judged by the classifier, plausibility against
rationales when the data has them, stability across seeds and under a one-word edit, fidelity of
the perturbation teachers' local surrogates, and speed measured in the same run.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from plex.attribution import Attribution
from plex.config import EvaluateConfig

logger = logging.getLogger(__name__)

STUDENT = "plex"
REFERENCE = "lime-ref"


@dataclass
class Explainer:
    name: str
    run: Any  # callable: texts -> list[Attribution]
    teacher: Any = None  # the Teacher, for perturbation teachers
    attributions: list[Attribution] = field(default_factory=list)
    seconds: float = 0.0


def build_teachers(cfg: EvaluateConfig, checkpoint_config: dict) -> dict[str, Any]:
    """Each named teacher at its labelling budget (the student's own teacher as labelled)."""
    from plex.teachers import get_teacher

    own = dict(checkpoint_config.get("teacher") or {})
    own_name = own.pop("name", None)
    teachers = {}
    for name in [t.strip() for t in cfg.teachers.split(",") if t.strip()]:
        settings = own if name == own_name else {}
        settings = {**settings, **({"seed": cfg.seed} if "seed" in _fields(name) else {})}
        teachers[name] = get_teacher(name, **settings)
    return teachers


def _fields(name: str) -> set[str]:
    from plex.teachers import TEACHERS

    return {f.name for f in dataclasses.fields(TEACHERS[name])}


def _mean(values) -> float:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return float(np.nanmean(arr)) if arr.size and np.isfinite(arr).any() else float("nan")


def aggregate(rows: list[dict[str, float]], keys: list[str]) -> dict[str, float]:
    out = {k: _mean(r.get(k) for r in rows) for k in keys}
    out["n"] = len(rows)
    return out


def run_evaluate(cfg: EvaluateConfig, progress: bool = True) -> dict:
    """Run the evaluation and write ``metrics.json``, ``report.md`` and the plots to ``cfg.out``."""
    from plex.data import load_split
    from plex.evaluate.agreement import agreement
    from plex.evaluate.faithfulness import faithfulness
    from plex.evaluate.fidelity import adjusted_r2
    from plex.evaluate.plausibility import plausibility
    from plex.evaluate.report import write_report
    from plex.evaluate.speed import forward_ms_per_text
    from plex.evaluate.stability import jaccard_top_k, score_spread
    from plex.student import Plex
    from plex.teachers import Lime

    if cfg.n < 1:
        raise ValueError(f"--n must be at least 1 text, got {cfg.n}")
    if cfg.top_k < 1:
        raise ValueError(f"--top-k must be at least 1, got {cfg.top_k}")
    start = time.perf_counter()
    student = Plex.from_pretrained(cfg.checkpoint, classifier=cfg.classifier, encoder=cfg.encoder, device=cfg.device,
                                   batch_size=cfg.batch_size)
    classifier = student.classifier
    if cfg.rationale_format == "plex":
        data = load_split(cfg.data, cfg.split, cfg.text_column, cfg.label_column, labels=classifier.labels,
                          keep=("rationale_spans",))
    else:
        from plex.evaluate.rationales import load_rationale_split

        data = load_rationale_split(cfg.data, cfg.rationale_format, classifier.labels)
    data = data.select(range(min(cfg.n, len(data))))
    if len(data) == 0:
        raise ValueError(f"split {cfg.split!r} of {cfg.data!r} has no texts to evaluate")
    texts, gold = list(data["text"]), list(data["label"])
    rationales = list(data["rationale_spans"]) if "rationale_spans" in data.column_names else None
    logger.info("evaluating on %d texts of %s/%s", len(texts), cfg.data, cfg.split)

    teachers = build_teachers(cfg, student.config)
    explainers = [Explainer(STUDENT, lambda ts: student.explain(ts, batch_size=cfg.batch_size))]
    for name, teacher in teachers.items():
        explainers.append(Explainer(name, _teacher_run(teacher, classifier), teacher))
    if cfg.reference_samples:
        ref = Lime(num_samples=cfg.reference_samples, seed=cfg.seed)
        explainers.append(Explainer(REFERENCE, _teacher_run(ref, classifier), ref))
    if cfg.repeats < 2:
        raise ValueError(f"--repeats must be at least 2 (the noise ceiling needs a second run), got {cfg.repeats}")
    reseeded = {name: [dataclasses.replace(t, seed=t.seed + r) for r in range(1, cfg.repeats)]
                for name, t in teachers.items() if hasattr(t, "seed")}

    forward_ms = forward_ms_per_text(classifier, texts)
    student.explain(texts[:4])  # warm-up, so the student is timed like the forward pass
    for ex in explainers:
        ex.attributions, ex.seconds = _timed_run(ex, texts, progress)
    by_name = {ex.name: ex for ex in explainers}
    predicted = [a.target for a in by_name[STUDENT].attributions]
    labels = classifier.labels

    ceiling, seed_runs, extra_runs = {}, {}, {}
    for name, runs in reseeded.items():
        extra_runs[name] = [_timed_run(Explainer(f"{name}-seed{t.seed}", _teacher_run(t, classifier)), texts,
                                       progress)[0] for t in runs]
        seed_runs[name] = extra_runs[name][0]
        ceiling[name] = aggregate([agreement(a.scores, b.scores) for a, b in
                                   zip(by_name[name].attributions, seed_runs[name])], AGREEMENT_KEYS)

    edits = _edits(cfg, classifier, texts) if cfg.stability_edits else [None] * len(texts)
    edited_idx = [i for i, e in enumerate(edits) if e is not None]

    results: dict[str, dict] = {}
    curves: dict[str, dict] = {}
    faith_rows_all = faithfulness(classifier, [a for ex in explainers for a in ex.attributions])
    for k, ex in enumerate(explainers):
        attrs = ex.attributions
        entry: dict[str, Any] = {}
        entry["agreement"] = {
            other.name: aggregate([agreement(a.scores, b.scores) for a, b in zip(attrs, other.attributions)],
                                  AGREEMENT_KEYS)
            for other in explainers if other.name not in (ex.name, STUDENT)
        }
        faith_rows = faith_rows_all[k * len(texts):(k + 1) * len(texts)]
        entry["faithfulness"] = {
            "all": aggregate(faith_rows, FAITH_KEYS),
            "by_gold": {labels[c]: aggregate([r for r, g in zip(faith_rows, gold) if g == c], FAITH_KEYS)
                        for c in sorted(set(gold)) if c >= 0},
            "by_predicted": {labels[c]: aggregate([r for r, p in zip(faith_rows, predicted) if p == c], FAITH_KEYS)
                             for c in sorted(set(predicted))},
        }
        curves[ex.name] = _mean_curves(faith_rows)
        if rationales is not None:
            rows = [plausibility(a, spans) for a, spans, g in zip(attrs, rationales, gold) if a.target == g]
            entry["plausibility"] = aggregate(rows, PLAUS_KEYS)
        stability: dict[str, float] = {}
        if ex.name in seed_runs:
            stability["jaccard_seed"] = _mean(jaccard_top_k(a.scores, b.scores, cfg.top_k)
                                              for a, b in zip(attrs, seed_runs[ex.name]))
            stability["consistency_spread"] = _mean(
                score_spread([a.scores] + [run[i].scores for run in extra_runs[ex.name]]) for i, a in enumerate(attrs))
        elif ex.name == STUDENT:
            again = student.explain(texts, batch_size=cfg.batch_size)
            stability["jaccard_seed"] = _mean(jaccard_top_k(a.scores, b.scores, cfg.top_k) for a, b in zip(attrs, again))
            stability["consistency_spread"] = _mean(score_spread([a.scores, b.scores]) for a, b in zip(attrs, again))
        if edited_idx and ex.name != REFERENCE:
            edited = ex.run([edits[i].text for i in edited_idx])
            stability["jaccard_edit"] = _mean(
                jaccard_top_k(np.delete(attrs[i].scores, edits[i].position), np.delete(e.scores, edits[i].position),
                              cfg.top_k) for i, e in zip(edited_idx, edited))
            stability["edited_texts"] = len(edited_idx)
        entry["stability"] = stability
        if attrs and "score" in attrs[0].meta:  # perturbation teachers with a local surrogate (LIME)
            entry["fidelity"] = aggregate([_fidelity(a, adjusted_r2) for a in attrs if len(a.words)], FIDELITY_KEYS)
        elif attrs and "fidelity" in attrs[0].meta:  # teachers that report their own (gSMILE)
            entry["fidelity"] = aggregate([a.meta["fidelity"] for a in attrs if len(a.words)], FIDELITY_KEYS)
        if attrs and "samples" in attrs[0].meta and hasattr(ex.teacher, "scorer"):  # LIME-LLM
            from plex.evaluate.fluency import fluency

            entry["fluency"] = fluency(attrs, ex.teacher.scorer, classifier, seed=cfg.seed)
        entry["speed"] = {"ms_per_text": 1000 * ex.seconds / len(texts), "texts_per_second": len(texts) / ex.seconds}
        results[ex.name] = entry
    student_ms = results[STUDENT]["speed"]["ms_per_text"]
    for name, entry in results.items():
        entry["speed"]["speedup"] = entry["speed"]["ms_per_text"] / student_ms if name != STUDENT else 1.0
    report = {
        "schema": "plex-evaluate/1",
        "config": dataclasses.asdict(cfg),
        "checkpoint": str(cfg.checkpoint),
        "classifier": classifier.identity(),
        "teachers": {ex.name: ex.teacher.config() for ex in explainers if ex.teacher is not None},
        "n_texts": len(texts),
        "has_rationales": rationales is not None,
        "explainers": results,
        "noise_ceiling": ceiling,
        "forward_pass": {"ms_per_text": forward_ms, "texts_per_second": 1000 / forward_ms},
        "seconds": time.perf_counter() - start,
    }
    write_report(cfg.out, report, curves, _per_text_spearman(explainers, seed_runs))
    logger.info("evaluation written to %s (%.0f s)", cfg.out, report["seconds"])
    return report


AGREEMENT_KEYS = ["spearman", "kendall", "top1", "top3", "top5", "sign_agreement"]
FAITH_KEYS = ["comprehensiveness", "sufficiency", "deletion_auc", "insertion_auc", "deletion_auc_random",
              "insertion_auc_random"]
PLAUS_KEYS = ["token_f1", "iou_f1", "auprc", "roc_auc"]
FIDELITY_KEYS = ["r2", "weighted_r2", "adjusted_r2", "weighted_mse", "mae"]
FLUENCY_KEYS = ["perplexity_original", "perplexity_lime_llm", "perplexity_lime", "neutral_kept", "boundary_flipped",
                "synonyms_rejected_per_text", "deletion_samples", "samples"]


def _teacher_run(teacher, classifier):
    return lambda ts: teacher.explain(classifier, ts)


def _timed_run(ex: Explainer, texts: list[str], progress: bool) -> tuple[list[Attribution], float]:
    from tqdm.auto import tqdm

    logger.info("explaining %d texts with %s", len(texts), ex.name)
    if ex.name == STUDENT:  # best of 3, like the classifier's forward pass it is compared with
        timings = []
        for _ in range(3):
            start = time.perf_counter()
            attrs = ex.run(texts)
            timings.append(time.perf_counter() - start)
        return attrs, min(timings)
    start = time.perf_counter()
    attrs = []
    for text in tqdm(texts, desc=ex.name, unit="text", disable=not progress):
        attrs.extend(ex.run([text]))
    return attrs, time.perf_counter() - start


def _edits(cfg: EvaluateConfig, classifier, texts: list[str]):
    from plex.evaluate.edits import NeighbourIndex, one_word_edits

    return one_word_edits(classifier, texts, NeighbourIndex(), seed=cfg.seed)


def _fidelity(a: Attribution, adjusted_r2) -> dict[str, float]:
    weighted = float(a.meta["score"][0])
    return {"r2": float(a.meta.get("unweighted_score", [np.nan])[0]), "weighted_r2": weighted,
            "adjusted_r2": adjusted_r2(weighted, int(a.meta["num_samples"]), len(a.words))}


def _mean_curves(rows: list[dict], grid: int = 21) -> dict[str, list[float]]:
    """Deletion/insertion curves of every text, interpolated on one grid and averaged."""
    x = np.linspace(0, 1, grid)
    out: dict[str, list[float]] = {"x": x.tolist()}
    for key in ("deletion", "insertion", "deletion_random", "insertion_random"):
        curves = [np.interp(x, r["x"], r[key]) for r in rows if r.get("x") is not None and len(r["x"]) > 1]
        out[key] = np.mean(curves, axis=0).tolist() if curves else []
    return out


def _per_text_spearman(explainers: list[Explainer], seed_runs: dict) -> dict[str, list[float]]:
    """Per-text Spearman of every explainer with the reference (or the first teacher), for the plot."""
    from plex.evaluate.agreement import spearman

    by_name = {ex.name: ex for ex in explainers}
    anchor = REFERENCE if REFERENCE in by_name else next((ex.name for ex in explainers if ex.name != STUDENT), None)
    if anchor is None:
        return {}
    ref = by_name[anchor].attributions
    out = {"_anchor": anchor}
    for ex in explainers:
        if ex.name != anchor:
            out[ex.name] = [spearman(a.scores, r.scores) for a, r in zip(ex.attributions, ref)]
    for name, run in seed_runs.items():
        if anchor == name:
            out[f"{name} (other seed)"] = [spearman(a.scores, r.scores) for a, r in zip(run, ref)]
    return out

"""``plex evaluate``: explain the same texts with the student, its teachers and a reference; compare.

The run is orchestration only; each metric family lives in its own module and works on
``{explainer name: [Attribution per text]}``:

* :mod:`plex.evaluate.reference`: the headline, agreement with a high-budget reference of the
  student and of its teacher at its labelling budget, the teacher's test-retest reliability r and
  √r, and whether the student denoises its teacher;
* :mod:`plex.evaluate.agreement`: per-text agreement (Spearman, Kendall, top-k, signs);
* :mod:`plex.evaluate.faithfulness`: comprehensiveness, sufficiency, deletion / insertion curves;
* :mod:`plex.evaluate.plausibility`: ERASER plausibility against human rationales;
* :mod:`plex.evaluate.stability`: across seeds and under a one-word edit;
* :mod:`plex.evaluate.fidelity`: the local surrogates of the teachers that declare one;
* :mod:`plex.evaluate.fluency`: LIME-LLM's perturbations;
* :mod:`plex.evaluate.stats`: 95 % bootstrap intervals over texts for every mean.

Every explainer is warmed up on the first text (models and resources loaded: its cold start,
reported separately) and then timed over one pass of all texts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from plex.attribution import Attribution
from plex.config import EvaluateConfig
from plex.evaluate.reference import REFERENCE_SEED_OFFSET
from plex.evaluate.metrics import AGREEMENT_KEYS, PAIRED_KEYS, REFERENCE, STUDENT

logger = logging.getLogger(__name__)

SCHEMA = "plex-evaluate/2"


@dataclass
class Explainer:
    """One row of the evaluation: a name, how it explains a list of texts, and what it produced."""

    name: str
    run: Callable[[list[str]], list[Attribution]]
    teacher: Any = None
    batch: int = 1
    """Texts per call in the timed pass: the student's batch size; teachers explain one text per call."""
    attributions: list[Attribution] = field(default_factory=list)
    seconds: float = 0.0
    cold_start_seconds: float = float("nan")


def build_teachers(cfg: EvaluateConfig, checkpoint_config: dict) -> tuple[dict[str, Any], str | None]:
    """Each named teacher at its labelling budget, and the name of the student's own teacher.

    The student's own teacher runs with the settings it labelled with, and is added when
    ``--teachers`` leaves it out: the headline compares the student with it.
    """
    from plex.teachers import TEACHERS, get_teacher

    own = dict(checkpoint_config.get("teacher") or {})
    own_name = own.pop("name", None)
    names = [t.strip().lower() for t in cfg.teachers.split(",") if t.strip()]
    if own_name in TEACHERS and own_name not in names:
        logger.info("adding the student's own teacher %s to --teachers", own_name)
        names.insert(0, own_name)
    teachers = {}
    for name in names:
        settings = own if name == own_name else {}
        if name in TEACHERS and "seed" in {f.name for f in dataclasses.fields(TEACHERS[name])}:
            settings = {**settings, "seed": cfg.seed}
        teachers[name] = get_teacher(name, **settings)
    return teachers, (own_name if own_name in teachers else None)


def _check(cfg: EvaluateConfig) -> None:
    for name, minimum in (("n", 1), ("top_k", 1), ("repeats", 2), ("reference_samples", 0), ("reference_runs", 0)):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            why = " (the retest needs a second run)" if name == "repeats" else ""
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {minimum}{why}, got {value!r}")


def _teacher_run(teacher, classifier) -> Callable[[list[str]], list[Attribution]]:
    return lambda texts: teacher.explain(classifier, texts)


def _reseeded(teacher, offset: int):
    return dataclasses.replace(teacher, seed=teacher.seed + offset)


def build_reference(cfg: EvaluateConfig, teachers: dict, own: str | None, classifier) -> tuple[Explainer, dict] | None:
    """The reference explainer: LIME at ``--reference-samples``, or the mean of ``--reference-runs`` teacher runs."""
    from plex.evaluate.reference import mean_attributions
    from plex.teachers import Lime

    if cfg.reference_runs:
        if own is None:
            raise ValueError("--reference-runs averages runs of the student's own teacher, but its checkpoint "
                             "names none; use --reference-samples instead")
        teacher = teachers[own]
        if teacher.deterministic:
            raise ValueError(f"--reference-runs needs a random teacher; {own} is deterministic, so the mean of its "
                             "runs is one run. Use --reference-samples (LIME at a high budget) instead")
        runs = [_reseeded(teacher, REFERENCE_SEED_OFFSET + i) for i in range(cfg.reference_runs)]

        def run(texts: list[str]) -> list[Attribution]:
            return mean_attributions([t.explain(classifier, texts) for t in runs], method=REFERENCE)

        description = (f"mean of {cfg.reference_runs} runs of {own} at its labelling budget "
                       f"(seeds {cfg.seed + REFERENCE_SEED_OFFSET}–{cfg.seed + REFERENCE_SEED_OFFSET + cfg.reference_runs - 1})")
        return Explainer(REFERENCE, run, None), {"description": description, "teacher": teacher.config(),
                                                 "runs": cfg.reference_runs}
    if cfg.reference_samples:
        ref = Lime(num_samples=cfg.reference_samples, seed=cfg.seed + REFERENCE_SEED_OFFSET)
        description = f"LIME with {cfg.reference_samples} samples (seed {ref.seed})"
        return Explainer(REFERENCE, _teacher_run(ref, classifier), ref), {"description": description,
                                                                           "teacher": ref.config(), "runs": 1}
    return None


def timed(ex: Explainer, texts: list[str], progress: bool, load_seconds: float = 0.0) -> None:
    """Warm ``ex`` up on the first text (its cold start), then time one pass over every text."""
    from tqdm.auto import tqdm

    logger.info("explaining %d texts with %s", len(texts), ex.name)
    start = time.perf_counter()
    ex.run(texts[:1])
    ex.cold_start_seconds = load_seconds + time.perf_counter() - start
    attributions: list[Attribution] = []
    with tqdm(total=len(texts), desc=ex.name, unit="text", disable=not progress) as bar:
        start = time.perf_counter()
        for i in range(0, len(texts), ex.batch):
            attributions.extend(ex.run(texts[i:i + ex.batch]))
            bar.update(min(ex.batch, len(texts) - i))
        ex.seconds = time.perf_counter() - start
    ex.attributions = attributions


def untimed(ex: Explainer, texts: list[str], progress: bool) -> list[Attribution]:
    from tqdm.auto import tqdm

    out: list[Attribution] = []
    for i in tqdm(range(0, len(texts), ex.batch), desc=ex.name, unit="call", disable=not progress):
        out.extend(ex.run(texts[i:i + ex.batch]))
    return out


def load_texts(cfg: EvaluateConfig, classifier):
    """The first ``n`` texts of the split, their gold labels, and rationale spans when the data has them."""
    from plex.data import load_split

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
    return texts, gold, rationales


def run_evaluate(cfg: EvaluateConfig, progress: bool = True) -> dict:
    """Run the evaluation and write ``metrics.json``, ``report.md`` and the plots to ``cfg.out``."""
    from plex.evaluate.agreement import agreement_family, agreement_rows
    from plex.evaluate.faithfulness import faithfulness_family
    from plex.evaluate.fidelity import fidelity_family
    from plex.evaluate.plausibility import plausibility_family
    from plex.evaluate.reference import denoising, reliability
    from plex.evaluate.report import write_report
    from plex.evaluate.speed import forward_ms_per_text
    from plex.evaluate.stability import stability_family
    from plex.evaluate.stats import paired_differences, summarise
    from plex.student import Plex

    _check(cfg)
    start = time.perf_counter()
    student = Plex.from_pretrained(cfg.checkpoint, classifier=cfg.classifier, encoder=cfg.encoder, device=cfg.device,
                                   batch_size=cfg.batch_size)
    load_seconds = time.perf_counter() - start
    classifier = student.classifier
    texts, gold, rationales = load_texts(cfg, classifier)
    logger.info("evaluating on %d texts of %s/%s", len(texts), cfg.data, cfg.split)

    teachers, own = build_teachers(cfg, student.config)
    explainers = [Explainer(STUDENT, lambda ts: student.explain(ts, batch_size=cfg.batch_size), batch=cfg.batch_size)]
    explainers += [Explainer(name, _teacher_run(t, classifier), t) for name, t in teachers.items()]
    reference = build_reference(cfg, teachers, own, classifier)
    if reference is not None:
        explainers.append(reference[0])

    forward_ms = forward_ms_per_text(classifier, texts)
    for ex in explainers:
        timed(ex, texts, progress, load_seconds if ex.name == STUDENT else 0.0)
    by_name = {ex.name: ex for ex in explainers}
    attrs = {ex.name: ex.attributions for ex in explainers}

    # Reruns: the student once more (it should not move), each random teacher with seeds s + 1, ...
    reruns: dict[str, list[list[Attribution]]] = {STUDENT: [untimed(by_name[STUDENT], texts, False)]}
    for name, t in teachers.items():
        if not t.deterministic and hasattr(t, "seed"):
            reruns[name] = [untimed(Explainer(f"{name} seed {t.seed + r}", _teacher_run(_reseeded(t, r), classifier)),
                                    texts, progress) for r in range(1, cfg.repeats)]
    retest_names = {name: f"{name} (seed {teachers[name].seed + 1})" for name in reruns if name != STUDENT}

    edits = _edits(cfg, classifier, texts) if cfg.stability_edits else None
    edited: dict[str, dict[int, tuple[int, Attribution]]] = {}
    if edits is not None:
        idx = [i for i, e in enumerate(edits) if e is not None]
        for ex in explainers:
            if ex.name != REFERENCE and idx:
                out = untimed(ex, [edits[i].text for i in idx], False)
                edited[ex.name] = {i: (edits[i].position, a) for i, a in zip(idx, out)}

    seed = cfg.seed
    results: dict[str, dict[str, Any]] = {ex.name: {} for ex in explainers}

    # Agreement: with the reference (the headline) and with each teacher.
    headline: dict[str, Any] = {}
    per_text_spearman: dict[str, list[float]] = {}
    if reference is not None:
        compared = {n: a for n, a in attrs.items() if n != REFERENCE}
        compared.update({retest_names[n]: reruns[n][0] for n in retest_names})
        ref_rows = agreement_family(compared, attrs[REFERENCE])
        headline["agreement_with_reference"] = {n: summarise(rows, AGREEMENT_KEYS, seed=seed)
                                                for n, rows in ref_rows.items()}
        per_text_spearman = {n: [r["spearman"] for r in rows] for n, rows in ref_rows.items()}
        if own is not None:
            headline["denoising"] = denoising(ref_rows[STUDENT], ref_rows[own], STUDENT, own, seed=seed)
    headline["reliability"] = {
        name: reliability(attrs[name], reruns[name][0] if name in reruns else None, t.deterministic, seed=seed)
        for name, t in teachers.items()}
    for ex in explainers:
        results[ex.name]["agreement"] = {
            name: summarise(agreement_rows(ex.attributions, attrs[name]), AGREEMENT_KEYS, seed=seed)
            for name in teachers if name != ex.name}

    # Faithfulness: every attribution of every explainer in one batch; random orders seeded by the text.
    faith_rows: dict[str, list[dict]] = {}
    plaus_rows: dict[str, list[dict]] = {}
    stab_rows: dict[str, list[dict]] = {}
    faith, curves = faithfulness_family(classifier, attrs, gold, seed=seed, per_text=faith_rows)
    plaus = (plausibility_family(attrs, rationales, gold, cfg.top_k, seed, per_text=plaus_rows)
             if rationales is not None else {})
    judged = {n: a for n, a in attrs.items() if n != REFERENCE}
    deterministic = {ex.name: ex.teacher is None or ex.teacher.deterministic for ex in explainers}
    stability = stability_family(judged, cfg.top_k, reruns, edited, deterministic, seed, per_text=stab_rows)
    fidelity = fidelity_family(attrs, {ex.name: ex.teacher for ex in explainers if ex.teacher is not None}, seed)
    # The student against each teacher on the same texts: paired differences, key by key.
    per_text = {name: [{"spearman": s} for s in per_text_spearman.get(name, [None] * len(texts))]
                for name in judged}
    for family in (faith_rows, plaus_rows, stab_rows):
        for name, rows in family.items():
            if name in per_text:
                for merged, row in zip(per_text[name], rows):
                    merged.update({k: row.get(k) for k in PAIRED_KEYS if k in row})
    headline["paired"] = paired_differences(per_text, STUDENT, list(teachers), PAIRED_KEYS, seed=seed)
    for name, entry in results.items():
        entry["faithfulness"] = faith[name]
        for key, family in (("plausibility", plaus), ("stability", stability), ("fidelity", fidelity)):
            if name in family:
                entry[key] = family[name]
    for ex in explainers:
        t = ex.teacher
        if t is not None and t.keeps_samples and hasattr(t, "scorer"):
            from plex.evaluate.fluency import fluency

            results[ex.name]["fluency"] = fluency(ex.attributions, t.scorer, classifier, seed=seed)

    student_ms = 1000 * by_name[STUDENT].seconds / len(texts)
    for ex in explainers:
        ms = 1000 * ex.seconds / len(texts)
        results[ex.name]["speed"] = {"ms_per_text": ms, "texts_per_second": len(texts) / ex.seconds,
                                     "relative_to_student": ms / student_ms,
                                     "cold_start_seconds": ex.cold_start_seconds}
    report = {
        "schema": SCHEMA,
        "config": dataclasses.asdict(cfg),
        "checkpoint": display_path(cfg.checkpoint),
        "classifier": {**classifier.identity(), "path": display_path(classifier.identity().get("path"))},
        "student_teacher": own,
        "teachers": {ex.name: ex.teacher.config() for ex in explainers if ex.teacher is not None},
        "reference": reference[1] if reference is not None else None,
        "n_texts": len(texts),
        "has_rationales": rationales is not None,
        "headline": headline,
        "explainers": results,
        "per_text_spearman_with_reference": per_text_spearman,
        "forward_pass": {"ms_per_text": forward_ms, "texts_per_second": 1000 / forward_ms},
        "seconds": time.perf_counter() - start,
    }
    write_report(cfg.out, report, curves)
    logger.info("evaluation written to %s (%.0f s)", cfg.out, report["seconds"])
    return report


def display_path(path: Any) -> Any:
    """A path as recorded in a report: relative to the working folder when it lies inside it.

    Reports are committed and read on other machines; an absolute path of this one means nothing
    there. Paths outside the working folder, and names that are not paths, are kept as given.
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.isabs(path):
        return path
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _edits(cfg: EvaluateConfig, classifier, texts: list[str]):
    from plex.evaluate.edits import NeighbourIndex, one_word_edits

    return one_word_edits(classifier, texts, NeighbourIndex(), seed=cfg.seed)

"""``plex study distill``: which student, trained how, on which labels, comes closest to the teacher's expectation.

For one classifier and one teacher, the study crosses

* **labelling allocations** at (roughly) equal labelling compute: ``texts`` x ``samples`` per text x
  ``draws`` (independent runs of the teacher with seeds 0, 1, ...), e.g. 240 x 500 x 1 against
  1,200 x 100 x 1 against 600 x 100 x 2;
* **student variants**: any settings of ``plex train`` (the frozen head, a context head, other
  targets or losses), each named;

and measures every student by its agreement with a high-budget **reference** run of the teacher
(seed 1000) on held-out texts, beside the teacher itself at each budget on the same texts.

Labels are shared wherever they can be: one labels folder per (budget, seed) holds the most texts
any allocation asks of it, and smaller allocations train on its first texts (``--max-texts``). Every
step writes its result into the study folder and is skipped when it is there, so an interrupted
study resumes where it stopped.

Model selection cannot flatter: early stopping watches a split of the labelled texts (the student
trainer's own validation split); the variant of each allocation is *chosen* on ``select`` texts (the
last texts of the labelled split, never labelled for training) against the reference; the figures
reported are on ``test`` texts only, which no choice has seen.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any

from plex.config import DistillStudyConfig, LabelConfig, StudentTrainConfig
from plex.evaluate.reference import REFERENCE_SEED_OFFSET
from plex.label import label_attributions

logger = logging.getLogger(__name__)

SCHEMA = "plex-study-distill/1"


@dataclasses.dataclass(frozen=True)
class Allocation:
    """``texts`` labelled by the teacher at ``samples`` (its budget), ``draws`` times with seeds 0..draws-1."""

    texts: int
    samples: int
    draws: int = 1

    @property
    def name(self) -> str:
        return f"{self.texts}x{self.samples}" + (f"x{self.draws}" if self.draws > 1 else "")

    @property
    def compute(self) -> int:
        """Labelling compute in classifier evaluations: texts x samples x draws."""
        return self.texts * self.samples * self.draws


def allocations(cfg: DistillStudyConfig) -> list[Allocation]:
    out = []
    for i, a in enumerate(cfg.allocations):
        if not isinstance(a, dict) or set(a) - {"texts", "samples", "draws"} or not {"texts", "samples"} <= set(a):
            raise ValueError(f"allocations[{i}] must be a mapping with texts, samples and optionally draws, got {a!r}")
        alloc = Allocation(int(a["texts"]), int(a["samples"]), int(a.get("draws", 1)))
        if alloc.texts < 2 or alloc.samples < 1 or alloc.draws < 1:
            raise ValueError(f"allocations[{i}]: texts must be at least 2, samples and draws at least 1, got {a!r}")
        out.append(alloc)
    if not out:
        raise ValueError("the study needs at least one allocation (texts, samples, draws)")
    return out


def variants(cfg: DistillStudyConfig) -> dict[str, dict[str, Any]]:
    """``{name: plex train settings}``; a variant may not set what the study sets itself.

    A variant's optional ``allocations`` (a list of allocation names such as ``1200x100``) limits it to
    those (a costly student trained where it matters only); see :func:`runs_on`.
    """
    known = {f.name for f in dataclasses.fields(StudentTrainConfig)}
    owned = {"labels", "output", "draws", "max_texts", "classifier"}
    allocs = allocations(cfg)
    names = {a.name for a in allocs}
    out = {}
    for i, v in enumerate(cfg.variants):
        if not isinstance(v, dict) or "name" not in v:
            raise ValueError(f"variants[{i}] must be a mapping with a name and plex train settings, got {v!r}")
        only = v.get("allocations")
        if only is not None and (not isinstance(only, list) or not only or set(map(str, only)) - names):
            raise ValueError(f"variants[{i}] ({v['name']}): allocations must list some of {', '.join(sorted(names))}, "
                             f"got {only!r}")
        settings = {k: val for k, val in v.items() if k not in ("name", "allocations")}
        bad = sorted(set(settings) - known)
        if bad:
            raise ValueError(f"variants[{i}] ({v['name']}): unknown plex train setting(s) {', '.join(bad)}")
        if set(settings) & owned:
            raise ValueError(f"variants[{i}] ({v['name']}): {', '.join(sorted(set(settings) & owned))} are set by "
                             "the study itself")
        out[str(v["name"])] = settings
    if not out:
        raise ValueError("the study needs at least one student variant")
    first = next(iter(cfg.variants))
    if first.get("allocations") is not None and allocs[0].name not in map(str, first["allocations"]):
        raise ValueError(f"variants[0] ({first['name']}) is the baseline every student is compared with: it must run "
                         f"on the first allocation, {allocs[0].name}")
    return out


def runs_on(cfg: DistillStudyConfig, variant: str, allocation: str) -> bool:
    """Whether ``variant`` is trained on ``allocation`` (every allocation unless it lists some)."""
    spec = next(v for v in cfg.variants if str(v["name"]) == variant)
    return spec.get("allocations") is None or allocation in map(str, spec["allocations"])


def _label(cfg: DistillStudyConfig, dataset: str, split: str, limit: int | None, samples: int, seed: int,
           output: Path, classifier, progress: bool):
    from plex.label import load_labels, run_label

    args = {**cfg.teacher_args, cfg.budget_arg: samples, "seed": seed}
    run_label(LabelConfig(dataset=dataset, split=split, classifier=cfg.classifier, teacher=cfg.teacher,
                          teacher_args=args, output=str(output), limit=limit, shard_size=cfg.shard_size),
              classifier=classifier, progress=progress)
    return load_labels(output)


def _write_selection_texts(cfg: DistillStudyConfig, out: Path, labelled: int, labels: list[str]) -> Path:
    """The last ``select_n`` texts of the labelled split, as a JSONL file: texts no student trains on."""
    from plex.data import load_split

    data = load_split(cfg.dataset, cfg.split, labels=labels)
    first = len(data) - cfg.select_n
    if first < labelled:
        raise ValueError(f"{cfg.dataset}/{cfg.split} has {len(data)} texts: the largest allocation labels "
                         f"{labelled} and the selection takes the last {cfg.select_n}, which would overlap; lower "
                         "select_n or the allocations' texts")
    path = out / "select.jsonl"
    if not path.is_file():
        with open(path, "w", encoding="utf-8") as f:
            for row in data.select(range(first, len(data))):
                gold = labels[row["label"]] if row["label"] >= 0 else None
                f.write(json.dumps({"text": row["text"], "label": gold}) + "\n")
    return path


def _agreement(attrs, reference, seed: int) -> tuple[dict, list[float]]:
    from plex.evaluate.agreement import agreement_rows
    from plex.evaluate.stats import summarise

    rows = agreement_rows(attrs, reference)
    return summarise(rows, ["spearman", "top3", "top1"], seed=seed), [r["spearman"] for r in rows]


def run_distill_study(cfg: DistillStudyConfig, progress: bool = True) -> dict:
    """Run (or resume) the study and write ``study.json``, ``study.md`` and ``agreement.png`` to ``cfg.out``."""
    from plex.classifiers import load_classifier
    from plex.evaluate.reference import reliability
    from plex.evaluate.speed import forward_ms_per_text
    from plex.evaluate.stats import paired_difference
    from plex.student import Plex
    from plex.student.train import train_student

    allocs, kinds = allocations(cfg), variants(cfg)
    if cfg.n_test < 2 or cfg.select_n < 2:
        raise ValueError("n_test and select_n must be at least 2")
    start = time.perf_counter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(cfg.classifier)

    # 1. Training labels: one folder per (budget, seed), as many texts as any allocation needs of it.
    need: dict[tuple[int, int], int] = {}
    for a in allocs:
        for d in range(a.draws):
            need[(a.samples, d)] = max(need.get((a.samples, d), 0), a.texts)
    label_dirs = {}
    for (samples, seed), n in sorted(need.items()):
        label_dirs[(samples, seed)] = out / "labels" / f"{cfg.teacher}-{samples}-seed{seed}"
        logger.info("labels: %s-%d seed %d on %d texts -> %s", cfg.teacher, samples, seed, n,
                    label_dirs[(samples, seed)])
        _label(cfg, cfg.dataset, cfg.split, n, samples, seed, label_dirs[(samples, seed)], classifier, progress)

    # 2. Held-out texts: selection (tail of the labelled split) and test; reference and teacher at each budget.
    select_file = _write_selection_texts(cfg, out, max(need.values()), list(classifier.labels))
    held = {"select": (str(select_file), "train", cfg.select_n), "test": (cfg.test_data, cfg.test_split, cfg.n_test)}
    budgets = sorted({a.samples for a in allocs})
    reference, teacher_runs = {}, {}
    for part, (data, split, n) in held.items():
        ref_rows = _label(cfg, data, split, n, cfg.reference_samples, REFERENCE_SEED_OFFSET,
                          out / "held-out" / f"{part}-{cfg.teacher}-{cfg.reference_samples}-reference",
                          classifier, progress)
        reference[part] = label_attributions(ref_rows)
        seeds = (0, 1) if part == "test" else (0,)
        for samples in budgets:
            for seed in seeds:
                rows = _label(cfg, data, split, n, samples, seed,
                              out / "held-out" / f"{part}-{cfg.teacher}-{samples}-seed{seed}", classifier, progress)
                teacher_runs[(part, samples, seed)] = label_attributions(rows)
    texts = {part: [a.text for a in reference[part]] for part in held}

    teachers, teacher_per_text = {}, {}
    for samples in budgets:
        name = f"{cfg.teacher}-{samples}"
        agree, per_text = _agreement(teacher_runs[("test", samples, 0)], reference["test"], cfg.seed)
        rel = reliability(teacher_runs[("test", samples, 0)], teacher_runs[("test", samples, 1)], False, seed=cfg.seed)
        teachers[name] = {"samples": samples, "test": agree, "retest_r": rel["retest_r"], "sqrt_r": rel["sqrt_r"],
                          "select": _agreement(teacher_runs[("select", samples, 0)], reference["select"], cfg.seed)[0]}
        teacher_per_text[samples] = per_text

    # 3. Students: every allocation x variant, trained once, measured on selection and test texts.
    forward_ms = forward_ms_per_text(classifier, texts["test"])
    students = []
    for a in allocs:
        for vname, settings in kinds.items():
            if not runs_on(cfg, vname, a.name):
                continue
            folder = out / "students" / a.name / vname
            result_file = folder / "study-result.json"
            if result_file.is_file():
                students.append(json.loads(result_file.read_text()))
                continue
            train_seconds = None  # unknown for a student trained by an earlier, interrupted run
            if not (folder / "config.json").is_file():  # checkpoints are written whole: trained, not yet measured
                logger.info("student %s on %s", vname, a.name)
                t0 = time.perf_counter()
                train_student(StudentTrainConfig(
                    labels=str(label_dirs[(a.samples, 0)]), draws=[str(label_dirs[(a.samples, d)]) for d in
                                                                   range(1, a.draws)],
                    max_texts=a.texts, output=str(folder), classifier=cfg.classifier,
                    **{"seed": cfg.seed, "logger": "none", **settings}), classifier=classifier, progress=progress)
                train_seconds = time.perf_counter() - t0
            student = Plex.from_pretrained(folder, classifier=classifier, device="cpu")
            student.explain(texts["test"][:4])  # warm-up
            t0 = time.perf_counter()
            test_attrs = student.explain(texts["test"], batch_size=64)
            ms = 1000 * (time.perf_counter() - t0) / len(texts["test"])
            test_agree, per_text = _agreement(test_attrs, reference["test"], cfg.seed)
            row = {
                "allocation": a.name, "texts": a.texts, "samples": a.samples, "draws": a.draws, "compute": a.compute,
                "variant": vname, "settings": settings,
                "select": _agreement(student.explain(texts["select"], batch_size=64), reference["select"],
                                     cfg.seed)[0],
                "test": test_agree,
                "minus_teacher": paired_difference(per_text, teacher_per_text[a.samples], seed=cfg.seed).to_dict(),
                "ms_per_text": ms, "forward_passes": ms / forward_ms, "train_seconds": train_seconds,
                "checkpoint": str(folder), "per_text_spearman": per_text,
            }
            result_file.write_text(json.dumps(row, indent=2))
            students.append(row)

    # 4. Choice on the selection texts; figures on the test texts.
    chosen = {}
    for a in allocs:
        mine = [s for s in students if s["allocation"] == a.name]
        chosen[a.name] = max(mine, key=lambda s: s["select"]["spearman"]["mean"])["variant"]
    best = max(students, key=lambda s: s["select"]["spearman"]["mean"])
    # Every student against the baseline (the first variant on the first allocation), paired on the test texts.
    base = next(s for s in students if s["allocation"] == allocs[0].name and s["variant"] == next(iter(kinds)))
    for s in students:
        s["minus_baseline"] = paired_difference(s["per_text_spearman"], base["per_text_spearman"],
                                                seed=cfg.seed).to_dict()
    summary = {
        "schema": SCHEMA,
        "config": dataclasses.asdict(cfg),
        "reference": f"{cfg.teacher} with {cfg.budget_arg}={cfg.reference_samples} (seed {REFERENCE_SEED_OFFSET})",
        "teachers": teachers,
        "students": students,
        "chosen_per_allocation": chosen,
        "best_on_selection": {"allocation": best["allocation"], "variant": best["variant"]},
        "baseline": {"allocation": base["allocation"], "variant": base["variant"]},
        "forward_ms_per_text": forward_ms,
        "seconds": time.perf_counter() - start,
    }
    (out / "study.json").write_text(json.dumps(summary, indent=2))
    (out / "study.md").write_text(render_study(summary))
    try:
        plot_study(out / "agreement.png", summary)
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        logger.warning("matplotlib is missing: no plot")
    logger.info("study written to %s (%.0f s)", out, summary["seconds"])
    return summary


def render_study(s: dict) -> str:
    from plex.evaluate.report import format_estimate as _cell
    from plex.evaluate.report import signed_estimate as _signed

    cfg = s["config"]
    lines = [
        f"# Distillation study: {cfg['teacher']} on `{cfg['dataset']}`",
        "",
        f"Classifier `{cfg['classifier']}`. Every student and the teacher at each budget against the reference, "
        f"{s['reference']}, on {cfg['n_test']} test texts of `{cfg['test_data']}`/`{cfg['test_split']}`; variants "
        f"are chosen on {cfg['select_n']} other texts (the end of `{cfg['dataset']}`/`{cfg['split']}`, never "
        "trained on). Figures are means with 95 % bootstrap intervals over texts; `student − teacher` is the paired "
        "difference in Spearman with the teacher at the allocation's budget (seed 0) on the same texts: above 0, "
        "the student is closer to the reference than the labels it learned from (it denoises).",
        "",
        "## Teacher at each budget",
        "",
        "| teacher | Spearman (test) | top-3 (test) | retest r | √r |",
        "|---|---|---|---|---|",
    ]
    for name, t in s["teachers"].items():
        lines.append(f"| {name} | {_cell(t['test']['spearman'])} | {_cell(t['test']['top3'])} | "
                     f"{_cell(t['retest_r'])} | {_cell(t['sqrt_r'])} |")
    lines += ["", "## Students", "",
              "| allocation | compute | variant | Spearman (select) | Spearman (test) | top-3 (test) | "
              "student − teacher | student − baseline | forward passes | chosen |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(s["students"], key=lambda r: (r["compute"], r["allocation"], r["variant"])):
        diff, over_base = (_signed(r.get(k)) for k in ("minus_teacher", "minus_baseline"))
        chosen = "yes" if s["chosen_per_allocation"].get(r["allocation"]) == r["variant"] else ""
        lines.append(f"| {r['allocation']} | {r['compute']:,} | {r['variant']} | {_cell(r['select']['spearman'])} | "
                     f"{_cell(r['test']['spearman'])} | {_cell(r['test']['top3'])} | {diff} | {over_base} | "
                     f"{r['forward_passes']:.2f} | {chosen} |")
    b, base = s["best_on_selection"], s["baseline"]
    lines += ["", f"Best on the selection texts: **{b['variant']}** on **{b['allocation']}**. `student − baseline` is "
              f"the paired difference in test Spearman with the baseline, {base['variant']} on {base['allocation']}. "
              "Bold: the interval leaves out 0. Compute is classifier "
              "evaluations spent on labelling (texts × samples × draws). Forward passes: the student's time per "
              "text over one batched forward pass of the classifier, in the same run.", "",
              "![agreement with the reference against labelling compute](agreement.png)", "",
              f"Study time (this run): {s['seconds']:.0f} s."]
    return "\n".join(lines) + "\n"


def plot_study(path: Path, s: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5.6))
    # Allocations at one compute differ in how they spend it: then texts labelled is the axis.
    by_compute = len({r["compute"] for r in s["students"]}) > 1
    key = "compute" if by_compute else "texts"
    names = list(dict.fromkeys(r["variant"] for r in s["students"]))
    for k, variant in enumerate(names):
        rows = sorted((r for r in s["students"] if r["variant"] == variant), key=lambda r: (r[key], r["draws"]))
        dodge = 1 + 0.025 * (k - (len(names) - 1) / 2)  # side by side, not on top of each other
        x = [r[key] * dodge * (1 + 0.06 * (r["draws"] - 1)) for r in rows]
        y = [r["test"]["spearman"]["mean"] for r in rows]
        err = [[r["test"]["spearman"]["mean"] - r["test"]["spearman"]["low"] for r in rows],
               [r["test"]["spearman"]["high"] - r["test"]["spearman"]["mean"] for r in rows]]
        ax.errorbar(x, y, yerr=err, marker="osD^vPX*"[k % 8], color=plt.cm.tab20(k % 20), capsize=3,
                    label=f"student: {variant}", alpha=0.85)
        if k == 0:
            for r, xx, yy in zip(rows, x, y):
                ax.annotate(r["allocation"], (xx, yy), fontsize=7, xytext=(3, -12), textcoords="offset points")
    for k, (name, t) in enumerate(s["teachers"].items()):
        m = t["test"]["spearman"]
        shade = str(0.15 + 0.25 * (k % 3))  # teachers in greys, students in colours
        ax.axhline(m["mean"], linestyle=("--", "-.", ":")[k % 3], color=shade, label=f"teacher {name} (per text)")
        ax.axhspan(m["low"], m["high"], color=shade, alpha=0.08)
    ax.set_xscale("log")
    if by_compute:
        ax.set_xlabel("labelling compute (classifier evaluations: texts × samples × draws)")
    else:
        ax.set_xlabel(f"texts labelled, at one labelling compute ({s['students'][0]['compute']:,} classifier "
                      "evaluations: texts × samples × draws)")
    ax.set_ylabel("Spearman with the reference (test)")
    ax.set_title(f"Students against {s['reference']}")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

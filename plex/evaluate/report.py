"""Writers of ``plex evaluate``: ``metrics.json``, ``report.md`` and PNG plots.

Table columns, their arrows (higher or lower is better) and their descriptions come from the metric
registry (:data:`plex.evaluate.metrics.METRICS`), declared once.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from plex.evaluate.metrics import (AGREEMENT_KEYS, FAITH_KEYS, FIDELITY_KEYS, FLUENCY_KEYS, METRICS, PAIRED_KEYS,
                                   PLAUS_KEYS, REFERENCE, SPEED_KEYS, STABILITY_KEYS, STUDENT, describe)
from plex.io import open_output, to_plain


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        return format_estimate(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_estimate(est: dict) -> str:
    """``mean [low, high]``: a figure with its 95 % bootstrap interval (the mean alone for one text)."""
    mean, low, high = est.get("mean"), est.get("low"), est.get("high")
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if low is None or (isinstance(low, float) and math.isnan(low)):
        return _fmt(float(mean))
    return f"{_fmt(float(mean))} [{_fmt(float(low))}, {_fmt(float(high))}]"


def _header(key: str) -> str:
    metric = METRICS.get(key)
    if metric is None:
        return key
    return f"{key} {'↑' if metric.higher_is_better else '↓'}"


def _short(value: Any, limit: int = 40) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _n(values: dict[str, Any], keys: list[str]) -> Any:
    """Texts behind a row: the largest ``n`` of its estimates (undefined values are left out per metric)."""
    ns = [v["n"] for k in keys if isinstance(v := values.get(k), dict) and "n" in v]
    return max(ns) if ns else values.get("n", "–")


def markdown_table(rows: dict[str, dict[str, Any]], keys: list[str], first: str = "explainer",
                   count: bool = False) -> str:
    """A markdown table, one row per entry; estimates print as ``mean [low, high]``; ``count`` adds n."""
    columns = keys + (["n"] if count else [])
    lines = ["| " + " | ".join([first] + [_header(k) for k in columns]) + " |",
             "|" + "---|" * (len(columns) + 1)]
    for name, values in rows.items():
        cells = [_fmt(values.get(k)) for k in keys] + ([_fmt(_n(values, keys))] if count else [])
        lines.append("| " + " | ".join([name] + cells) + " |")
    return "\n".join(lines)


def _exact(fidelity: dict[str, Any]) -> dict[str, Any]:
    """A surrogate row whose every fit was exactly determined says "exact fit" instead of R² figures."""
    if (fidelity.get("exact_fit") or {}).get("mean") == 1.0:
        return {**fidelity, **{k: "exact fit" for k in ("r2", "weighted_r2", "adjusted_r2")}}
    return fidelity


def _reliability_rows(report: dict) -> dict[str, dict[str, Any]]:
    rows = {}
    for name, rel in report["headline"].get("reliability", {}).items():
        if rel.get("deterministic"):
            rows[name] = {"retest_r": "deterministic", "sqrt_r": "–"}
        else:
            rows[name] = {"retest_r": rel["retest_r"], "sqrt_r": rel["sqrt_r"]}
    return rows


def signed_estimate(est: dict | None) -> str:
    """A paired difference: ``+mean [+low, +high]``, bold where the interval leaves out 0."""
    mean, low, high = (est or {}).get("mean"), (est or {}).get("low"), (est or {}).get("high")
    if mean is None or not math.isfinite(mean):
        return "–"
    if low is None or not math.isfinite(low):
        return f"{mean:+.3f}"
    cell = f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"
    return f"**{cell}**" if low > 0 or high < 0 else cell


def _paired_rows(paired: dict[str, dict[str, dict]]) -> dict[str, dict[str, str]]:
    """Student - teacher differences, one row per teacher."""
    return {f"{STUDENT} − {teacher}": {key: signed_estimate(est) for key, est in diffs.items()}
            for teacher, diffs in paired.items()}


def render_markdown(report: dict) -> str:
    ex = report["explainers"]
    cfg = report["config"]
    headline = report["headline"]
    ci = "95 % bootstrap interval over texts"
    parts = [
        f"# plex evaluation: `{Path(report['checkpoint']).name}`",
        "",
        f"{report['n_texts']} texts of `{cfg['data']}` / `{cfg['split']}`; classifier `{report['classifier']['path']}`. "
        "Every explainer explains the classifier's predicted label. ↑ higher is better, ↓ lower is better. "
        f"Figures are means with their {ci} in brackets; n is the number of texts a row rests on.",
        "",
        "Teachers: " + "; ".join(f"**{n}** ({', '.join(f'{k}={_short(v)}' for k, v in c.items() if k != 'name')})"
                                 for n, c in report["teachers"].items() if n != REFERENCE),
    ]
    if report.get("reference"):
        parts += ["", f"Reference ({REFERENCE}): {report['reference']['description']}."]
    if "agreement_with_reference" in headline:
        parts += ["", "## Agreement with the reference", "",
                  f"The student ({STUDENT}), each teacher at its labelling budget, and the retest runs of the random "
                  "teachers (another seed), all against the same high-budget reference.", "",
                  markdown_table(headline["agreement_with_reference"], AGREEMENT_KEYS, count=True)]
        if "denoising" in headline:
            parts += ["", f"**{headline['denoising']['summary']}**"]
    rel = _reliability_rows(report)
    if rel:
        parts += ["", "## Reliability of the teachers", "",
                  "Test-retest reliability r: Spearman of a teacher at its budget with seed s against seed s + 1 on "
                  "the same texts. √r is what a perfect learner of the teacher's expected scores would reach against "
                  "one run: a student can exceed r, so r is not a ceiling. Deterministic teachers give the same "
                  "scores every time and have no retest.", "",
                  markdown_table(rel, ["retest_r", "sqrt_r"], first="teacher")]
    paired = headline.get("paired") or {}
    if any(paired.values()):
        keys = [k for k in PAIRED_KEYS if any(k in d for d in paired.values())]
        parts += ["", "## The student against each teacher (paired)", "",
                  "Student minus teacher on the same texts, with the paired 95 % bootstrap interval of the mean "
                  "difference; bold where the interval leaves out 0 (a difference these texts resolve). The arrow "
                  "says which sign favours the student (↑: positive, ↓: negative). `spearman` is the agreement "
                  "with the reference.", "",
                  markdown_table(_paired_rows(paired), keys, first="difference")]
    for teacher in report["teachers"]:
        rows = {name: e["agreement"][teacher] for name, e in ex.items() if teacher in e.get("agreement", {})}
        if rows:
            parts += ["", f"## Agreement with {teacher}", "", markdown_table(rows, AGREEMENT_KEYS, count=True)]
    parts += ["", "## Faithfulness (judged by the classifier)", "",
              "Comprehensiveness and sufficiency are AOPC over removing / keeping the top 1, 5, 10, 20 and 50 % "
              "of words (ERASER); deletion and insertion AUCs are of the predicted class's probability as words "
              "are removed from / inserted into the text in the explainer's order, and in random orders seeded by "
              "the text (the same for every explainer).", "",
              markdown_table({n: e["faithfulness"]["all"] for n, e in ex.items()}, FAITH_KEYS, count=True)]
    for group, title in (("by_gold", "gold label"), ("by_predicted", "predicted label")):
        rows = {f"{n} · {label}": v for n, e in ex.items() for label, v in e["faithfulness"][group].items()}
        parts += ["", f"### By {title}", "", markdown_table(rows, ["comprehensiveness", "sufficiency"], count=True)]
    if report["has_rationales"]:
        fixed_k = next(iter(ex.values()))["plausibility"].get("fixed_k", cfg.get("top_k"))
        parts += ["", "## Plausibility (overlap with the rationales, ERASER)", "",
                  "On texts whose prediction matches the gold label. Token F1 of the top-k words at an oracle k (the "
                  f"number of rationale words of the text) and at a fixed k = {fixed_k}; IOU F1 micro-averaged over "
                  "the corpus's spans (a predicted run of top-k words matches an annotated span at IOU >= 0.5); "
                  "AUPRC and ROC AUC of the scores as a ranking of rationale words.", "",
                  markdown_table({n: e["plausibility"] for n, e in ex.items()}, PLAUS_KEYS + ["iou_f1"], count=True)]
    parts += ["", f"## Stability (Jaccard of top-{cfg['top_k']} word sets) and consistency", "",
              "Across seeds (seed s against s + 1; deterministic explainers are not rerun, except the student, "
              "whose second run checks it) and under a one-word edit that keeps the prediction (the edited "
              f"position left out). Consistency spread: per-word standard deviation of the scores over "
              f"{cfg.get('repeats', 2)} runs with different seeds, divided by the mean |score| (lower is steadier).",
              "", markdown_table({n: e["stability"] for n, e in ex.items() if "stability" in e},
                                 STABILITY_KEYS + ["edited_texts", "deterministic"])]
    fidelity = {n: e["fidelity"] for n, e in ex.items() if e.get("fidelity")}
    if fidelity:
        parts += ["", "## Fidelity of the local surrogates", "",
                  "One definition for every surrogate teacher: R² of the surrogate on the samples it was fitted on, "
                  "weighted by the teacher's kernel, adjusted for the number of words from the weighted R², and plain "
                  "beside it. A surrogate with no more samples than words + 1 fits exactly; such texts are counted "
                  "in `exact_fit` and left out of the R² means.", "",
                  markdown_table({n: _exact(v) for n, v in fidelity.items()}, FIDELITY_KEYS, count=True)]
    fluency = {n: e["fluency"] for n, e in ex.items() if e.get("fluency")}
    if fluency:
        parts += ["", "## Fluency of the perturbations (LIME-LLM)", "",
                  "Mean perplexity under the teacher's scorer LM of the original sentences, of LIME-LLM's "
                  "one-word rewrites and of LIME's masked texts for the same sentences (as many per sentence); "
                  "the share of neutral infills that kept the label and of boundary infills that flipped it; "
                  "candidates rejected as synonyms of the word they would replace.", "",
                  markdown_table(fluency, FLUENCY_KEYS)]
    speed = {n: e["speed"] for n, e in ex.items()}
    speed["classifier forward pass"] = report["forward_pass"]
    parts += ["", "## Speed (same run, same machine)", "",
              "Every explainer is warmed up on the first text (its cold start, loading included, is the last "
              f"column) and then timed over one pass of all texts; `relative_to_student` is its time over the "
              f"student's ({STUDENT}).", "",
              markdown_table(speed, SPEED_KEYS),
              "", "## Plots", "", "![deletion and insertion curves](curves.png)", "",
              "![agreement with the reference](agreement.png)", "", "![speed](speed.png)", "",
              f"Metric definitions: see `metrics.json` → `metrics`. Evaluation took {report['seconds']:.0f} s."]
    return "\n".join(parts) + "\n"


def headline_lines(report: dict) -> list[str]:
    """The headline in a few plain lines, for the terminal: agreement with the reference, r and √r, the verdict."""
    headline, lines = report.get("headline", {}), []
    if "agreement_with_reference" in headline:
        lines.append(f"agreement with the reference ({report['reference']['description']}), "
                     f"{report['n_texts']} texts, mean [95% bootstrap interval]:")
        for name, row in headline["agreement_with_reference"].items():
            lines.append(f"  {name:<24} Spearman {_fmt(row['spearman']):<24} top-3 {_fmt(row['top3'])}")
    for name, rel in headline.get("reliability", {}).items():
        if rel.get("deterministic"):
            lines.append(f"{name}: deterministic (no retest)")
        else:
            lines.append(f"{name}: retest r {_fmt(rel['retest_r'])}, sqrt(r) {_fmt(rel['sqrt_r'])}")
    if "denoising" in headline:
        lines.append(headline["denoising"]["summary"])
    return lines


def write_report(out: str | os.PathLike, report: dict, curves: dict) -> Path:
    """``metrics.json``, ``report.md`` and the plots of one evaluation in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "metrics": describe()}
    with open_output(out / "metrics.json") as f:
        json.dump(to_plain(report), f, indent=2, allow_nan=False, default=str)
    with open_output(out / "report.md") as f:
        f.write(render_markdown(report))
    plot_curves(out / "curves.png", curves)
    plot_agreement(out / "agreement.png", report.get("per_text_spearman_with_reference") or {})
    plot_speed(out / "speed.png", report)
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: Path, curves: dict) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, kind in zip(axes, ("deletion", "insertion")):
        for i, (name, c) in enumerate(curves.items()):
            if not c.get(kind):
                continue
            colour = f"C{i}"
            ax.plot(c["x"], c[kind], color=colour, label=name)
            ax.plot(c["x"], c[f"{kind}_random"], color=colour, linestyle=":", alpha=0.6)
        ax.set_title(f"{kind} ({'lower' if kind == 'deletion' else 'higher'} is better; dotted: random order)")
        ax.set_xlabel(f"fraction of words {'removed' if kind == 'deletion' else 'inserted'}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("probability of the predicted class")
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_agreement(path: Path, per_text: dict) -> None:
    import numpy as np

    plt = _pyplot()
    anchor = REFERENCE
    series = {k: [v for v in vals if v is not None and np.isfinite(v)] for k, vals in per_text.items()}
    series = {k: v for k, v in series.items() if v}
    fig, ax = plt.subplots(figsize=(8, 0.6 * max(len(series), 2) + 1.5))
    if series:
        ax.boxplot(list(series.values()), vert=False, showmeans=True)
        ax.set_yticks(range(1, len(series) + 1), list(series.keys()))
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman with {anchor}, per text")
    ax.set_title(f"Agreement with {anchor}")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_speed(path: Path, report: dict) -> None:
    plt = _pyplot()
    rows = {n: e["speed"]["ms_per_text"] for n, e in report["explainers"].items()}
    rows["classifier forward pass"] = report["forward_pass"]["ms_per_text"]
    names = sorted(rows, key=rows.get)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    ax.barh(names, [rows[n] for n in names], color=["C2" if n in ("plex", "classifier forward pass") else "C0"
                                                       for n in names])
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per text (log scale)")
    for i, n in enumerate(names):
        ax.text(rows[n], i, f" {rows[n]:.3g} ms", va="center", fontsize=8)
    ax.set_title("Speed, measured in one run on this machine")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)

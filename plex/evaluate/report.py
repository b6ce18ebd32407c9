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

from plex.evaluate.metrics import METRICS
from plex.io import open_output, to_plain


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _header(key: str) -> str:
    metric = METRICS.get(key)
    if metric is None:
        return key
    return f"{key} {'↑' if metric.higher_is_better else '↓'}"


def _short(value: Any, limit: int = 40) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_table(rows: dict[str, dict[str, Any]], keys: list[str], first: str = "explainer") -> str:
    lines = ["| " + " | ".join([first] + [_header(k) for k in keys]) + " |",
             "|" + "---|" * (len(keys) + 1)]
    for name, values in rows.items():
        lines.append("| " + " | ".join([name] + [_fmt(values.get(k)) for k in keys]) + " |")
    return "\n".join(lines)


def render_markdown(report: dict) -> str:
    from plex.evaluate.run import AGREEMENT_KEYS, FAITH_KEYS, FIDELITY_KEYS, FLUENCY_KEYS, PLAUS_KEYS, STUDENT

    ex = report["explainers"]
    cfg = report["config"]
    parts = [
        f"# plex evaluation: `{Path(report['checkpoint']).name}`",
        "",
        f"{report['n_texts']} texts of `{cfg['data']}` / `{cfg['split']}`; classifier `{report['classifier']['path']}`. "
        "Every explainer explains the classifier's predicted label. ↑ higher is better, ↓ lower is better.",
        "",
        "Teachers: " + "; ".join(f"**{n}** ({', '.join(f'{k}={_short(v)}' for k, v in c.items() if k != 'name')})"
                                 for n, c in report["teachers"].items()),
    ]
    references = sorted({r for e in ex.values() for r in e["agreement"]})
    for ref in references:
        rows = {name: e["agreement"][ref] for name, e in ex.items() if ref in e["agreement"]}
        if ref in report["noise_ceiling"]:
            rows[f"{ref}, other seed (noise ceiling)"] = report["noise_ceiling"][ref]
        parts += ["", f"## Agreement with {ref}", "", markdown_table(rows, AGREEMENT_KEYS)]
    parts += ["", "## Faithfulness (judged by the classifier)", "",
              "Comprehensiveness and sufficiency are AOPC over removing / keeping the top 1, 5, 10, 20 and 50 % "
              "of words (ERASER); deletion and insertion AUCs are of the predicted class's probability as words "
              "are removed from / inserted into the text in the explainer's order, and in random order.", "",
              markdown_table({n: e["faithfulness"]["all"] for n, e in ex.items()}, FAITH_KEYS)]
    for group, title in (("by_gold", "gold label"), ("by_predicted", "predicted label")):
        rows = {f"{n} · {label}": v for n, e in ex.items() for label, v in e["faithfulness"][group].items()}
        parts += ["", f"### By {title}", "", markdown_table(rows, ["comprehensiveness", "sufficiency", "n"])]
    if report["has_rationales"]:
        parts += ["", "## Plausibility (overlap with the rationales)", "",
                  "On texts whose prediction matches the gold label (n); top-k = number of rationale words.", "",
                  markdown_table({n: e["plausibility"] for n, e in ex.items()}, PLAUS_KEYS + ["n"])]
    stab_keys = ["jaccard_seed", "jaccard_edit", "consistency_spread", "edited_texts"]
    parts += ["", f"## Stability (Jaccard of top-{cfg['top_k']} word sets) and consistency", "",
              "Across seeds (the student is deterministic) and under a one-word edit that keeps the prediction "
              f"(the edited position left out). Consistency spread: per-word standard deviation of the scores "
              f"over {cfg.get('repeats', 2)} runs with different seeds, divided by the mean |score| (lower is "
              "steadier).", "",
              markdown_table({n: e["stability"] for n, e in ex.items()}, stab_keys)]
    fidelity = {n: e["fidelity"] for n, e in ex.items() if e.get("fidelity")}
    if fidelity:
        parts += ["", "## Fidelity of the local surrogates", "",
                  "R² of each teacher's surrogate on its own samples: plain, weighted by the kernel "
                  "(what lime reports), and adjusted for the number of words; gSMILE also reports the "
                  "kernel-weighted MSE and the MAE of its predicted output shifts.", "",
                  markdown_table(fidelity, FIDELITY_KEYS)]
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
              f"`speedup` is the explainer's time per text over the student's ({STUDENT}).", "",
              markdown_table(speed, ["ms_per_text", "texts_per_second", "speedup"]),
              "", "## Plots", "", "![deletion and insertion curves](curves.png)", "",
              "![agreement distributions](agreement.png)", "", "![speed](speed.png)", "",
              f"Metric definitions: see `metrics.json` → `metrics`. Evaluation took {report['seconds']:.0f} s."]
    return "\n".join(parts) + "\n"


def write_report(out: str | os.PathLike, report: dict, curves: dict, spearman_per_text: dict) -> Path:
    from plex.evaluate.metrics import describe

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = {**report, "metrics": describe()}
    with open_output(out / "metrics.json") as f:
        json.dump(to_plain(report), f, indent=2, allow_nan=False, default=str)
    with open_output(out / "report.md") as f:
        f.write(render_markdown(report))
    plot_curves(out / "curves.png", curves)
    plot_agreement(out / "agreement.png", spearman_per_text)
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
    anchor = per_text.get("_anchor", "reference")
    series = {k: [v for v in vals if v is not None and np.isfinite(v)] for k, vals in per_text.items()
              if k != "_anchor"}
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

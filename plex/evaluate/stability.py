"""Stability: do two explanations of (nearly) the same input put the same words on top?

The runs being compared (two seeds, a text and its edit) are produced elsewhere; this module only
scores a pair of attributions over the same word positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from plex.evaluate.agreement import paired, top_k


def jaccard_top_k(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, k: int = 3) -> float:
    """Jaccard index ``|A ∩ B| / |A ∪ B|`` of the top-k word positions of two score arrays.

    ``A`` and ``B`` hold the ``min(k, n_words)`` highest-scored positions of each side, ties broken by
    position. 1 when both put the same words on top, 0 when they share none; NaN for no words.
    """
    a, b = paired(a, b)
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if len(a) == 0:
        return float("nan")
    top_a, top_b = top_k(a, k), top_k(b, k)
    return len(np.intersect1d(top_a, top_b)) / len(np.union1d(top_a, top_b))


def score_spread(runs: Sequence[Sequence[float] | np.ndarray]) -> float:
    """Consistency of repeated runs on one text: how much the word scores move between runs.

    The mean over words of the standard deviation across runs, divided by the mean ``|score|``
    over runs and words, so it compares explainers with different score scales. 0 when every run
    gives the same scores; NaN with fewer than two runs, no words, or all scores zero.
    """
    if len(runs) < 2:
        return float("nan")
    stacked = np.stack([np.asarray(r, dtype=np.float64) for r in runs])
    if stacked.shape[1] == 0:
        return float("nan")
    scale = np.abs(stacked).mean()
    return float(stacked.std(axis=0).mean() / scale) if scale > 0 else float("nan")


def stability_rows(
    attributions: Sequence,
    k: int = 3,
    reruns: Sequence[Sequence] = (),
    edited: Mapping[int, tuple[int, object]] | None = None,
) -> list[dict[str, float]]:
    """Per-text stability of one explainer's attributions.

    Args:
        attributions: one :class:`plex.Attribution` per text.
        k: size of the top-k sets.
        reruns: further runs of the same explainer on the same texts with other seeds (for a
            deterministic explainer, simply a second run); the first gives ``jaccard_seed``, all of
            them the ``consistency_spread``.
        edited: ``{text index: (edited word position, attribution of the edited text)}`` for the
            texts that have a one-word edit; the edited position is left out of both sides.

    Returns:
        one dict per text with ``jaccard_seed`` and ``consistency_spread`` (when there are reruns)
        and ``jaccard_edit`` (NaN for texts without an edit).
    """
    rows = []
    for i, a in enumerate(attributions):
        row: dict[str, float] = {}
        if reruns:
            row["jaccard_seed"] = jaccard_top_k(a.scores, reruns[0][i].scores, k)
            row["consistency_spread"] = score_spread([a.scores] + [run[i].scores for run in reruns])
        if edited is not None:
            if i in edited:
                position, e = edited[i]
                row["jaccard_edit"] = jaccard_top_k(np.delete(a.scores, position), np.delete(e.scores, position), k)
            else:
                row["jaccard_edit"] = float("nan")
        rows.append(row)
    return rows


def stability_family(
    attributions: Mapping[str, Sequence],
    k: int,
    reruns: Mapping[str, Sequence[Sequence]],
    edited: Mapping[str, Mapping[int, tuple[int, object]]],
    deterministic: Mapping[str, bool],
    seed: int = 0,
    per_text: dict[str, list[dict]] | None = None,
) -> dict[str, dict]:
    """Stability of every explainer in ``{name: [Attribution per text]}`` (see :func:`stability_rows`).

    Per explainer: ``jaccard_seed``, ``jaccard_edit`` and ``consistency_spread`` with bootstrap
    intervals over texts, ``edited_texts`` and whether it is ``deterministic``. When ``per_text``
    is given, it receives the per-text rows of every explainer.
    """
    from plex.evaluate.stats import summarise

    out = {}
    for name, attrs in attributions.items():
        rows = stability_rows(attrs, k, reruns.get(name, ()), edited.get(name))
        if per_text is not None:
            per_text[name] = rows
        entry: dict = summarise(rows, ["jaccard_seed", "jaccard_edit", "consistency_spread"], seed=seed)
        entry["edited_texts"] = len(edited.get(name, {}))
        entry["deterministic"] = bool(deterministic.get(name, False))
        out[name] = entry
    return out

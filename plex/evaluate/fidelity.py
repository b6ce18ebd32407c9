"""Fidelity of a linear surrogate (LIME's local model, a student's fit) to the classifier.

Every surrogate teacher (LIME, LIME-LLM, gSMILE) records the same entry in its attributions'
meta, ``meta["surrogate"]``: ``weighted_r2`` and ``r2`` (one value per explained target, in the
order of ``targets``), ``n_samples`` (rows of the fit, the unperturbed text's row included),
``n_features`` (the text's words) and ``targets``. :func:`attribution_fidelity` turns that entry
into the figures of :func:`surrogate_fidelity`, so all of them are reported by one definition.
"""

from __future__ import annotations

from typing import Any


def adjusted_r2(r2: float, n_samples: int, n_features: int) -> float:
    """Adjusted coefficient of determination, ``1 - (1 - R²)(n - 1) / (n - p - 1)``.

    Penalises R² for the ``p = n_features`` fitted coefficients on ``n = n_samples`` samples, so that
    surrogates over texts of different lengths compare fairly. NaN when ``n - p - 1 <= 0`` (as many
    features as samples: the fit is not constrained).
    """
    dof = n_samples - n_features - 1
    if dof <= 0:
        return float("nan")
    return 1.0 - (1.0 - r2) * (n_samples - 1) / dof


def surrogate_fidelity(weighted_r2: float, r2: float, n_samples: int, n_features: int) -> dict[str, float]:
    """The fidelity figures of a local linear surrogate, one definition for every teacher.

    Args:
        weighted_r2: R² of the fit weighted by the teacher's kernel (what the surrogate minimised).
        r2: plain (unweighted) R² of the same fit.
        n_samples: rows the surrogate was fitted on, the unperturbed text's row included when the
            teacher adds one.
        n_features: coefficients besides the intercept: the text's words.

    Returns:
        ``r2``, ``weighted_r2``, ``adjusted_r2`` (computed from the *weighted* R², the quantity the
        fit optimises, with :func:`adjusted_r2`) and ``exact_fit`` (1.0 or 0.0).

    When ``n_samples <= n_features + 1`` no residual degree of freedom is left once the intercept
    and one coefficient per word are fitted: the fit is exactly determined (or underdetermined),
    it reproduces its samples whatever the classifier does, and its R² says nothing about
    fidelity. Then ``exact_fit`` is 1.0 and the three R² figures are NaN, so that averages over
    texts leave such fits out instead of counting them as perfect.
    """
    n, p = int(n_samples), int(n_features)
    if n <= p + 1:
        nan = float("nan")
        return {"r2": nan, "weighted_r2": nan, "adjusted_r2": nan, "exact_fit": 1.0}
    weighted = float(weighted_r2)
    return {"r2": float(r2), "weighted_r2": weighted, "adjusted_r2": adjusted_r2(weighted, n, p),
            "exact_fit": 0.0}


def attribution_fidelity(attribution: Any) -> dict[str, float] | None:
    """:func:`surrogate_fidelity` of an attribution's surrogate, for its own target.

    Reads ``attribution.meta["surrogate"]``; ``None`` when there is none (a teacher without a
    surrogate, a student, an empty text). The per-target lists are indexed by the position of
    ``attribution.target`` in ``meta["surrogate"]["targets"]`` (row 0 when no targets are recorded).

    Raises:
        ValueError: the recorded targets do not include the attribution's target.
    """
    info = attribution.meta.get("surrogate") if attribution.meta else None
    if not info or not len(attribution.words):
        return None
    targets = [int(t) for t in info.get("targets", [])]
    if targets:
        if int(attribution.target) not in targets:
            raise ValueError(f"the surrogate was fitted for targets {targets}, not for the attribution's "
                             f"target {attribution.target}")
        row = targets.index(int(attribution.target))
    else:
        row = 0
    return surrogate_fidelity(info["weighted_r2"][row], info["r2"][row], info["n_samples"], info["n_features"])


def fidelity_family(attributions: dict, teachers: dict, seed: int = 0) -> dict[str, dict]:
    """Surrogate fidelity of every explainer whose teacher declares a surrogate (``Teacher.surrogate``).

    ``attributions`` is ``{name: [Attribution per text]}`` and ``teachers`` ``{name: Teacher}`` (the
    student and other explainers without a teacher are skipped). Per explainer: ``r2``,
    ``weighted_r2``, ``adjusted_r2`` and ``exact_fit``, each with a bootstrap interval over texts.
    """
    from plex.evaluate.metrics import FIDELITY_KEYS
    from plex.evaluate.stats import summarise

    out = {}
    for name, attrs in attributions.items():
        teacher = teachers.get(name)
        if teacher is None or not teacher.surrogate:
            continue
        rows = [f for f in (teacher.fidelity(a) for a in attrs) if f is not None]
        out[name] = summarise(rows, FIDELITY_KEYS, seed=seed)
    return out

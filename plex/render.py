"""Render word attributions as a self-contained HTML page.

The page has inline CSS only (no scripts, fonts, images or links), so it opens offline and is safe
to share. Each text is shown exactly as it was written, with every word's background coloured by
its score:

- Palette: the diverging ColorBrewer RdBu scheme, which stays readable with the common forms of
  colour blindness. Red supports the explained class, blue speaks against it, neutral words
  are left uncoloured. The text colour (black or white) is picked per shade for contrast.
- Scale: intensity is ``|score| / scale`` in :data:`LEVELS` steps per side. By default ``scale`` is
  the largest ``|score|`` of the same text, so each text uses the whole range and the scale is
  printed next to it; pass a number to put every text on one global scale, printed in the legend.
  A score under half a step, a zero or a NaN score is shown neutral. Every word's exact score is
  in its tooltip.
- Words the classifier never read (past its length limit, ``meta["visible_words"]``) are shown in
  grey whatever their score, and the legend says so when any text was cut.
- A text without words (empty or only whitespace, ``meta["empty"]``) is shown as "(empty text)",
  not explained.

All user-provided strings (texts, labels, method names, the title) are HTML-escaped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from html import escape

import numpy as np

from plex.attribution import Attribution
from plex.io import class_name, open_output, visible_count

LEVELS = 10
"""Shades per side of the colour scale (plus one neutral shade)."""

NEUTRAL = "#f7f7f7"
NEGATIVE_STOPS = (NEUTRAL, "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061")
POSITIVE_STOPS = (NEUTRAL, "#fddbc7", "#f4a582", "#d6604d", "#b2182b", "#67001f")
"""ColorBrewer RdBu, from neutral to the strongest shade of each side."""


DEFAULT_ENDS = ("against the explained class", "supports it")


def render_html(
    attributions: Sequence[Attribution], title: str = "plex explanations", scale: float | None = None,
    ends: tuple[str, str] = DEFAULT_ENDS,
) -> str:
    """A complete HTML page showing each attribution as coloured text.

    Args:
        attributions: the explained texts, shown in order.
        title: page title and heading.
        scale: the ``|score|`` drawn at full intensity for every text; ``None`` (default) scales
            each text by its own largest ``|score|``.
        ends: what the two ends of the colour scale mean (negative, positive).

    An attribution whose ``meta`` has an ``output`` (gSMILE's generated answer) is shown with
    that output beside the coloured prompt, and its surrogate fidelity in the info line.

    Returns:
        The page as a string.
    """
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number or None, got {scale!r}")
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
        f"<title>{escape(title)}</title>\n<style>\n{_css()}</style>\n</head>\n<body>\n",
        "<header>\n",
        f"<h1>{escape(title)}</h1>\n",
        _legend(scale, len(attributions), ends, truncated=any(_is_truncated(a) for a in attributions)),
        "</header>\n<main>\n",
    ]
    for number, a in enumerate(attributions, start=1):
        parts.append(_block(number, a, scale))
    if not attributions:
        parts.append("<p class=\"none\">No texts to show.</p>\n")
    parts.append("</main>\n</body>\n</html>\n")
    return "".join(parts)


def write_html(
    path: str | os.PathLike[str],
    attributions: Sequence[Attribution],
    title: str = "plex explanations",
    scale: float | None = None,
    ends: tuple[str, str] = DEFAULT_ENDS,
) -> None:
    """Write :func:`render_html` to ``path``: ``-`` is standard output, a regular file is replaced
    atomically, a symlink is written through, a FIFO or device in place (see :func:`plex.io.open_output`)."""
    page = render_html(attributions, title=title, scale=scale, ends=ends)
    with open_output(path) as f:
        f.write(page)


def level(score: float, scale: float) -> int:
    """The signed shade of ``score``: ``-LEVELS`` (strongly against) to ``LEVELS`` (strongly for).

    Zero, NaN and a non-positive ``scale`` give 0 (neutral).
    """
    if not (math.isfinite(score) and scale > 0):
        return 0
    step = round(min(abs(score) / scale, 1.0) * LEVELS)
    return int(math.copysign(step, score)) if step else 0


def shade(signed_level: int) -> str:
    """Background colour ``#rrggbb`` of a signed shade from :func:`level`."""
    stops = POSITIVE_STOPS if signed_level > 0 else NEGATIVE_STOPS
    position = abs(signed_level) / LEVELS * (len(stops) - 1)
    low = min(int(position), len(stops) - 2)
    frac = position - low
    a, b = _rgb(stops[low]), _rgb(stops[low + 1])
    return "#" + "".join(f"{round(x + (y - x) * frac):02x}" for x, y in zip(a, b))


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def _luminance(colour: str) -> float:
    """WCAG relative luminance of ``#rrggbb``."""
    channels = [c / 255 for c in _rgb(colour)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _ink(background: str) -> str:
    """Black or white, whichever contrasts more with ``background``."""
    lum = _luminance(background)
    return "#000" if (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) else "#fff"


def _class_attr(signed_level: int) -> str:
    if signed_level == 0:
        return "z"
    return f"{'p' if signed_level > 0 else 'n'}{abs(signed_level)}"


def _css() -> str:
    rules = [
        "body{margin:0;background:#fff;color:#1a1a1a;"
        "font:16px/1.6 system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',Arial,sans-serif}",
        "header{position:sticky;top:0;z-index:1;background:#fff;border-bottom:1px solid #ddd;"
        "padding:12px 24px}",
        "h1{font-size:1.3em;margin:0 0 8px}",
        ".legend{display:flex;flex-wrap:wrap;align-items:center;gap:6px 16px;font-size:.85em}",
        ".scale{display:inline-block}",
        ".bar{display:flex;border:1px solid #bbb;width:336px;max-width:80vw}",
        ".bar span{flex:1;height:14px;box-shadow:none}",
        ".bar span.z{background:#fff}",
        ".ticks{display:flex;justify-content:space-between;width:338px;max-width:80vw;color:#555;"
        "font-variant-numeric:tabular-nums}",
        ".ends{display:flex;justify-content:space-between;width:338px;max-width:80vw;font-weight:600}",
        ".ends .against{color:#2166ac}.ends .for{color:#b2182b}",
        ".note{color:#555;max-width:40em}",
        "main{padding:8px 24px 32px;max-width:60em}",
        "article{border-bottom:1px solid #eee;padding:12px 0}",
        ".info{font-size:.85em;color:#555;margin-bottom:4px;display:flex;flex-wrap:wrap;gap:2px 16px}",
        ".info b{color:#1a1a1a}",
        ".text{white-space:pre-wrap;overflow-wrap:anywhere}",
        ".text:empty::before,.text[data-blank]::before{content:'(empty text)';color:#888;font-style:italic}",
        ".text .t,.legend .t{color:#999;background:none;text-decoration:underline dotted #bbb}",
        ".text span{border-radius:2px}",
        ".pair{display:grid;grid-template-columns:repeat(auto-fit,minmax(16em,1fr));gap:8px 24px}",
        ".side{font-size:.75em;text-transform:uppercase;letter-spacing:.05em;color:#888}",
        ".output{white-space:pre-wrap;overflow-wrap:anywhere;border-left:3px solid #ddd;padding-left:8px;"
        "color:#333}",
        ".output:empty::before{content:'(empty output)';color:#888;font-style:italic}",
        ".none{color:#888;font-style:italic}",
        ".z{background:none}",
    ]
    for signed in [*range(-LEVELS, 0), *range(1, LEVELS + 1)]:
        background = shade(signed)
        # The shadow widens the shade by a pixel each side without moving the text.
        rules.append(
            f".{_class_attr(signed)}{{background:{background};color:{_ink(background)};"
            f"box-shadow:0 0 0 1px {background}}}"
        )
    return "\n".join(rules) + "\n"


def _visible(a: Attribution) -> int:
    """How many leading words the model read: all of them unless the explainer said otherwise."""
    visible = visible_count(a)
    return len(a) if visible is None else visible


def _is_truncated(a: Attribution) -> bool:
    return _visible(a) < len(a)


def _legend(scale: float | None, count: int, ends: tuple[str, str] = DEFAULT_ENDS, truncated: bool = False) -> str:
    cells = "".join(f"<span class=\"{_class_attr(s)}\"></span>" for s in range(-LEVELS, LEVELS + 1))
    if scale is None:
        ticks = ["−max", "−½ max", "0", "+½ max", "+max"]
        note = (
            "Colour intensity is |score| ÷ the largest |score| of the same text (its “max”, shown "
            "above each text)."
        )
    else:
        ticks = [_number(v, sign=True) for v in (-scale, -scale / 2)] + ["0"]
        ticks += [_number(v, sign=True) for v in (scale / 2, scale)]
        note = "Colour intensity is |score| on one scale for every text; scores beyond it are capped."
    note += " Hover a word for its exact score."
    tick_html = "".join(f"<span>{escape(t)}</span>" for t in ticks)
    plural = "text" if count == 1 else "texts"
    grey = ""
    if truncated:
        grey = ("<br><span class=\"t\">grey</span>: not read by the model (truncated: the text is longer "
                "than the classifier's length limit).")
    return (
        "<div class=\"legend\">\n<div class=\"scale\">"
        f"<div class=\"ends\"><span class=\"against\">{escape(ends[0])}</span>"
        f"<span class=\"for\">{escape(ends[1])}</span></div>"
        f"<div class=\"bar\" role=\"img\" aria-label=\"colour scale\">{cells}</div>"
        f"<div class=\"ticks\">{tick_html}</div></div>\n"
        f"<div class=\"note\">{escape(note)}{grey}<br>{count} {plural}.</div>\n</div>\n"
    )


def _block(number: int, a: Attribution, scale: float | None) -> str:
    scores = np.asarray(a.scores, dtype=np.float64)
    finite = np.abs(scores[np.isfinite(scores)])
    text_max = float(finite.max()) if finite.size else 0.0
    used = text_max if scale is None else scale
    blank = "" if len(a) else " data-blank"
    body = f"<div class=\"text\"{blank} dir=\"auto\">{_coloured_text(a, scores, used)}</div>"
    if a.meta.get("output") is not None:
        body = (f"<div class=\"pair\"><div><div class=\"side\">prompt</div>{body}</div>"
                f"<div><div class=\"side\">output</div><div class=\"output\" dir=\"auto\">"
                f"{escape(str(a.meta['output']))}</div></div></div>")
    return (
        f"<article id=\"t{number}\">\n<div class=\"info\">{_info(number, a, scale, text_max)}</div>\n"
        f"{body}\n</article>\n"
    )


def _info(number: int, a: Attribution, scale: float | None, text_max: float) -> str:
    if a.meta.get("output") is not None:
        return _prompt_info(number, a, scale, text_max)
    if a.meta.get("empty"):
        return f"<span>#{number}</span><span><b>empty text</b>: no words, nothing to explain</span>"
    labels = a.meta.get("labels")
    probs = a.meta.get("probs")
    probs = None if probs is None else np.asarray(probs, dtype=np.float64).ravel()
    target_name = class_name(labels, a.target) or f"class {a.target}"
    items = [f"<span>#{number}</span>"]
    predicted = int(np.argmax(probs)) if probs is not None and probs.size else None
    if predicted is not None:
        predicted_name = class_name(labels, predicted) or f"class {predicted}"
        items.append(
            f"<span>predicted <b>{escape(predicted_name)}</b> (p = {probs[predicted]:.3f})</span>"
        )
    if predicted != a.target:
        target_p = ""
        if probs is not None and 0 <= a.target < probs.size:
            target_p = f" (p = {probs[a.target]:.3f})"
        items.append(f"<span>explaining <b>{escape(target_name)}</b>{target_p}</span>")
    items.append(f"<span>method {escape(str(a.method))}</span>")
    if scale is None and len(a):
        shown = _number(text_max) if text_max > 0 else "0 (all scores zero or NaN)"
        items.append(f"<span>max |score| {shown}</span>")
    if _is_truncated(a):
        items.append(f"<span>the model read {visible_count(a)} of {len(a)} words (truncated)</span>")
    return "".join(items)


def _prompt_info(number: int, a: Attribution, scale: float | None, text_max: float) -> str:
    """The info line of an explained prompt: method, samples, surrogate fidelity."""
    items = [f"<span>#{number}</span>", f"<span>method {escape(str(a.method))}</span>"]
    n, dropped = a.meta.get("n_samples"), a.meta.get("n_insignificant")
    if n is not None:
        items.append(f"<span>{int(n)} perturbations, {int(dropped or 0)} not significant</span>")
    fidelity = a.meta.get("fidelity") or {}
    if "weighted_r2" in fidelity:
        items.append(f"<span>surrogate weighted R² <b>{float(fidelity['weighted_r2']):.3f}</b></span>")
    if scale is None and len(a):
        items.append(f"<span>max |score| {_number(text_max) if text_max > 0 else '0'}</span>")
    return "".join(items)


def _coloured_text(a: Attribution, scores: np.ndarray, scale: float) -> str:
    """The original text with each word in a coloured span; the characters between words unchanged."""
    text = a.text
    visible = _visible(a)
    pieces, cursor = [], 0
    for word_index, (start, end) in sorted(enumerate(a.spans), key=lambda item: item[1]):
        start, end = max(start, cursor), min(end, len(text))
        if end <= start:
            continue
        pieces.append(escape(text[cursor:start]))
        score = float(scores[word_index])
        if word_index >= visible:
            css, shown = "t", "not read by the model (truncated)"
        else:
            css = _class_attr(level(score, scale))
            shown = f"{score:+.6g}" if math.isfinite(score) else "no score (NaN)"
        tooltip = f"{a.words[word_index]}: {shown}"
        pieces.append(
            f"<span class=\"{css}\" title=\"{escape(tooltip)}\">"
            f"{escape(text[start:end])}</span>"
        )
        cursor = end
    pieces.append(escape(text[cursor:]))
    return "".join(pieces)


def _number(value: float, sign: bool = False) -> str:
    """``value`` to 3 significant digits, with its sign when ``sign`` is true."""
    plus = "+" if sign else ""
    return f"{value:{plus}.3g}" if abs(value) >= 1e-3 else f"{value:{plus}.2e}"


def terminal_heatmap(a: Attribution, scale: float | None = None):
    """A :class:`rich.text.Text` of the text with each word's background shaded by its score.

    Same palette and levels as the HTML page (red positive, blue negative, ``scale`` defaulting
    to the text's largest ``|score|``, words the model did not read in grey); print it with
    ``rich.console.Console().print``.
    """
    from rich.text import Text

    scores = np.asarray(a.scores, dtype=np.float64)
    finite = np.abs(scores[np.isfinite(scores)])
    used = scale if scale is not None else (float(finite.max()) if finite.size else 0.0)
    visible = _visible(a)
    out, cursor = Text(), 0
    for word_index, (start, end) in sorted(enumerate(a.spans), key=lambda item: item[1]):
        start, end = max(start, cursor), min(end, len(a.text))
        if end <= start:
            continue
        out.append(a.text[cursor:start])
        signed = level(float(scores[word_index]), used) if used > 0 else 0
        background = shade(signed)
        style = f"{_ink(background)} on {background}" if signed else ""
        if word_index >= visible:
            style = "grey50"
        out.append(a.text[start:end], style=style)
        cursor = end
    out.append(a.text[cursor:])
    return out

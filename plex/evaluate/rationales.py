"""Rationale datasets in other formats, converted to plex's: ``text``, ``label``, ``rationale_spans``.

plex's own format (``../shared/data/rationales/``) has character spans already. Two public formats
are converted:

- HateXplain (``dataset.json``: ``{post_id: {"post_tokens": [...], "annotators": [{"label": ...}],
  "rationales": [[0/1 per token], ...]}}``): the text is the tokens joined by spaces, the label the
  annotators' majority, and a token is evidence when at least half of the rationale masks mark it
  (HateXplain's own aggregation). Posts without rationales (``normal`` posts) have no evidence.
  HateXplain gives only a per-token mask, not spans, so each maximal run of consecutive evidence
  tokens becomes one character span (from the start of its first token to the end of its last).
- ERASER (``{split}.jsonl`` of annotations plus a ``docs/`` folder of whitespace-tokenised texts):
  the text is the document, the label the ``classification``, and every evidence's token range
  ``[start_token, end_token)`` becomes one character span, from the start of its first token to
  the end of its last, so a multi-token evidence stays one gold span; evidences with the same range
  count once.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from plex.data import DataError

FORMATS = ("plex", "hatexplain", "eraser")


def _token_spans(tokens: list[str]) -> tuple[str, list[tuple[int, int]]]:
    spans, cursor = [], 0
    for tok in tokens:
        spans.append((cursor, cursor + len(tok)))
        cursor += len(tok) + 1
    return " ".join(tokens), spans


def _char_span(spans: list[tuple[int, int]], first: int, end: int) -> list[int]:
    """The character span of tokens ``[first, end)``: start of the first to end of the last."""
    return [spans[first][0], spans[end - 1][1]]


def _runs(flags: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs of true flags as ``[start, end)`` token ranges."""
    out, start = [], None
    for i, flag in enumerate([*flags, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i))
            start = None
    return out


def hatexplain_records(path: str | Path) -> list[dict]:
    """HateXplain's ``dataset.json`` as plex rationale records (id, text, label, rationale_spans)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise DataError(f"{path} is not HateXplain's dataset.json (a mapping of post ids to posts)")
    records = []
    for post_id, post in data.items():
        try:
            tokens = post["post_tokens"]
            votes = Counter(a["label"] for a in post["annotators"])
        except (KeyError, TypeError) as err:
            raise DataError(f"post {post_id} in {path} lacks {err}; expected HateXplain's post_tokens, "
                            "annotators and rationales") from err
        text, spans = _token_spans(tokens)
        masks = post.get("rationales") or []
        evidence = [bool(masks) and sum(m[i] for m in masks if i < len(m)) >= len(masks) / 2
                    for i in range(len(tokens))]
        records.append({"id": post_id, "text": text, "label": votes.most_common(1)[0][0],
                        "rationale_spans": [_char_span(spans, s, e) for s, e in _runs(evidence)]})
    return records


def eraser_records(annotations: str | Path, docs: str | Path | None = None) -> list[dict]:
    """An ERASER split (``test.jsonl``) with its ``docs/`` folder as plex rationale records."""
    annotations = Path(annotations)
    docs = Path(docs) if docs is not None else annotations.parent / "docs"
    if not docs.is_dir():
        raise DataError(f"ERASER documents folder {docs} not found; it sits beside {annotations.name} as docs/")
    records = []
    for n, line in enumerate(annotations.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        ann = json.loads(line)
        evidences = [e for group in ann.get("evidences", []) for e in group]
        docid = evidences[0]["docid"] if evidences else ann.get("docids", [ann["annotation_id"]])[0]
        doc_path = docs / docid
        if not doc_path.is_file():
            raise DataError(f"line {n} of {annotations}: document {docid} is not in {docs}")
        text, spans = _token_spans(doc_path.read_text(encoding="utf-8").split())
        ranges = sorted({(max(e["start_token"], 0), min(e["end_token"], len(spans)))
                         for e in evidences if e["docid"] == docid})
        records.append({"id": ann["annotation_id"], "text": text, "label": ann["classification"],
                        "rationale_spans": [_char_span(spans, s, e) for s, e in ranges if s < e]})
    return records


def _match_label(value: str, labels: list[str]) -> str:
    """The classifier's label for ``value``: equal ignoring case, else the one label it abbreviates
    (ERASER's ``NEG`` -> ``negative``); unmatched values pass through to get a clear error."""
    lowered = [label.lower() for label in labels]
    if value.lower() in lowered:
        return value
    starts = [label for label in labels if label.lower().startswith(value.lower())]
    return starts[0] if len(starts) == 1 else value


def load_rationale_split(source: str, fmt: str, labels: list[str]):
    """Records of ``source`` in ``fmt`` as a dataset with text, label (class index) and rationale_spans."""
    import datasets

    from plex.data import label_indices

    if fmt == "hatexplain":
        records = hatexplain_records(source)
    elif fmt == "eraser":
        records = eraser_records(source)
    else:
        raise DataError(f"unknown rationale format {fmt!r}; choose one of {', '.join(FORMATS)}")
    gold = label_indices([_match_label(str(r["label"]), labels) for r in records], labels, where=source)
    return datasets.Dataset.from_dict({
        "text": [r["text"] for r in records], "label": gold,
        "rationale_spans": [r["rationale_spans"] for r in records],
    })

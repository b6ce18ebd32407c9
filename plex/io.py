"""Read texts to explain and write explanations as JSON lines.

Input files (:func:`read_texts`), chosen by suffix (case-insensitive):

- ``.txt``: one text per line. Every line is kept, empty ones included, so line N of the file is
  text N; only the line ending is removed. A final line ending does not start another text.
- ``.jsonl``: one JSON object per line with the text under ``text_column``. Blank lines are skipped.
- ``.csv`` / ``.tsv``: a header row naming a ``text_column`` column; quoted fields may span lines.

Files are read as UTF-8; a leading byte-order mark is ignored. Problems raise
:class:`plex.data.DataError` with a message that says how to fix them.

Output (:func:`write_jsonl`) is one JSON object per line, written atomically: readers see either the
old file or the complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from plex.attribution import Attribution
from plex.data import DataError

TEXT_SUFFIXES = (".txt", ".jsonl", ".csv", ".tsv")
"""File suffixes :func:`read_texts` understands."""

ENCODING = "utf-8-sig"
"""UTF-8 that drops a leading byte-order mark when reading."""


def read_texts(path: str | os.PathLike[str], text_column: str = "text") -> list[str]:
    """Read the texts of a ``.txt``, ``.jsonl``, ``.csv`` or ``.tsv`` file, in file order.

    Args:
        path: the file to read.
        text_column: the JSONL key or CSV/TSV column holding the texts; ignored for ``.txt``.

    Returns:
        One string per text. A ``.txt`` file gives one per line, empty lines included.

    Raises:
        DataError: the file is missing or of an unknown kind, is not UTF-8, lacks the text column,
            holds a line that is not a JSON object, or a text that is not a string.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        raise DataError(
            f"{str(path)!r} is a file of an unknown kind ({suffix or 'no suffix'}); plex reads texts "
            f"from {', '.join(TEXT_SUFFIXES)} files — rename the file or convert it to one of these"
        )
    if path.is_dir():
        raise DataError(f"{str(path)!r} is a folder; pass the path of a {', '.join(TEXT_SUFFIXES)} file")
    if not path.is_file():
        raise DataError(f"the text file {str(path)!r} does not exist; check the path")
    try:
        if suffix == ".txt":
            return _read_txt(path)
        if suffix == ".jsonl":
            return _read_jsonl(path, text_column)
        return _read_table(path, text_column, "\t" if suffix == ".tsv" else ",")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}); re-save it as UTF-8"
        ) from err


def _read_txt(path: Path) -> list[str]:
    # Universal newlines turn \r\n and \r into \n, so only "\n" needs removing.
    with path.open(encoding=ENCODING) as f:
        return [line[:-1] if line.endswith("\n") else line for line in f]


def _read_jsonl(path: Path, text_column: str) -> list[str]:
    texts = []
    with path.open(encoding=ENCODING) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"line {number} of {str(path)!r}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{where} is not valid JSON ({err.msg} at column {err.colno}); a .jsonl file holds "
                    "one JSON object per line"
                ) from err
            if not isinstance(row, dict):
                raise DataError(
                    f"{where} holds a JSON {type(row).__name__}, not an object; write each text as "
                    f'{{"{text_column}": "..."}}'
                )
            if text_column not in row:
                raise DataError(_missing_column(where, text_column, list(row)))
            texts.append(_require_str(row[text_column], where, text_column))
    return texts


def _read_table(path: Path, text_column: str, delimiter: str) -> list[str]:
    texts = []
    with path.open(encoding=ENCODING, newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        try:
            columns = reader.fieldnames
            if not columns:
                raise DataError(
                    f"{str(path)!r} is empty; a {path.suffix} file needs a header row naming a "
                    f"{text_column!r} column"
                )
            if text_column not in columns:
                raise DataError(_missing_column(f"the header of {str(path)!r}", text_column, columns))
            for row in reader:
                where = f"line {reader.line_num} of {str(path)!r}"
                texts.append(_require_str(row[text_column], where, text_column))
        except csv.Error as err:
            where = f"line {reader.line_num} of {str(path)!r}"
            raise DataError(f"{where} is not valid {path.suffix}: {err}") from err
    return texts


def _missing_column(where: str, column: str, found: list[str]) -> str:
    shown = ", ".join(repr(c) for c in found) or "none"
    return (
        f"{where} has no text column {column!r}; columns found: {shown}; pass the column holding "
        "the texts with --text-column NAME"
    )


def _require_str(value: Any, where: str, column: str) -> str:
    if isinstance(value, str):
        return value
    # A CSV row with fewer fields than the header has None in the missing ones.
    what = "no text (null or a missing field)" if value is None else f"a {type(value).__name__} ({value!r})"
    raise DataError(
        f"{where} has {what} under {column!r}, not a string; fix or drop that row, or pick the "
        "right column with --text-column"
    )


@contextlib.contextmanager
def open_atomic(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """Open ``path`` for writing UTF-8 text so that it appears complete or not at all.

    Writes go to a temporary file in the same folder, which replaces ``path`` (``os.replace``)
    when the ``with`` block ends without an error; on an error the temporary file is removed and
    ``path`` is left as it was. Missing parent folders are created. The new file gets the usual
    permissions of a new file (``0o666`` less the umask).
    """
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Write ``records`` to ``path`` as JSON lines, atomically (see :func:`open_atomic`).

    Text is UTF-8 with non-ASCII characters kept as they are. Numpy arrays and scalars become
    lists and plain numbers, tuples become lists, and non-finite floats (NaN, ±inf) become ``null``
    so that every line is standard JSON.
    """
    with open_atomic(path) as f:
        for record in records:
            f.write(json.dumps(to_plain(record), ensure_ascii=False, allow_nan=False))
            f.write("\n")


def to_plain(value: Any) -> Any:
    """``value`` with numpy types, tuples and non-finite floats made JSON-ready (see :func:`write_jsonl`)."""
    if isinstance(value, dict):
        return {_plain_key(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _plain_key(key: Any) -> Any:
    return key.item() if isinstance(key, np.generic) else key


def attribution_record(a: Attribution) -> dict[str, Any]:
    """The JSON object plex writes for one explained text.

    Keys: ``text``, ``words``, ``spans`` (``[start, end]`` character offsets), ``scores``,
    ``target`` (the explained class) and ``target_label``, ``predicted`` (the class with the
    highest probability) and ``predicted_label``, ``probs`` (class probabilities) and ``method``.
    Labels are ``None`` when the classifier's class names are unknown (``meta["labels"]``);
    ``predicted``, ``predicted_label`` and ``probs`` are ``None`` when ``meta`` has no ``"probs"``.
    """
    labels = a.meta.get("labels")
    probs = a.meta.get("probs")
    probs = None if probs is None else np.asarray(probs, dtype=np.float64).ravel()
    predicted = int(np.argmax(probs)) if probs is not None and probs.size else None
    return {
        "text": a.text,
        "words": list(a.words),
        "spans": [[int(s), int(e)] for s, e in a.spans],
        "scores": [float(s) for s in a.scores],
        "target": int(a.target),
        "target_label": class_name(labels, a.target),
        "predicted": predicted,
        "predicted_label": class_name(labels, predicted),
        "probs": None if probs is None else probs.tolist(),
        "method": a.method,
    }


def class_name(labels: Any, index: int | None) -> str | None:
    """``labels[index]`` as a string, or ``None`` when the labels or the index are unknown."""
    if labels is None or index is None or not 0 <= index < len(labels):
        return None
    return str(labels[index])

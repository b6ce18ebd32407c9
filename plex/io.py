"""Read texts to explain and write explanations as JSON lines.

Input files (:func:`read_texts`), chosen by suffix (case-insensitive):

- ``.txt``: one text per line. Every line is kept, empty ones included, so line N of the file is
  text N; only the line ending is removed. A final line ending does not start another text.
- ``.jsonl``: one JSON object per line with the text under ``text_column``. Blank lines are skipped.
- ``.csv`` / ``.tsv``: a header row naming a ``text_column`` column; quoted fields may span lines.
  A quote that is never closed is an error naming the line where it opened (it would otherwise
  swallow the rest of the file as one text).

Files are read as UTF-8; a leading byte-order mark is ignored. Problems raise
:class:`plex.data.DataError` with a message that says how to fix them.

Outputs (:func:`open_output`, used by :func:`write_jsonl` and :func:`plex.render.write_html`) never
damage what they are pointed at:

- ``-`` (and ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``) write to that open stream;
- a regular file, or a new one, is written atomically: readers see either the old file or the
  complete new one, never a half-written file (missing parent folders are created; the old file's
  permission bits are kept);
- a symbolic link is written through: the link stays, its final target gets the content;
- a FIFO or a device (``/dev/null``, a terminal) is opened and written directly, never replaced.

:func:`check_outputs` refuses, before any work, an output that is one of the inputs (also through
symbolic links) or two outputs that are the same file.

Explanation records (:func:`attribution_record`): one JSON object per explained text, in input
order. A text without words (empty or only whitespace) is not run through the classifier; its record
keeps its place with ``"empty": true``, no words or scores and ``null`` prediction. Words past the
classifier's length limit were never read by the model: ``visible_words`` counts the leading words
it read and ``visible`` flags each word.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


def check_table(path: str | os.PathLike[str], delimiter: str = ",") -> None:
    """Raise a :class:`~plex.data.DataError` naming the line of a CSV/TSV file whose quoting is broken
    (a quote never closed would make the rest of the file one text), before any other reader sees it."""
    _read_table(Path(path), None, delimiter)


def _read_table(path: Path, text_column: str | None, delimiter: str) -> list[str]:
    texts: list[str] = []
    raw: list[str] = []  # the physical lines of the row being read

    def lines(f: IO[str]) -> Iterator[str]:
        for line in f:
            raw.append(line)
            yield line

    with path.open(encoding=ENCODING, newline="") as f:
        reader = csv.reader(lines(f), delimiter=delimiter)
        column = None
        first, last_first, last_row = 1, 1, []
        try:
            while True:
                raw.clear()
                try:
                    row = next(reader)
                except StopIteration:
                    break
                first = reader.line_num - len(raw) + 1
                if not row:  # a blank line
                    continue
                if column is None:
                    if text_column is None:  # only checking the file's syntax
                        column = 0
                        continue
                    if text_column not in row:
                        raise DataError(_missing_column(f"the header of {str(path)!r}", text_column, row))
                    column = row.index(text_column)
                    continue
                last_first, last_row = first, list(raw)
                where = f"line {first} of {str(path)!r}"
                texts.append(_require_str(row[column] if column < len(row) else None, where, text_column))
        except csv.Error as err:
            first = reader.line_num - len(raw) + 1
            hint = ""
            if "field limit" in str(err):
                hint = "; most likely a quote (\") opened in that row is never closed — close it or double it (\"\")"
            raise DataError(
                f"the row starting at line {first} of {str(path)!r} is not valid {path.suffix}: {err}{hint}"
            ) from err
        if column is None:
            raise DataError(
                f"{str(path)!r} is empty; a {path.suffix} file needs a header row naming a "
                f"{text_column!r} column"
            )
        opened = _unclosed_quote_line(last_row, delimiter)
        if opened is not None:
            raise DataError(
                f"line {last_first + opened} of {str(path)!r} opens a quoted field (\") that is never "
                "closed, so the rest of the file would become one text; close the quote, or write a "
                "quote inside a quoted field as two (\"\")"
            )
    return texts


def _unclosed_quote_line(lines: list[str], delimiter: str) -> int | None:
    """Which of ``lines`` (one CSV row, the file's last) opens a quoted field that never closes.

    Follows the ``csv`` module's default dialect: a quote opens a quoted field only at the start of
    a field, and two quotes inside it stand for one.
    """
    row = "".join(lines)
    i, n = 0, len(row)
    while i < n:
        if row[i] == '"':
            j = i + 1
            while True:
                k = row.find('"', j)
                if k < 0:
                    return _line_of(lines, i)
                if row.startswith('""', k):
                    j = k + 2
                    continue
                break
            i = k + 1
        while i < n and row[i] not in (delimiter, "\r", "\n"):
            i += 1
        if i >= n or row[i] != delimiter:
            return None
        i += 1
    return None


def _line_of(lines: list[str], offset: int) -> int:
    """Index of the line of ``lines`` holding character ``offset`` of their concatenation."""
    for index, line in enumerate(lines):
        if offset < len(line):
            return index
        offset -= len(line)
    return len(lines) - 1


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


STDOUT = "-"
"""The output path that means standard output."""

_STREAM_NAMES = {"/dev/stdout": 1, "/dev/stderr": 2}


class OutputError(ValueError):
    """An output path that would overwrite an input or another output; the message says which."""


def _stream_fd(path: str | os.PathLike[str]) -> int | None:
    """The open file descriptor an output path names: ``-`` and ``/dev/stdout`` are 1, ``/dev/stderr``
    is 2, ``/dev/fd/N`` and ``/proc/self/fd/N`` are N; ``None`` for any other path."""
    text = os.fspath(path)
    if text == STDOUT:
        return 1
    text = os.path.normpath(os.path.expanduser(text))
    if text in _STREAM_NAMES:
        return _STREAM_NAMES[text]
    for prefix in ("/dev/fd/", "/proc/self/fd/"):
        if text.startswith(prefix) and text[len(prefix):].isdigit():
            return int(text[len(prefix):])
    return None


def is_stdout(path: str | os.PathLike[str] | None) -> bool:
    """Whether the output ``path`` is standard output (``-`` or ``/dev/stdout``)."""
    return path is not None and _stream_fd(path) == 1


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str]) -> Iterator[IO[str]]:
    """Open the output ``path`` for writing UTF-8 text without damaging what it points at.

    - ``-``, ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N``: the already open stream is written
      (and flushed, never closed).
    - A regular file, or a path that does not exist yet: writes go to a temporary file in the same
      folder, which replaces the file (``os.replace``) when the ``with`` block ends without an
      error; on an error the temporary file is removed and the old file is left as it was. Missing
      parent folders are created. A replaced file keeps its permission bits; a new one gets the
      usual ones (``0o666`` less the umask). Other hard links to a replaced file keep the old
      content.
    - A symbolic link is followed: the link stays as it is and its final target is written as above
      (a dangling link's target is created).
    - A FIFO, a terminal or another device is opened and written in place; it is never replaced.

    Raises:
        OutputError: ``path`` is a folder.
        OSError: the file cannot be written (permissions, a full disk, ...).
    """
    fd = _stream_fd(path)
    if fd is not None:
        with _open_stream(fd) as f:
            yield f
        return
    path = Path(path).expanduser()
    try:
        st = os.stat(path)  # follows symbolic links
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"the output {str(path)!r} is a folder; pass the path of a file to write")
    if st is not None and not stat.S_ISREG(st.st_mode):
        # A FIFO or a device: replacing it would destroy it, and its readers expect writes to it.
        with open(os.open(path, os.O_WRONLY), "w", encoding="utf-8", newline="\n") as f:
            yield f
        return
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    with _open_atomic(target, None if st is None else stat.S_IMODE(st.st_mode)) as f:
        yield f


@contextlib.contextmanager
def _open_stream(fd: int) -> Iterator[IO[str]]:
    """Text in UTF-8 to the open descriptor ``fd`` (``sys.stdout`` / ``sys.stderr`` for 1 / 2)."""
    stream = {1: sys.stdout, 2: sys.stderr}.get(fd)
    if stream is None:
        with open(os.dup(fd), "w", encoding="utf-8", newline="\n") as f:
            yield f
        return
    stream.flush()
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text-only stream (e.g. io.StringIO in place of sys.stdout)
        yield stream
        stream.flush()
        return
    # UTF-8 whatever the locale says; detach so the stream's own buffer stays open.
    wrapper = io.TextIOWrapper(buffer, encoding="utf-8", newline="\n", write_through=True)
    try:
        yield wrapper
    finally:
        wrapper.flush()
        wrapper.detach()
        buffer.flush()


@contextlib.contextmanager
def _open_atomic(path: Path, mode: int | None) -> Iterator[IO[str]]:
    """Write ``path`` (a regular file or a new one) through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="\n") as f:
            if mode is not None:
                os.chmod(f.fileno(), mode)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def check_outputs(
    outputs: Mapping[str, str | os.PathLike[str] | None] | Iterable[str | os.PathLike[str] | None],
    inputs: Mapping[str, str | os.PathLike[str] | None] | Iterable[str | os.PathLike[str] | None] = (),
) -> None:
    """Refuse outputs that would overwrite an input or each other; call it before any work.

    Paths are compared as the files they name: through symbolic links and ``..``, by device and
    inode for existing files. Two outputs may both be a character device (``/dev/null``, a
    terminal), where writing twice loses nothing; they may not both be standard output (``-``).

    Args:
        outputs: the paths to be written, as ``{name: path}`` (the name, e.g. ``"--html"``, is used
            in the message) or a plain list; ``None`` entries (an output not asked for) are skipped.
        inputs: the paths to be read, in the same form.

    Raises:
        OutputError: an output is an input, two outputs are the same file, or an output is a folder.
    """
    named_outputs, named_inputs = _named(outputs), _named(inputs)
    seen: dict[Any, tuple[str, str]] = {}
    for name, path in named_inputs:
        seen.setdefault(_identity(path)[0], (name, path))
    inputs_seen = dict(seen)
    for name, path in named_outputs:
        key, is_device = _identity(path)
        if key is None:
            raise OutputError(f"the output {_shown(name, path)} is a folder; pass the path of a file to write")
        if key in inputs_seen:
            raise OutputError(
                f"the output {_shown(name, path)} is the same file as the input {_shown(*inputs_seen[key])}; "
                "writing it would destroy what is being read — choose another output path"
            )
        if key in seen and not is_device:
            what = "both standard output" if key[0] == "stream" else "the same file, which the second would overwrite"
            raise OutputError(
                f"the outputs {_shown(*seen[key])} and {_shown(name, path)} are {what}; give each output "
                "its own path"
            )
        seen[key] = (name, path)


def _named(paths: Any) -> list[tuple[str, str]]:
    items = paths.items() if isinstance(paths, Mapping) else (("", p) for p in paths)
    return [(str(name), os.fspath(path)) for name, path in items if path is not None]


def _shown(name: str, path: str) -> str:
    return f"{path!r} ({name})" if name else repr(path)


def _identity(path: str) -> tuple[Any, bool]:
    """What ``path`` names, for comparing paths: ``(key, is a character device)``; key ``None`` for a folder."""
    fd = _stream_fd(path)
    if fd is not None:
        return ("stream", fd), False
    expanded = os.path.expanduser(path)
    resolved = os.path.realpath(expanded)
    try:
        st = os.stat(expanded)
    except OSError:
        try:  # "missing/../file" names "file" once "missing" is created
            st = os.stat(resolved)
        except OSError:
            return ("new", resolved), False
    if stat.S_ISDIR(st.st_mode):
        return None, False
    return ("file", st.st_dev, st.st_ino), stat.S_ISCHR(st.st_mode)


def write_jsonl(path: str | os.PathLike[str], records: Iterable[dict[str, Any]]) -> None:
    """Write ``records`` to ``path`` as JSON lines (see :func:`open_output`: ``-`` is standard output,
    a regular file is replaced atomically, a symlink is written through, a FIFO or device in place).

    Text is UTF-8 with non-ASCII characters kept as they are. Numpy arrays and scalars become
    lists and plain numbers, tuples become lists, and non-finite floats (NaN, ±inf) become ``null``
    so that every line is standard JSON.
    """
    with open_output(path) as f:
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
    highest probability) and ``predicted_label``, ``probs`` (class probabilities), ``method``,
    ``visible_words`` (how many leading words the classifier read; the rest were cut by its length
    limit) and ``visible`` (one flag per word: read by the classifier), and ``empty``.

    Labels are ``None`` when the classifier's class names are unknown (``meta["labels"]``);
    ``predicted``, ``predicted_label`` and ``probs`` are ``None`` when ``meta`` has no ``"probs"``;
    ``visible_words`` and ``visible`` are ``None`` when ``meta`` has no ``"visible_words"``.
    ``empty`` is true for a text without words (``meta["empty"]``, see :func:`empty_attribution`):
    nothing was explained, so it has no words or scores and ``null`` target and prediction.
    """
    labels = a.meta.get("labels")
    probs = a.meta.get("probs")
    probs = None if probs is None else np.asarray(probs, dtype=np.float64).ravel()
    predicted = int(np.argmax(probs)) if probs is not None and probs.size else None
    target = int(a.target) if a.target >= 0 else None
    visible = visible_count(a)
    return {
        "text": a.text,
        "words": list(a.words),
        "spans": [[int(s), int(e)] for s, e in a.spans],
        "scores": [float(s) for s in a.scores],
        "target": target,
        "target_label": class_name(labels, target),
        "predicted": predicted,
        "predicted_label": class_name(labels, predicted),
        "probs": None if probs is None else probs.tolist(),
        "method": a.method,
        "visible_words": visible,
        "visible": None if visible is None else [i < visible for i in range(len(a))],
        "empty": bool(a.meta.get("empty", False)),
    }


def visible_count(a: Attribution) -> int | None:
    """How many leading words of ``a`` the classifier read (``meta["visible_words"]``, at most
    every word), or ``None`` when the explainer did not say."""
    visible = a.meta.get("visible_words")
    return None if visible is None else max(0, min(int(visible), len(a)))


def empty_attribution(text: str, method: str, labels: Sequence[str] | None = None) -> Attribution:
    """The placeholder for a text without words: no scores, no target (``-1``), ``meta["empty"]``."""
    meta: dict[str, Any] = {"empty": True, "visible_words": 0}
    if labels is not None:
        meta["labels"] = list(labels)
    return Attribution(text=text, words=[], spans=[], scores=np.zeros(0), target=-1, method=method, meta=meta)


def class_name(labels: Any, index: int | None) -> str | None:
    """``labels[index]`` as a string, or ``None`` when the labels or the index are unknown."""
    if labels is None or index is None or not 0 <= index < len(labels):
        return None
    return str(labels[index])

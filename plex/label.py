"""Label a dataset split with a teacher: every class's word scores for every text, resumable.

``run_label`` explains rows ``[0, limit)`` of a split and writes them to an output folder::

    <output>/
      manifest.json          settings the labels were made with, plus informational fields
      shards/shard-00000/    a Dataset (save_to_disk) of up to ``shard_size`` labelled rows
      shards/shard-00001/
      ...
      dataset/               all labelled rows sorted by idx; written once every requested row is done

Every write is atomic: the manifest goes through a temporary file and ``os.replace``, a shard or the
consolidated dataset is saved into a temporary sibling folder and renamed into place. A run killed
at any point leaves only complete shards (and temporary entries, removed by the next run), so a
re-run with the same settings labels exactly the missing rows: no row is lost or written twice.
The rows a folder holds are the union of its shards; ``manifest.json`` ``rows_done`` is
informational.

Each text is explained on its own, so a row does not depend on which shard it landed in:
``shard_size`` and ``limit`` may change between runs. Everything that does change the rows (the
classifier, the teacher's settings, the dataset, split and columns) is recorded under
``settings`` in the manifest; a run whose settings differ raises :class:`LabelsMismatchError`.

The folder can be moved. The classifier is recorded portably (:mod:`plex.classifiers.portable`):
a hub or embedded name as it is, a local folder or prompt file relative to the labels folder, with
its absolute path as a hint; what identifies it is its weights hash (with its kind, labels and, for
a prompt classifier, the prompt). A resumed run therefore compares those, not where the classifier
or the dataset is now (the data is identified by ``dataset_fingerprint``), and rewrites the
recorded locations for the folder's current place. Manifests written before (an absolute ``path``)
still resume.

Texts with no words (empty or only whitespace) are labelled, as zero-word rows (no words, every
class's scores empty), so that row ``i`` of the labels is row ``i`` of the split and ``limit`` keeps
meaning "the first ``limit`` rows"; such a row adds nothing to the student's loss (it has no word to
score). The run logs a warning with their count and a few indices, and another for texts that
appear more than once with different gold labels (they are labelled, once per row).

One process at a time may write to an output folder.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from tqdm.auto import tqdm

from plex.classifiers.batching import BatchingClassifier, BatchStats, explain_concurrently
from plex.attribution import Attribution
from plex.config import DEFAULT_CLASSIFIER, ConfigError, LabelConfig, check_positive
from plex.data import load_split
from plex.distributed import ONE_PROCESS, Ranks, check_launch, launch, several

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARDS = "shards"
DATASET = "dataset"
EMBEDDINGS = "embeddings"  # the student's cache of word vectors (plex.student.embed)
SHARD_PREFIX = "shard-"
TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"
FORMAT = 1
"""Version of the folder layout, recorded in the manifest."""

FEATURES = datasets.Features(
    {
        "idx": datasets.Value("int64"),
        "text": datasets.Value("string"),
        "words": datasets.List(datasets.Value("string")),
        "spans": datasets.List(datasets.List(datasets.Value("int32"), length=2)),
        "scores": datasets.List(datasets.List(datasets.Value("float32"))),
        "target": datasets.Value("int64"),
        "probs": datasets.List(datasets.Value("float32")),
        "label": datasets.Value("int64"),
        "teacher": datasets.Value("string"),
        "teacher_config": datasets.Value("string"),
        "seconds": datasets.Value("float64"),
        "visible_words": datasets.Value("int64"),
    }
)
"""Schema of a labelled row.

``idx`` is the row's index in the split, ``scores`` is ``[n_labels][n_words]`` (every class),
``target`` the predicted class, ``label`` the gold class (``-1`` when unknown), ``seconds`` the
teacher's time for the text and ``visible_words`` how many leading words the classifier reads.
"""


class LabelsMismatchError(ValueError):
    """An output folder holds labels made with other settings than the current run's."""


@dataclass
class LabelResult:
    """What a labelling run did.

    Attributes:
        output: the labels folder.
        rows: labelled rows the folder holds after the run.
        added: rows labelled by this run.
        seconds: wall-clock time of the run.
    """

    output: Path
    rows: int
    added: int
    seconds: float


def run_label(
    cfg: LabelConfig,
    classifier=None,
    teacher=None,
    overwrite: bool = False,
    progress: bool = True,
) -> LabelResult | None:
    """Explain rows ``[0, cfg.limit)`` of a dataset split with a teacher and save the labels.

    With ``cfg.devices``, ``cfg.num_nodes`` or ``cfg.processes_per_device`` above 1 the work is spread over
    processes (``processes_per_device`` per device) with Lightning Fabric (``cfg.accelerator``, ``cfg.strategy``: ``ddp`` re-runs the command in each
    process, ``ddp_spawn`` spawns them from this one): shard ``k`` of the rows still to do goes to
    rank ``k mod world size``, each rank writes its shards atomically, and rank 0 consolidates. A row
    is the same whichever rank labels it, so a killed run resumes with any number of processes.

    Args:
        cfg: the labelling settings.
        classifier: a :class:`plex.Classifier`; by default loaded from ``cfg.classifier``, or, when
            that is ``None``, from the classifier recorded in ``cfg.output`` (resuming a run).
            Several processes load it themselves: pass it by ``cfg.classifier`` then.
        teacher: a :class:`plex.teachers.base.Teacher`; by default built from ``cfg.teacher``
            and ``cfg.teacher_args`` (several processes build it themselves).
        overwrite: delete the labels already in ``cfg.output`` first.
        progress: show a progress bar (texts and classifier texts per second; rank 0's share).

    Returns:
        What the run did; ``None`` in the processes other than rank 0 of a run over several devices.

    Raises:
        LabelsMismatchError: ``cfg.output`` holds labels made with other settings.
        plex.data.DataError: the dataset cannot be read as texts and labels.
    """
    _check_config(cfg)
    if several(cfg.devices, cfg.num_nodes, cfg.processes_per_device):
        if classifier is not None or teacher is not None:
            raise ConfigError("with several --devices, --num-nodes or --processes-per-device, every process loads the "
                              "classifier and builds the teacher itself: pass them by name (--classifier, --teacher, "
                              "--teacher-args)")
        return launch(_label_on_rank, cfg, overwrite, progress, accelerator=cfg.accelerator, devices=cfg.devices,
                      num_nodes=cfg.num_nodes, strategy=cfg.strategy, per_device=cfg.processes_per_device)
    return _label(cfg, classifier, teacher, overwrite, progress, ONE_PROCESS)


def _label_on_rank(ranks: Ranks, device: str, cfg: LabelConfig, overwrite: bool, progress: bool
                   ) -> LabelResult | None:
    import dataclasses

    if cfg.device is None:  # one device per rank: cuda:<local rank> on GPUs
        cfg = dataclasses.replace(cfg, device=device)
    return _label(cfg, None, None, overwrite, progress and ranks.rank == 0, ranks)


def _label(cfg: LabelConfig, classifier, teacher, overwrite: bool, progress: bool, ranks: Ranks
           ) -> LabelResult | None:
    start = time.perf_counter()
    first_rank = ranks.rank == 0
    if classifier is None:
        import plex

        location = cfg.classifier
        if location is None:
            resuming = (Path(cfg.output) / MANIFEST).is_file() and not overwrite
            location = recorded_classifier(cfg.output) if resuming else DEFAULT_CLASSIFIER
        classifier = plex.load_classifier(location, device=cfg.device, batch_size=cfg.batch_size)
    if not first_rank:
        ranks.barrier()  # rank 0 reads (and caches) the data first
    split = load_split(cfg.dataset, cfg.split, cfg.text_column, cfg.label_column, labels=classifier.labels)
    if first_rank:
        ranks.barrier()
    if teacher is None:
        from plex.teachers import get_teacher

        teacher = get_teacher(cfg.teacher, **cfg.teacher_args)

    out = Path(cfg.output)
    settings = label_settings(cfg, classifier, teacher, split)
    manifest = _prepare_output(out, settings, overwrite) if first_rank else None
    ranks.barrier()  # the folder is checked and cleaned before anyone reads it
    done = _done_indices(out)
    wanted = len(split) if cfg.limit is None else min(cfg.limit, len(split))
    todo = [i for i in range(wanted) if i not in done]
    base = _next_shard_number(out)
    ranks.barrier()  # every rank has numbered the shards before any is written
    if todo and first_rank:
        _retire(out / DATASET)

    texts, golds = list(split["text"]), list(split["label"])
    if first_rank:
        warn_about_texts(texts[:wanted], golds[:wanted], f"{cfg.dataset} ({cfg.split})")
    config_json = json.dumps(_jsonable(teacher.config()), sort_keys=True)
    shards = [todo[k : k + cfg.shard_size] for k in range(0, len(todo), cfg.shard_size)]
    mine = list(range(ranks.rank, len(shards), ranks.world))  # shard k is labelled by rank k mod world size
    added = 0
    # Perturbation teachers share one batching classifier (and their own models go through its batcher);
    # a gradient teacher runs its own batched passes.
    _set_lm_batch_size(teacher, cfg.lm_batch_size)
    batcher = BatchingClassifier(classifier) if teacher.batches_classifier_calls else None
    concurrency = cfg.concurrency if batcher is not None and teacher.concurrent_texts else 1
    if batcher is not None:
        teacher = teacher.with_batcher(batcher.batcher)

    def explain(i: int):
        return teacher.explain(batcher or classifier, [texts[i]], all_classes=True)[0]

    # The rank's texts, shard after shard, in one stream: the next shard's explanations start while the last
    # ones of this shard finish (the rounds need not drain at a shard's end), and a shard is written while the
    # next one runs.
    items = (i for k in mine for i in shards[k])
    labelling_start = time.perf_counter()
    results = (explain_concurrently(batcher, explain, items, concurrency) if batcher is not None
               else map(explain, items))
    try:
        with _quiet_datasets(), tqdm(total=sum(len(shards[k]) for k in mine), unit="text",
                                     desc="labelling" if ranks.world == 1 else f"labelling (rank 0 of {ranks.world})",
                                     disable=not progress) as bar:
            for k in mine:
                rows = []
                for i in shards[k]:
                    rows.append(_row(i, next(results), golds[i], config_json))
                    bar.update(1)
                    if batcher is not None:
                        seconds = max(time.perf_counter() - labelling_start, 1e-9)
                        bar.set_postfix_str(f"classifier {batcher.stats.unique / seconds:,.0f} texts/s", refresh=False)
                _write_shard(out, base + k, rows)  # while the next shard's explanations run
                added += len(rows)
                if ranks.world == 1:
                    _write_manifest(out, manifest, rows_done=len(done) + added)
    finally:
        if batcher is not None:
            results.close()  # explanations in flight finish, none starts
            batcher.close()
    labelling_seconds = time.perf_counter() - labelling_start
    parts = ranks.gather((added, labelling_seconds, dict(batcher.batcher.stats) if batcher is not None else None))
    ranks.barrier()  # every shard is written
    added = sum(p[0] for p in parts)
    total = len(done) + added
    if first_rank:
        if not (out / DATASET).is_dir():
            with _quiet_datasets():
                _write_dataset(out)
        if added:
            manifest["throughput"] = throughput(added, max(p[1] for p in parts), [p[2] for p in parts],
                                                concurrency, batcher.batch_size if batcher is not None else None,
                                                ranks.world)
        _write_manifest(out, manifest, rows_done=total)
    ranks.barrier()

    seconds = time.perf_counter() - start
    if first_rank and added:
        logger.info("labelled %d texts in %.1f s (%.3f s per text%s); %d rows in %s", added, labelling_seconds,
                    labelling_seconds / added, f" over {ranks.world} processes" if ranks.world > 1 else "",
                    total, out)
    elif first_rank:
        logger.info("nothing to label: the %d requested rows are already in %s (%d rows)", wanted, out, total)
    if not first_rank:  # rank 0 reports for all (with `ddp`, every process returns from the command)
        return None
    return LabelResult(output=out, rows=total, added=added, seconds=seconds)


def throughput(texts: int, seconds: float, model_stats: list[dict[str, BatchStats] | None], concurrency: int,
               batch_size: int | None, processes: int = 1) -> dict[str, Any]:
    """The last run's speed, recorded in the manifest: texts labelled per second and, for a teacher that
    shares a batching classifier, what the classifiers of all processes did together (``classifier``:
    distinct texts run per second, requests, texts asked for, distinct texts, rounds, forward batches and
    their mean size); the teacher's other models that went through the same batcher (LIME-LLM's language
    models and encoder, say) get the same figures under ``models``."""
    out: dict[str, Any] = {"labelled": texts, "seconds": seconds, "processes": processes, "concurrency": concurrency,
                           "texts_per_second": texts / seconds if seconds else None}
    stats = [s for s in model_stats if s is not None]
    names = sorted({name for s in stats for name in s})
    for name in names:
        total = BatchStats.total(s[name] for s in stats if name in s)
        figures = {"texts_per_second": total.unique / seconds if seconds else None, **total.to_dict()}
        if name == "classifier":
            out["classifier"] = {**figures, "batch_size": batch_size}
        else:
            out.setdefault("models", {})[name] = figures
    return out


def load_labels(path: str | os.PathLike) -> datasets.Dataset:
    """The labelled rows of a labels folder, sorted by ``idx``.

    Reads the consolidated ``dataset/`` folder, or the shards when it is missing (a run still in
    progress or interrupted). ``path`` may also be the ``dataset/`` folder itself.
    """
    path = Path(path)
    if (path / "state.json").is_file():
        return datasets.load_from_disk(str(path))
    if (path / DATASET).is_dir():
        return datasets.load_from_disk(str(path / DATASET))
    if not (path / MANIFEST).is_file():
        raise FileNotFoundError(f"{path} holds no labels (no {MANIFEST}); write them with `plex label --output {path}`")
    return _merged_shards(path)


def label_attributions(rows) -> list[Attribution]:
    """The rows of a labels dataset as attributions of the class each row explains (method: its teacher)."""
    return [Attribution(text=r["text"], words=list(r["words"]), spans=[tuple(s) for s in r["spans"]],
                        scores=np.asarray(r["scores"][r["target"]]), target=r["target"], method=r["teacher"])
            for r in rows]


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a labels folder: ``settings`` and informational fields."""
    return json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))


def recorded_classifier(path: str | os.PathLike) -> str:
    """Where the classifier of a labels folder is now: its path relative to the folder, then the
    absolute path it had, then its name (see :func:`plex.classifiers.portable.locate`)."""
    from plex.classifiers.portable import locate

    if not (Path(path) / MANIFEST).is_file():
        raise ConfigError(f"{path} holds no labels yet, so no classifier is recorded there; name the classifier "
                          "to explain (--classifier)")
    recorded = read_manifest(path).get("settings", {}).get("classifier", {})
    return locate(recorded, path, what="the classifier of the labels")


def label_settings(cfg: LabelConfig, classifier, teacher, split: datasets.Dataset) -> dict[str, Any]:
    """Everything that determines the labelled rows; stored in and compared with the manifest.

    The classifier is recorded relative to ``cfg.output`` (see :mod:`plex.classifiers.portable`).
    """
    from plex.classifiers.portable import portable

    return _jsonable({
        "classifier": portable(classifier.identity(), cfg.output),
        "teacher": teacher.config(),
        "dataset": cfg.dataset,
        "split": cfg.split,
        "text_column": cfg.text_column,
        "label_column": cfg.label_column,
        "dataset_fingerprint": dataset_fingerprint(split),
    })


def warn_about_texts(texts: list[str], golds: list[int], where: str, examples: int = 5) -> None:
    """Log a warning for texts with no words (empty or only whitespace) and for texts repeated with
    different gold labels (``-1``, unknown, is no conflict), with counts and a few row indices."""
    from plex.words import segment

    empty = [i for i, text in enumerate(texts) if not segment(text).words]
    if empty:
        logger.warning("%d of %d texts of %s have no words (empty or only whitespace), e.g. rows %s; they are "
                       "labelled as zero-word rows and teach the student nothing: clean the data to drop them",
                       len(empty), len(texts), where, _some(empty, examples))
    rows_of: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        rows_of.setdefault(text, []).append(i)
    conflicts = [rows for rows in rows_of.values()
                 if len(rows) > 1 and len({golds[i] for i in rows if golds[i] >= 0}) > 1]
    if conflicts:
        logger.warning("texts of %s repeated with different gold labels: %d (in %d rows), e.g. rows %s; each row "
                       "is labelled, but the gold labels disagree: check the data", where, len(conflicts),
                       sum(len(rows) for rows in conflicts), "; ".join(_some(rows, 3) for rows in conflicts[:examples]))


def _some(indices: list[int], n: int) -> str:
    shown = ", ".join(str(i) for i in indices[:n])
    return shown + (f" (+{len(indices) - n} more)" if len(indices) > n else "")


def dataset_fingerprint(split: datasets.Dataset) -> str:
    """SHA-256 over a split's texts and gold labels, in order (independent of ``datasets`` caching)."""
    h = hashlib.sha256()
    for text, label in zip(split["text"], split["label"]):
        encoded = text.encode("utf-8")
        h.update(struct.pack("<q", len(encoded)))
        h.update(encoded)
        h.update(struct.pack("<q", int(label)))
    return h.hexdigest()


def _set_lm_batch_size(teacher, size: int | None) -> None:
    """Have the teacher's local language models run ``size`` texts per forward pass (those it has loaded
    already, and those it loads later)."""
    if size is None:
        return
    import dataclasses

    from plex.lm import LocalLM
    from plex.teachers.base import LM_BATCH_SIZE

    resources = getattr(teacher, "resources", None)
    if not isinstance(resources, dict):
        logger.warning("--lm-batch-size has no effect: the %s teacher has no language model of its own", teacher.name)
        return
    resources[LM_BATCH_SIZE] = size  # for the models it loads later; those loaded or given are set here
    for model in [*resources.values(), *(getattr(teacher, f.name) for f in dataclasses.fields(teacher))]:
        if isinstance(model, LocalLM):
            model.batch_size = size


def _check_config(cfg: LabelConfig) -> None:
    if not isinstance(cfg.shard_size, int) or cfg.shard_size < 1:
        raise ConfigError(f"shard_size must be a positive integer, got {cfg.shard_size!r}")
    check_positive("--concurrency", cfg.concurrency, "texts explained at once")
    check_launch(cfg.devices, cfg.num_nodes, cfg.strategy, cfg.processes_per_device)
    if cfg.lm_batch_size is not None:
        check_positive("--lm-batch-size", cfg.lm_batch_size, "texts per language-model forward pass")
    if cfg.limit is not None and (not isinstance(cfg.limit, int) or cfg.limit < 0):
        raise ConfigError(f"limit must be a non-negative integer or null, got {cfg.limit!r}")


def _row(idx: int, attribution: Attribution, gold: int, config_json: str) -> dict[str, Any]:
    meta = attribution.meta
    return {
        "idx": idx,
        "text": attribution.text,
        "words": list(attribution.words),
        "spans": [[start, end] for start, end in attribution.spans],
        "scores": np.asarray(meta["all_scores"], dtype=np.float32).tolist(),
        "target": int(attribution.target),
        "probs": np.asarray(meta["probs"], dtype=np.float32).tolist(),
        "label": int(gold),
        "teacher": attribution.method,
        "teacher_config": config_json,
        "seconds": float(meta["seconds"]),
        "visible_words": int(meta["visible_words"]),
    }


def _is_ours(name: str) -> bool:
    return name in (MANIFEST, SHARDS, DATASET, EMBEDDINGS) or name.startswith((TMP_PREFIX, OLD_PREFIX))


def _prepare_output(out: Path, settings: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """Create, clean or check the output folder; return the manifest to keep writing."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"the output {out} is a file; choose a folder with --output")
    out.mkdir(parents=True, exist_ok=True)
    foreign = sorted(p.name for p in out.iterdir() if not _is_ours(p.name))
    if foreign:
        raise FileExistsError(
            f"the output folder {out} holds files that are not plex labels ({', '.join(foreign[:5])}); "
            "choose another --output"
        )
    if overwrite:
        for entry in out.iterdir():
            _remove(entry)
    for entry in list(out.iterdir()) + list((out / SHARDS).glob(f"{TMP_PREFIX}*")):
        if entry.name.startswith((TMP_PREFIX, OLD_PREFIX)):
            _remove(entry)

    if (out / MANIFEST).is_file():
        manifest = read_manifest(out)
        differences = _differences(_compared(manifest.get("settings", {})), _compared(settings))
        if differences:
            lines = "\n".join(f"  {key}: {old!r} (in the folder) -> {new!r} (now)" for key, old, new in differences)
            raise LabelsMismatchError(
                f"{out} holds labels made with other settings:\n{lines}\n"
                "Choose another --output to keep both, or pass --overwrite to discard the old labels."
            )
        # Same classifier and data: record where they are now, relative to where the folder is now.
        for key in ("classifier", "dataset"):
            manifest.setdefault("settings", {})[key] = settings[key]
        return manifest
    if _shard_dirs(out):
        raise LabelsMismatchError(
            f"{out} holds shards but no {MANIFEST}, so their settings are unknown; pass --overwrite "
            "to discard them or choose another --output"
        )
    manifest = {
        "format": FORMAT,
        "settings": settings,
        "plex_version": _plex_version(),
        "created": _now(),
        "rows_done": 0,
    }
    _write_manifest(out, manifest, rows_done=0)
    return manifest


def _compared(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings a resumed run must match: without the classifier's locations (its weights hash,
    kind, labels and prompt identify it) and, when the data's fingerprint is recorded, without the
    dataset's name or path."""
    from plex.classifiers.portable import without_locations

    out = dict(settings)
    if isinstance(out.get("classifier"), dict):
        out["classifier"] = without_locations(out["classifier"])
    if out.get("dataset_fingerprint") is not None:
        out.pop("dataset", None)
    return out


def _differences(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted keys whose values differ between two settings trees, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for k in sorted(set(old) | set(new)):
            found += _differences(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
        return found
    return [] if old == new else [(key or "settings", old, new)]


def _write_manifest(out: Path, manifest: dict[str, Any], rows_done: int) -> None:
    manifest.update(rows_done=rows_done, updated=_now())
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f"{TMP_PREFIX}manifest-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out / MANIFEST)


def _shard_dirs(out: Path) -> list[Path]:
    shards = out / SHARDS
    if not shards.is_dir():
        return []
    return sorted(p for p in shards.iterdir() if p.is_dir() and p.name.startswith(SHARD_PREFIX))


def _next_shard_number(out: Path) -> int:
    numbers = [int(p.name[len(SHARD_PREFIX):]) for p in _shard_dirs(out) if p.name[len(SHARD_PREFIX):].isdigit()]
    return max(numbers, default=-1) + 1


def _done_indices(out: Path) -> set[int]:
    """Split indices of the rows in complete shards."""
    done: set[int] = set()
    for shard in _shard_dirs(out):
        indices = list(datasets.load_from_disk(str(shard))["idx"])
        repeated = done.intersection(indices)
        if repeated or len(set(indices)) != len(indices):
            raise RuntimeError(
                f"row(s) {sorted(repeated)[:10]} of {shard} are also in another shard; the labels folder "
                "was modified by hand or by two runs at once: pass --overwrite to start again"
            )
        done.update(indices)
    return done


def _write_shard(out: Path, number: int, rows: list[dict[str, Any]]) -> None:
    final = out / SHARDS / f"{SHARD_PREFIX}{number:05d}"
    _save_atomically(datasets.Dataset.from_list(rows, features=FEATURES), final)


def _merged_shards(out: Path) -> datasets.Dataset:
    parts = [datasets.load_from_disk(str(p)) for p in _shard_dirs(out)]
    if not parts:
        return datasets.Dataset.from_dict({name: [] for name in FEATURES}, features=FEATURES)
    merged = datasets.concatenate_datasets(parts)
    order = np.argsort(np.asarray(merged["idx"], dtype=np.int64), kind="stable")
    return merged.select(order) if np.any(order != np.arange(len(order))) else merged


def _write_dataset(out: Path) -> None:
    """(Re)write the consolidated ``dataset/`` folder from the shards."""
    _retire(out / DATASET)
    _save_atomically(_merged_shards(out), out / DATASET)


def _save_atomically(dataset: datasets.Dataset, final: Path) -> None:
    """``save_to_disk`` into a temporary sibling folder, then rename it to ``final``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    dataset.save_to_disk(str(tmp))
    os.rename(tmp, final)


def _retire(path: Path) -> None:
    """Remove a folder by first renaming it out of the way, so it is never seen half-deleted."""
    if path.exists():
        old = path.parent / f"{OLD_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, old)
        _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Hide the ``datasets`` save progress bars while plex shows its own."""
    enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if enabled:
            datasets.enable_progress_bars()


def _jsonable(value: Any) -> Any:
    """A JSON round-trip of ``value`` (tuples become lists, numpy scalars Python numbers)."""
    def convert(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, (set, frozenset)):
            return sorted(obj)
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"cannot record a setting of type {type(obj).__name__} ({obj!r}) in the manifest")

    return json.loads(json.dumps(value, default=convert, sort_keys=True))


def _plex_version() -> str:
    import plex

    return plex.__version__


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")

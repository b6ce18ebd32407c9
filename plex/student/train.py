"""``plex train`` (``train.py``): fit the PLEX student on a labels dataset with Lightning."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from plex.classifiers.base import Classifier
from plex.config import StudentTrainConfig
from plex.student.checkpoint import CheckpointError, load_checkpoint, replaceable, save_checkpoint
from plex.student.data import LabelsDataModule
from plex.student.embed import Embedder, cached_embeddings, cached_token_states
from plex.student.model import BranchScorer, ScorerConfig, SiameseScorer, branch_layer_stack, build_scorer
from plex.student.module import PlexModule

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    checkpoint: Path
    metrics: dict[str, float]
    seconds: float
    scorer: SiameseScorer | BranchScorer


def classifier_for_labels(labels_dir: str | os.PathLike, manifest: dict[str, Any], override: str | Classifier | None,
                          device=None) -> Classifier:
    """The classifier the labels in ``labels_dir`` were made with; refuses one whose weights differ.

    ``override`` (``--classifier``) comes first; otherwise the manifest's record is resolved against
    the labels folder where it is now (see :func:`plex.classifiers.portable.locate`).
    """
    from plex.classifiers import load_classifier
    from plex.classifiers.portable import locate

    recorded = manifest["settings"]["classifier"]
    if isinstance(override, Classifier):
        classifier = override
    else:
        location = override or locate(recorded, labels_dir, what="the classifier of the labels")
        classifier = load_classifier(location, device=device)
    check_same_classifier(recorded, classifier.identity(), what="the labels")
    return classifier


def check_same_classifier(recorded: dict[str, Any], current: dict[str, Any], what: str) -> None:
    old, new = recorded.get("weights_sha256"), current.get("weights_sha256")
    prompt_keys = ("template", "label_words", "examples", "chat")  # a prompt classifier is its prompt too
    if recorded.get("kind") == "prompt" and any(recorded.get(k) != current.get(k) for k in prompt_keys):
        raise CheckpointError(
            f"{what} were made for a prompt classifier with another prompt (template, label words, examples "
            "or chat): load it from the same YAML file or prompt: spec, or relabel and retrain the student"
        )
    if recorded.get("kind") != current.get("kind") or old != new or recorded.get("labels") != current.get("labels"):
        raise CheckpointError(
            f"{what} were made for classifier {recorded.get('path')!r} (weights sha256 {str(old)[:12]}, labels "
            f"{recorded.get('labels')}), but the classifier given is {current.get('path')!r} (sha256 "
            f"{str(new)[:12]}, labels {current.get('labels')}): use the same classifier, or relabel and retrain "
            "the student for this one (plex label, plex train)"
        )


def _logger(cfg: StudentTrainConfig, work: Path):
    if cfg.logger == "csv":
        return L.pytorch.loggers.CSVLogger(work, name="logs")
    if cfg.logger == "wandb":
        try:
            import wandb  # noqa: F401
        except ImportError as err:
            raise ImportError("--logger wandb needs the wandb package: pip install 'plex[wandb]'") from err
        return L.pytorch.loggers.WandbLogger(project=cfg.wandb_project, name=Path(cfg.output).name,
                                             save_dir=str(work), config=asdict(cfg))
    if cfg.logger == "none":
        return False
    raise ValueError(f"logger must be csv, wandb or none, got {cfg.logger!r}")


def check_train_config(cfg: StudentTrainConfig) -> None:
    """Fail before any work on settings that cannot run, naming the flag to change."""
    from plex.student.embed import POOLINGS
    from plex.student.model import MODES

    if not (Path(cfg.labels) / "manifest.json").is_file():
        raise FileNotFoundError(f"{cfg.labels} is not a labels folder (it has no manifest.json); make one with "
                                "`plex label` (distill.py) or point --labels at it")
    if Path(cfg.output).exists() and not replaceable(Path(cfg.output)):
        raise FileExistsError(f"--output {cfg.output} exists and is not a plex checkpoint (training would replace "
                              "it); choose another --output")
    from plex.student.data import DRAW_TARGETS
    from plex.student.model import TARGET_NORMS

    choices = {"mode": MODES, "pooling": POOLINGS, "logger": ("csv", "wandb", "none"), "draw_targets": DRAW_TARGETS,
               "target_norm": TARGET_NORMS}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(cfg, name)!r}")
    if not 0 < cfg.val_fraction < 1:
        raise ValueError(f"--val-fraction must be between 0 and 1, got {cfg.val_fraction}")
    for name in ("batch_size", "max_epochs", "hidden_dim", "proj_dim", "context_heads"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    for folder in cfg.draws:
        if not (Path(folder) / "manifest.json").is_file():
            raise FileNotFoundError(f"--draws {folder} is not a labels folder (it has no manifest.json); label the "
                                    "same texts with another seed: plex label --teacher-args '{seed: 1}' -o FOLDER")
    if cfg.max_texts is not None and cfg.max_texts < 2:
        raise ValueError(f"--max-texts must be at least 2 (one text for validation), got {cfg.max_texts}")
    if cfg.context_layers < 0:
        raise ValueError(f"--context-layers must be 0 (no context head) or more, got {cfg.context_layers}")
    if cfg.branch_layers < -1:
        raise ValueError(f"--branch-layers must be -1 (all layers), 0 (no branch) or a layer count, got "
                         f"{cfg.branch_layers}")
    if cfg.mode == "paper" and cfg.target_norm != "maxabs":
        raise ValueError("--mode paper learns max-abs normalised targets only (its scores are cosines); use "
                         "--target-norm maxabs or --mode conditional")
    if cfg.context_layers and cfg.proj_dim % cfg.context_heads:
        raise ValueError(f"--proj-dim ({cfg.proj_dim}) must be a multiple of --context-heads ({cfg.context_heads})")


def load_draws(cfg: StudentTrainConfig, manifest: dict, rows, scores: list[np.ndarray], classifier: Classifier
               ) -> list[np.ndarray]:
    """The scores of ``rows`` with the draws of ``cfg.draws`` stacked on: ``[1 + n_draws, n_labels, n_words]``.

    Every draw must come from the same teacher (its seed aside) on the same classifier, and hold every
    text of the main labels that training uses (the first ``cfg.max_texts``) with the same explained class.
    """
    from plex.label import load_labels, read_manifest

    if not cfg.draws:
        return scores
    main_teacher = {k: v for k, v in manifest["settings"]["teacher"].items() if k != "seed"}
    stacks = [[s] for s in scores]
    used = len(scores) if cfg.max_texts is None else min(len(scores), cfg.max_texts)
    for folder in cfg.draws:
        other = read_manifest(folder)
        check_same_classifier(other["settings"]["classifier"], classifier.identity(), what=f"the draws in {folder}")
        teacher = {k: v for k, v in other["settings"]["teacher"].items() if k != "seed"}
        if teacher != main_teacher:
            raise ValueError(f"the draws in {folder} come from another teacher or budget ({teacher}) than "
                             f"{cfg.labels} ({main_teacher}); draws must differ only in their seed")
        drawn = load_labels(folder)
        by_text = {t: (s, g) for t, s, g in zip(drawn["text"], drawn["scores"], drawn["target"])}
        for i, (text, target) in enumerate(zip(rows["text"][:used], rows["target"][:used])):
            if text not in by_text:
                raise ValueError(f"text {i} of {cfg.labels} ({text[:50]!r}) is not in the draws in {folder}: label "
                                 "the same texts (the same --dataset, --split and --limit) with another seed")
            s, g = by_text[text]
            if g != target:
                raise ValueError(f"text {i} of {cfg.labels} explains class {target} there and {g} in {folder}; "
                                 "draws must explain the same class")
            stacks[i].append(np.asarray(s, dtype=np.float32).reshape(classifier.num_labels, -1))
    return [np.stack(s) for s in stacks]  # texts past max_texts keep their one draw; training never reads them


def student_embedder(cfg: StudentTrainConfig, classifier: Classifier) -> tuple[Embedder, int]:
    """The embedder whose vectors feed the student, and the number of branch layers (0: none).

    A branch of K layers is fed by the frozen trunk's layer L - K (L: the encoder's layer count), so
    ``--layer`` does not apply to it.
    """
    if not cfg.branch_layers:
        return Embedder(classifier, encoder=cfg.encoder, layer=cfg.layer, pooling=cfg.pooling), 0
    embedder = Embedder(classifier, encoder=cfg.encoder, layer=-1, pooling=cfg.pooling)
    total = len(branch_layer_stack(embedder.source.model))
    k = total if cfg.branch_layers == -1 else cfg.branch_layers
    if k > total:
        raise ValueError(f"--branch-layers {k}: the classifier's encoder has {total} layers; use at most {total} "
                         "(or -1 for all)")
    if cfg.layer != StudentTrainConfig.layer:
        logger.warning("--layer %d is not used by a branch student: its input is layer %d (the %d layers below the "
                       "%d it copies)", cfg.layer, total - k, total - k, k)
    embedder.layer = total - k
    return embedder, k


def train_student(cfg: StudentTrainConfig, classifier: Classifier | None = None, progress: bool = True) -> TrainResult:
    """Train a :class:`SiameseScorer` on ``cfg.labels`` and save it to ``cfg.output``."""
    from plex.label import load_labels, read_manifest

    check_train_config(cfg)
    start = time.perf_counter()
    L.seed_everything(cfg.seed, workers=True)
    manifest = read_manifest(cfg.labels)
    rows = load_labels(cfg.labels)
    classifier = classifier_for_labels(cfg.labels, manifest, classifier or cfg.classifier)
    embedder, branch = student_embedder(cfg, classifier)
    if branch:
        table = cached_token_states(cfg.labels, rows["text"], embedder, progress=progress)
    else:
        table = cached_embeddings(cfg.labels, rows["text"], embedder, progress=progress)
    scores = [np.asarray(s, dtype=np.float32).reshape(classifier.num_labels, -1) for s in rows["scores"]]
    scores = load_draws(cfg, manifest, rows, scores, classifier)
    data = LabelsDataModule(table, scores, list(rows["target"]), cfg.val_fraction, cfg.batch_size, cfg.seed,
                            limit=cfg.max_texts, draws=cfg.draw_targets)
    scorer = build_scorer(ScorerConfig(input_dim=embedder.dim, num_labels=classifier.num_labels, mode=cfg.mode,
                                       hidden_dim=cfg.hidden_dim, proj_dim=cfg.proj_dim, dropout=cfg.dropout,
                                       context_layers=cfg.context_layers, context_heads=cfg.context_heads,
                                       target_norm=cfg.target_norm, branch_layers=branch,
                                       sentence_pooling=embedder.pooling), embedder.source.model)
    module = PlexModule(scorer, lr=cfg.lr, weight_decay=cfg.weight_decay, rank_weight=cfg.rank_weight,
                        pair_weight=cfg.pair_weight, branch_lr=cfg.branch_lr,
                        importance_weight=cfg.importance_weight, tau=cfg.tau)

    output = Path(cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}-train-", dir=output.parent))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=work / "lightning", monitor="val/spearman", mode="max",
                                                     save_top_k=1, save_weights_only=True)
    stopping = L.pytorch.callbacks.EarlyStopping(monitor="val/spearman", mode="max", patience=cfg.patience)
    run_logger = _logger(cfg, work)
    trainer = L.Trainer(
        max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices, strategy=cfg.strategy,
        precision=cfg.precision, callbacks=[checkpoint, stopping], logger=run_logger,
        enable_progress_bar=progress, fast_dev_run=cfg.fast_dev_run, log_every_n_steps=10,
        enable_model_summary=progress,
    )
    trainer.fit(module, datamodule=data)
    if not cfg.fast_dev_run and checkpoint.best_model_path:
        best = PlexModule.load_from_checkpoint(checkpoint.best_model_path, scorer=scorer, weights_only=True)
        scorer = best.scorer
    metrics = trainer.validate(module if cfg.fast_dev_run else best, datamodule=data, verbose=False)[0]
    metrics = {k: float(v) for k, v in metrics.items()}
    config = {
        "name": output.name,
        "checkpoint": str(output),
        "classifier": classifier.identity(),
        "embedding": embedder.identity(),
        "teacher": manifest["settings"]["teacher"],
        "labels_path": str(cfg.labels),
        "draws": [str(d) for d in cfg.draws],
        "labels_fingerprint": manifest["settings"].get("dataset_fingerprint"),
        "labels_split": manifest["settings"].get("split"),
        "train_texts": len(data.train_indices),
        "val_texts": len(data.val_indices),
        "metrics": metrics,
        "epochs": trainer.current_epoch,
        "training": asdict(cfg),
    }
    if cfg.logger == "wandb":
        run_logger.experiment.log({f"final/{k}": v for k, v in metrics.items()})
        run_logger.experiment.finish()
    save_checkpoint(output, scorer.cpu(), config)
    for name in ("logs", "wandb"):  # CSV metrics, or the wandb run folder (offline runs sync from here)
        if (work / name).exists():
            shutil.copytree(work / name, output / name)
    shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    logger.info("student saved to %s: val/spearman %.3f, val/top3 %.3f (%.0f s)", output,
                metrics.get("val/spearman", float("nan")), metrics.get("val/top3", float("nan")), seconds)
    return TrainResult(output, metrics, seconds, scorer)


__all__ = ["TrainResult", "train_student", "load_checkpoint", "check_same_classifier"]

"""Checkpoints that describe themselves: safetensors weights, config.json and a model card."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from plex.student.model import ScorerConfig, SiameseScorer

FORMAT = "plex-student/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match the classifier it is used with."""


def save_checkpoint(path: str | os.PathLike, scorer: SiameseScorer, config: dict[str, Any]) -> Path:
    """Write weights, config and card to a temporary sibling folder, then move it into place."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    state = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
    save_file(state, work / WEIGHTS, metadata={"format": FORMAT})
    full = {"format": FORMAT, "scorer": scorer.config.to_dict(), **config}
    (work / CONFIG).write_text(json.dumps(full, indent=2, default=str))
    (work / CARD).write_text(model_card(full))
    if path.exists():
        shutil.rmtree(path)
    work.rename(path)
    return path


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[SiameseScorer, dict]:
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} is not a plex checkpoint (it needs {CONFIG} and {WEIGHTS}); "
                              "train one with `plex train`")
    config = json.loads((path / CONFIG).read_text())
    if config.get("format") != FORMAT:
        raise CheckpointError(f"{path / CONFIG} has format {config.get('format')!r}; this plex reads {FORMAT!r}")
    scorer = SiameseScorer(ScorerConfig(**config["scorer"]))
    scorer.load_state_dict(load_file(path / WEIGHTS, device=str(device)))
    return scorer.to(device).eval(), config


def model_card(config: dict[str, Any]) -> str:
    metrics = config.get("metrics", {})
    emb, clf, teacher = config.get("embedding", {}), config.get("classifier", {}), config.get("teacher", {})
    teacher_settings = ", ".join(f"{k}={v}" for k, v in teacher.items() if k != "name")
    lines = [
        f"# {config.get('name', 'plex student')}",
        "",
        "A PLEX student: a Siamese scorer that maps the classifier's contextual word embeddings to word",
        "importances in one forward pass, distilled from a perturbation explainer.",
        "",
        f"- classifier: `{clf.get('path')}` (weights sha256 `{str(clf.get('weights_sha256'))[:16]}…`), "
        f"labels {clf.get('labels')}",
        f"- embeddings: `{emb.get('encoder')}` layer {emb.get('layer')}, sentence pooling `{emb.get('pooling')}`"
        f"{' (the classifier itself)' if emb.get('white_box') else ' (separate encoder)'}",
        f"- mode: `{config['scorer']['mode']}`",
        f"- teacher: {teacher.get('name')} ({teacher_settings})",
        f"- trained on {config.get('train_texts')} texts, validated on {config.get('val_texts')} "
        f"(labels `{config.get('labels_path')}`)",
        f"- validation: Spearman {metrics.get('val/spearman', float('nan')):.3f}, "
        f"top-3 overlap {metrics.get('val/top3', float('nan')):.3f} against the teacher",
        "",
        "```python",
        "import plex",
        f"student = plex.Plex.from_checkpoint({config.get('checkpoint', 'PATH')!r})",
        "attributions = student.explain([\"a gorgeous, witty film\"])",
        "```",
        "",
        "Scores explain the classifier above only; loading refuses a classifier with other weights.",
    ]
    return "\n".join(lines) + "\n"

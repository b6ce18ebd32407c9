"""Checkpoints that describe themselves: safetensors weights, config.json and a model card."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from plex.student.model import BranchScorer, ScorerConfig, SiameseScorer, build_scorer

FORMAT = "plex-student/1"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
FIX = "retrain the student (plex train) or copy the checkpoint folder again"


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not match the classifier it is used with."""


def save_checkpoint(path: str | os.PathLike, scorer: SiameseScorer | BranchScorer, config: dict[str, Any]) -> Path:
    """Write weights, config and card to a temporary sibling folder, then move it into place.

    The classifier (``config["classifier"]``) and the encoder (``config["embedding"]``) are
    recorded portably, relative to ``path`` (see :mod:`plex.classifiers.portable`); pass their
    current ``identity()``. An existing folder at ``path`` is replaced only when it is a plex
    checkpoint.
    """
    from safetensors.torch import save_file

    from plex.classifiers.portable import portable

    path = Path(path)
    if path.exists() and not replaceable(path):
        raise FileExistsError(f"{path} exists and is not a plex checkpoint; choose another folder to save the "
                              "student to (it would be replaced)")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = dict(config)
    for key in ("classifier", "embedding"):
        if key in config:
            config[key] = portable(config[key], path)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
        save_file(state, work / WEIGHTS, metadata={"format": FORMAT})
        full = {"format": FORMAT, "scorer": scorer.config.to_dict(), **config}
        (work / CONFIG).write_text(json.dumps(full, indent=2, default=str))
        (work / CARD).write_text(model_card(full))
        if path.exists():
            shutil.rmtree(path)
        work.rename(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def replaceable(path: Path) -> bool:
    """An empty folder, or one holding a plex checkpoint."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        return json.loads((path / CONFIG).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def checkpoint_folder(dir_or_hub_name: str | os.PathLike) -> Path:
    """A local checkpoint folder: ``dir_or_hub_name`` itself, or a Hugging Face Hub repository
    downloaded (or found in the hub cache) with ``huggingface_hub.snapshot_download``.

    Raises:
        CheckpointError: it is neither a folder nor a hub repository name, or the hub is unreachable
            and the repository is not cached.
    """
    local = Path(dir_or_hub_name).expanduser()
    if local.is_dir():
        return local
    name = os.fspath(dir_or_hub_name)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(name))
    except HFValidationError as err:
        raise CheckpointError(f"{name} is not a folder (nor a Hugging Face Hub repository name); pass the folder "
                              "of a student saved by `plex train` or Plex.save_pretrained") from err
    except HfHubHTTPError as err:  # reached the hub: no such repository, gated, ...
        raise CheckpointError(f"{name} is not a local folder, and the Hugging Face Hub refused it "
                              f"({first_line(err)}); check the repository name, or pass a local checkpoint "
                              "folder") from err
    except (LocalEntryNotFoundError, OSError) as err:
        raise CheckpointError(f"{name} is not a local folder and the Hugging Face Hub is unreachable from here "
                              f"({type(err).__name__}); pass the folder of a student saved by `plex train` or "
                              "Plex.save_pretrained (copy it here first)") from err


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", encoder: torch.nn.Module | None = None
                    ) -> tuple[SiameseScorer | BranchScorer, dict]:
    """The scorer (in eval mode on ``device``) and the config of a checkpoint folder.

    A branch student (``scorer.branch_layers``) is rebuilt around copies of ``encoder``'s layers (the
    Hugging Face model of its classifier, or of its separate encoder), then its own weights are loaded.

    Raises:
        CheckpointError: the folder is not a checkpoint, or its config or weights are unreadable
            or do not fit each other (one line naming the file and the fix).
    """
    config = read_config(path)
    return scorer_from(path, config, read_weights(path, device), encoder).to(device).eval(), config


def read_weights(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint folder's ``model.safetensors`` (read before anything else is loaded,
    so that a damaged file is reported as such)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path} is not a plex checkpoint (it needs {CONFIG} and {WEIGHTS}); "
                              "train one with `plex train`")
    try:
        return load_file(path / WEIGHTS, device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path / WEIGHTS} is not readable safetensors ({first_line(err)}); {FIX}") from err


def scorer_from(path: str | os.PathLike, config: dict[str, Any], state: dict[str, torch.Tensor],
                encoder: torch.nn.Module | None = None) -> SiameseScorer | BranchScorer:
    """The scorer ``config`` describes, with the weights ``state`` (see :func:`load_checkpoint`)."""
    path = Path(path)
    try:
        scorer_config = ScorerConfig(**config["scorer"])
        if scorer_config.branch_layers and encoder is None:
            raise CheckpointError(f"{path} is a branch student (copies of its classifier's top layers): load it with "
                                  "plex.Plex.from_pretrained, which loads the classifier too")
        scorer = build_scorer(scorer_config, encoder)
    except (KeyError, TypeError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{path / CONFIG} has no valid 'scorer' settings ({first_line(err)}); {FIX}") from err
    try:
        scorer.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"the weights in {path / WEIGHTS} do not fit the scorer described in {path / CONFIG} "
                              f"({first_line(err)}); {FIX}") from err
    return scorer


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder, checked to be one of this plex's."""
    path = Path(path)
    if not (path / CONFIG).is_file():
        raise CheckpointError(f"{path} is not a plex checkpoint (it needs {CONFIG} and {WEIGHTS}); "
                              "train one with `plex train`")
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise CheckpointError(f"{path / CONFIG} is not readable JSON ({first_line(err)}); {FIX}") from err
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise CheckpointError(f"{path / CONFIG} has format {found!r}; this plex reads {FORMAT!r}")
    return config


def first_line(err: BaseException) -> str:
    """An error's message shortened to fit a one-line error of plex's own."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = " ".join(lines[:2]) if lines else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def model_card(config: dict[str, Any]) -> str:
    """The checkpoint's ``README.md``: Hugging Face-style YAML metadata, then a human-readable body.

    The front matter (between ``---`` lines) holds ``library_name: plex``, ``base_model`` (the
    classifier's hub or embedded name, or its path relative to the checkpoint), ``tags``, the
    teacher and its settings, and the validation metrics as a ``model-index`` entry.
    """
    import yaml

    metrics = config.get("metrics", {})
    emb, clf, teacher = config.get("embedding", {}), config.get("classifier", {}), config.get("teacher", {})
    teacher_settings = ", ".join(f"{k}={v}" for k, v in teacher.items() if k != "name")
    name = config.get("name", "plex student")
    base_model = clf.get("path") or clf.get("model")
    front = {
        "library_name": "plex",
        "base_model": base_model,
        "tags": ["plex", "explainability", "feature-attribution", "text-classification"],
        "teacher": {"name": teacher.get("name"), "settings": {k: v for k, v in teacher.items() if k != "name"}},
        "model-index": [{
            "name": name,
            "results": [{
                "task": {"type": "feature-attribution", "name": "word attribution (agreement with the teacher)"},
                "dataset": {"type": "plex-labels", "name": str(config.get("labels_path")),
                            "split": f"validation ({config.get('val_texts')} texts)"},
                "metrics": [{"type": "spearman", "name": "val/spearman", "value": _number(metrics.get("val/spearman"))},
                            {"type": "top3", "name": "val/top3", "value": _number(metrics.get("val/top3"))}],
            }],
        }],
    }
    where = "relative to this folder; " if clf.get("path_hint") else ""
    lines = [
        "---",
        yaml.safe_dump(json.loads(json.dumps(front, default=str)), sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}",
        "",
        "A PLEX student: a Siamese scorer that maps the classifier's contextual word embeddings to word",
        "importances in one forward pass, distilled from a perturbation explainer.",
        "",
        f"- classifier: `{clf.get('path')}` ({where}weights sha256 `{str(clf.get('weights_sha256'))[:16]}…`), "
        f"labels {clf.get('labels')}",
        f"- embeddings: `{emb.get('encoder')}` layer {emb.get('layer')}, sentence pooling `{emb.get('pooling')}`"
        f"{' (the classifier itself)' if emb.get('white_box') else ' (separate encoder)'}",
        f"- mode: `{config['scorer']['mode']}`"
        + (f", context head of {config['scorer']['context_layers']} transformer layer(s)"
           if config["scorer"].get("context_layers") else "")
        + (f", a branch: trainable copies of the classifier's top {config['scorer']['branch_layers']} layer(s) over "
           f"its frozen layer {emb.get('layer')}" if config["scorer"].get("branch_layers") else "")
        + f"; targets normalised `{config['scorer'].get('target_norm', 'maxabs')}`",
        f"- teacher: {teacher.get('name')} ({teacher_settings})",
        f"- trained on {config.get('train_texts')} texts, validated on {config.get('val_texts')} "
        f"(labels `{config.get('labels_path')}`)",
        f"- validation: Spearman {_number(metrics.get('val/spearman')):.3f}, "
        f"top-3 overlap {_number(metrics.get('val/top3')):.3f} against the teacher",
        "",
        "```python",
        "import plex",
        f"student = plex.Plex.from_pretrained({config.get('checkpoint', 'PATH')!r})",
        "attributions = student.explain([\"a gorgeous, witty film\"])",
        "```",
        "",
        "The classifier is found through its path relative to this folder, then the absolute path it had",
        "when the student was saved, then its name; pass `classifier=` (or `--classifier`) when it has",
        "moved. Scores explain the classifier above only; loading refuses a classifier with other weights.",
    ]
    return "\n".join(lines) + "\n"


def read_model_card(path: str | os.PathLike) -> dict[str, Any]:
    """The YAML metadata of a checkpoint's model card (``{}`` when it has none)."""
    import yaml

    text = (Path(path) / CARD).read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---\n", 4)
    return yaml.safe_load(text[4:end]) if end >= 0 else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")

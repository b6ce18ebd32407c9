"""Typed configuration: dataclasses are the one source of every default; YAML files sit on top.

``load_config(cls, path, **overrides)`` reads a YAML mapping into the dataclass ``cls``, rejects
unknown keys (naming the ones it knows), and applies command-line overrides that are not ``None``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration file or flag is wrong; the message says which and how to fix it."""


@dataclass
class LabelConfig:
    """Settings of ``plex label`` (``distill.py``): run a teacher over a dataset split."""

    dataset: str = "polarity"
    """Dataset: ``polarity``, a hub name, a CSV/JSONL/parquet/txt file, or a saved dataset folder."""
    split: str = "train"
    """Split to label."""
    text_column: str = "text"
    """Column holding the texts."""
    label_column: str | None = "label"
    """Column holding gold labels (``null`` when there are none)."""
    classifier: str = "checkpoints/classifier-minilm-polarity"
    """Classifier to explain: a folder written by save_pretrained, a hub name, or ``minilm``."""
    teacher: str = "lime"
    """Teacher name: ``lime``, ``shap``, ``lime-llm``, ``ig``, ``occlusion`` or ``gsmile``."""
    teacher_args: dict[str, Any] = field(default_factory=dict)
    """Settings passed to the teacher (e.g. ``num_samples``, ``seed`` for LIME and LIME-LLM; ``max_evals`` for SHAP; ``n_steps`` for IG)."""
    output: str = "labels/polarity-lime"
    """Output folder of the labels dataset."""
    limit: int | None = None
    """Label only the first N texts of the split."""
    shard_size: int = 64
    """Texts per shard; each shard is written atomically and is the unit of resuming."""
    batch_size: int = 64
    """Texts per classifier forward pass."""
    device: str | None = None
    """Device of the classifier (default: GPU when present)."""


@dataclass
class ClassifierTrainConfig:
    """Settings of ``plex classifier train``: fine-tune an encoder into the default black box."""

    encoder: str = "minilm"
    """Encoder to fine-tune: ``minilm``, a hub name or a local folder."""
    dataset: str = "polarity"
    """Training corpus (needs train/validation/test splits or is split by plex)."""
    text_column: str = "text"
    label_column: str = "label"
    output: str = "checkpoints/classifier-minilm-polarity"
    """Folder the fine-tuned classifier is saved to (save_pretrained)."""
    epochs: int = 3
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_length: int = 128
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = "auto"
    precision: str | None = None
    limit_train: int | None = None
    """Use only the first N training texts (for quick runs)."""
    num_layers: int | None = None
    """Keep only the first N transformer layers of the encoder (model-size studies)."""


@dataclass
class StudentTrainConfig:
    """Settings of ``plex train`` (``train.py``): train the PLEX student on a labels dataset."""

    labels: str = "labels/polarity-lime-1000"
    """Labels folder written by ``plex label``."""
    output: str = "checkpoints/plex-minilm-polarity-lime"
    """Checkpoint folder (weights as safetensors, config.json, model card)."""
    mode: str = "conditional"
    """``conditional`` (any class, teacher's scale) or ``paper`` (cosine, predicted class)."""
    classifier: str | None = None
    """Classifier folder or name; default: the one recorded in the labels' manifest."""
    encoder: str | None = None
    """Separate encoder for a classifier that gives no hidden states; default: the classifier itself."""
    layer: int = -3
    """Hidden layer whose states feed the student (-1: the last; -3, the third from the end, agreed best
    with LIME on the polarity demo, chosen on validation Spearman)."""
    pooling: str = "auto"
    """Sentence vector: ``cls``, ``mean`` or ``auto``."""
    hidden_dim: int = 256
    proj_dim: int = 128
    dropout: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.01
    rank_weight: float = 1.0
    """Weight of the ListNet ranking term."""
    importance_weight: float = 2.0
    """Regression weight grows as 1 + importance_weight * |normalised teacher score|."""
    tau: float = 0.1
    """Temperature of the ranking term."""
    batch_size: int = 32
    max_epochs: int = 150
    patience: int = 20
    """Early stopping patience (epochs without a better val/spearman)."""
    val_fraction: float = 0.1
    seed: int = 0
    accelerator: str = "auto"
    devices: str | int = "auto"
    strategy: str = "auto"
    precision: str | None = None
    logger: str = "csv"
    """``csv`` (default), ``wandb`` (works offline with WANDB_MODE=offline) or ``none``."""
    wandb_project: str = "plex"
    fast_dev_run: bool = False


@dataclass
class EvaluateConfig:
    """Settings of ``plex evaluate``: the student against its teachers on the same texts."""

    checkpoint: str = "checkpoints/plex-minilm-polarity-lime500-demo"
    """Student checkpoint folder (its classifier is the one judged)."""
    teachers: str = "lime,shap"
    """Comma-separated teachers; the student's own teacher runs at its labelling budget."""
    reference_samples: int = 5000
    """LIME budget of the high-budget reference explainer (0 to skip it)."""
    data: str = "polarity"
    """Dataset (any source ``plex label`` takes); a ``rationale_spans`` column enables plausibility."""
    split: str = "test"
    text_column: str = "text"
    label_column: str | None = "label"
    rationale_format: str = "plex"
    """``plex`` (a ``rationale_spans`` column), ``hatexplain`` (dataset.json) or ``eraser`` (a split's
    jsonl with docs/ beside it)."""
    n: int = 200
    """Texts to evaluate (the first n of the split)."""
    out: str = "reports/demo"
    """Report folder: metrics.json, report.md and PNG plots."""
    seed: int = 0
    """Seed of the teachers; the noise ceiling reruns each teacher with seed + 1."""
    repeats: int = 2
    """Runs of each seeded teacher (seeds seed, seed + 1, ...): the second gives the noise ceiling,
    all of them the consistency spread."""
    top_k: int = 3
    """k of the top-k sets in stability."""
    stability_edits: bool = True
    """Also explain one-word edits of every text (doubles the teachers' cost)."""
    batch_size: int = 64
    device: str | None = None


@dataclass
class StudyConfig:
    """Settings of ``plex study``: the same evaluation over classifiers of different sizes."""

    encoder: str = "minilm"
    """Encoder whose first N layers are fine-tuned for each size."""
    dataset: str = "polarity"
    """Corpus the classifiers are fine-tuned on."""
    layers: list[int] = field(default_factory=lambda: [2, 4, 6])
    """Transformer layers kept, one classifier per entry."""
    epochs: int = 3
    lime_samples: int = 500
    """LIME budget used to measure comprehensiveness and plausibility."""
    data: str = "../shared/data/rationales/sentiment-rationales.jsonl"
    """Evaluation texts; a ``rationale_spans`` column gives plausibility."""
    split: str = "train"
    n: int = 100
    """Evaluation texts per size."""
    out: str = "reports/study-minilm-sizes"
    checkpoints: str = "checkpoints/study"
    """Folder for the classifiers of each size (reused when present)."""


@dataclass
class PromptClassifierConfig:
    """A causal LM used as a zero-/few-shot classifier (:class:`plex.classifiers.PromptClassifier`)."""

    model: str = "smollm2"
    """Causal LM: ``smollm2``, a folder written by save_pretrained, a .gguf file or a hub name."""
    template: str = 'Movie review: "{text}"\nThe sentiment of this review is'
    """Prompt with one ``{text}`` placeholder; everything else is literal (other braces included).
    The label word is what the model should write next. The default scored best of four templates
    with SmolLM2-135M-Instruct on polarity test sentences (79% on the first 200, raw prompt)."""
    labels: list[str] = field(default_factory=lambda: ["negative", "positive"])
    """Class names, in the order of the probability columns."""
    label_words: list[str] | None = None
    """What the model writes for each label (one per label); default: a space then the label
    (``" negative"``), as after ``Answer:``; with ``chat: true``, the label alone."""
    examples: list = field(default_factory=list)
    """Few-shot examples put before the text, each ``[text, label]`` (or ``{text: ..., label: ...}``);
    with ``chat: true``, each is a user turn answered by an assistant turn."""
    chat: bool = False
    """Wrap the prompt as a user message in the tokenizer's chat template (assistant turn opened)."""
    dtype: str | None = None
    """Weights dtype (``float32``, ``bfloat16``...); default: the checkpoint's."""


def config_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def load_config(cls, path: str | Path | None = None, explicit: dict[str, Any] | None = None, **overrides):
    """Build ``cls`` from an optional YAML file plus keyword overrides (``None`` means unset).

    ``explicit`` holds overrides applied as given, ``None`` included (``--label-column null``).
    """
    values: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, got {type(loaded).__name__}")
        values.update(loaded)
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update(explicit or {})
    known = config_fields(cls)
    unknown = [k for k in values if k not in known]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, known, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        where = f" in {path}" if path else ""
        raise ConfigError(
            f"unknown setting(s) {', '.join(hints)}{where} for {cls.__name__}; known: {', '.join(known)}"
        )
    for k, v in values.items():
        _check_type(cls, known[k], v, path)
    return cls(**values)


def _check_type(cls, f: dataclasses.Field, value: Any, path) -> None:
    hint = typing.get_type_hints(cls)[f.name]
    allowed = flatten_type(hint)
    if value is None and type(None) in allowed:
        return
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return
    is_bool_for_number = isinstance(value, bool) and bool not in allowed
    if not is_bool_for_number and any(a is Any or (isinstance(a, type) and isinstance(value, a)) for a in allowed):
        return
    names = ", ".join(getattr(a, "__name__", str(a)) for a in allowed)
    where = f" in {path}" if path else ""
    raise ConfigError(f"setting {f.name!r}{where} must be of type {names}, got {value!r}")


def flatten_type(hint) -> tuple:
    """The plain types a type hint admits: ``int | None`` -> ``(int, NoneType)``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(a for arg in typing.get_args(hint) for a in flatten_type(arg))
    if origin is not None:
        return (origin,)
    return (hint,)

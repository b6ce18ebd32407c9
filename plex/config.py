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


def check_positive(flag: str, value: Any, why: str = "") -> None:
    """A :class:`ConfigError` unless ``value`` is an integer >= 1 (not a bool); ``why`` says what it counts."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} must be a positive integer{f' ({why})' if why else ''}, got {value!r}")


DEFAULT_CLASSIFIER = "checkpoints/classifier-minilm-polarity"
"""Where ``plex classifier train`` saves the default black box, and where ``plex label`` looks for it."""


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
    classifier: str | None = None
    """Classifier to explain: a folder written by save_pretrained, a hub name, ``prompt:<lm>`` or a
    prompt-classifier YAML file. Default: when resuming, the one recorded in the output folder (found
    even after the folders moved); otherwise checkpoints/classifier-minilm-polarity, where
    ``plex classifier train`` saves the default one."""
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
    concurrency: int = 32
    """Texts explained at once (threads): their classifier calls, and the calls of the teacher's own models
    (LIME-LLM's language models and encoders, gSMILE's embedder), are gathered into shared forward batches,
    each distinct input run once (see plex.batching). 1: one text at a time (still deduplicated). The
    labels do not depend on it (up to the last float bits a transformer's padding moves). More texts in
    flight make larger rounds that pad less (SHAP-500 on 128 texts on a 2-core CPU: 0.87-0.90 of the raw
    forward throughput at 32, 0.91-0.93 at 128, docs/benchmarks.md), at the cost of memory and of a longer
    wait before the first shard is written (a round holds every perturbation of the texts in flight)."""
    lm_batch_size: int | None = None
    """Texts per forward pass of the teacher's own local language models (LIME-LLM's rewrites, next tokens
    and fluency scores; gSMILE's): default the model's own (16 for ``smollm2``). Their calls from all the
    texts in flight are gathered into rounds like the classifier's, so on a GPU raise it with --concurrency."""
    device: str | None = None
    """Device of the classifier (default: GPU when present; with several --devices, each process's own)."""
    devices: int | str = 1
    """Processes labelling at once, one per device (Lightning Fabric); each labels its share of the shards."""
    processes_per_device: int = 1
    """Processes sharing each device (``--devices`` times this many per node). One process runs its
    explanations' own Python (lime and shap build every perturbation in Python) one at a time, so once the
    forward pass is fast (a GPU), that work, not the device, limits it: LIME-5000's own work runs at
    7–11 texts/s per process on one core of the 2-core CPU of docs/benchmarks.md. Several processes per GPU
    keep it fed; on a CPU, processes share the cores."""
    num_nodes: int = 1
    """Machines taking part (run the same command on each, with Lightning's MASTER_ADDR, MASTER_PORT and
    NODE_RANK set)."""
    accelerator: str = "auto"
    """Lightning accelerator of the processes: ``auto``, ``cpu``, ``gpu``."""
    strategy: str = "ddp"
    """Lightning strategy launching them: ``ddp`` (re-runs the command in each process) or ``ddp_spawn``."""


@dataclass
class ClassifierTrainConfig:
    """Settings of ``plex classifier train``: fine-tune an encoder into the default black box."""

    encoder: str = "minilm"
    """Encoder to fine-tune: ``minilm``, a hub name or a local folder."""
    dataset: str = "polarity"
    """Training corpus (needs train/validation/test splits or is split by plex)."""
    text_column: str = "text"
    """Column holding the texts."""
    label_column: str = "label"
    """Column holding the gold labels."""
    output: str = DEFAULT_CLASSIFIER
    """Folder the fine-tuned classifier is saved to (save_pretrained); ``plex label`` reads it by default."""
    epochs: int = 3
    """Passes over the training texts."""
    batch_size: int = 32
    """Texts per optimisation step."""
    lr: float = 5e-5
    """Peak learning rate of AdamW (linear warm-up, then linear decay)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming the learning rate up."""
    max_length: int = 128
    """Token limit of the texts while training (longer ones are truncated)."""
    seed: int = 0
    """Seed of the initialisation, shuffling and dropout."""
    accelerator: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``, ``mps``."""
    devices: str | int = "auto"
    """Lightning devices: ``auto``, a count, or a list such as ``0,1``."""
    precision: str | None = None
    """Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``); default: Lightning's (32-bit)."""
    limit_train: int | None = None
    """Use only the first N training texts (for quick runs)."""
    num_layers: int | None = None
    """Keep only the first N transformer layers of the encoder (model-size studies)."""


@dataclass
class StudentTrainConfig:
    """Settings of ``plex train`` (``train.py``): train the PLEX student on a labels dataset."""

    labels: str = LabelConfig.output
    """Labels folder written by ``plex label`` (its default output)."""
    output: str = "checkpoints/plex-minilm-polarity-lime"
    """Checkpoint folder (weights as safetensors, config.json, model card)."""
    draws: list[str] = field(default_factory=list)
    """Further labels folders of the same texts by the same teacher with other seeds: several noisy draws
    of the teacher's expected scores per text (see --draw-targets)."""
    draw_targets: str = "resample"
    """With --draws: ``resample`` (each epoch, each text's target is one of its draws, at random) or ``mean``
    (the mean of its draws). Validation compares with the mean either way."""
    max_texts: int | None = None
    """Train (and validate) on the first N labelled texts only; default: all of them."""
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
    """Width of the projector's hidden layer."""
    proj_dim: int = 128
    """Width of the projection the sentence and word vectors are compared in."""
    dropout: float = 0.1
    """Dropout of the projector (and the context head) while training."""
    context_layers: int = 1
    """Transformer layers of a context head over the projected sentence and words (0: none, each word
    scored from its own vector and the sentence's: the frozen head). 1 with --pair-weight 1 was chosen
    by `plex study distill` (configs/distill/lime-cpu.yaml, on selection texts; docs/benchmarks.md)."""
    context_heads: int = 4
    """Attention heads of the context head (--proj-dim must be a multiple)."""
    branch_layers: int = 0
    """A branch student: trainable copies of the classifier's top K layers, fed by its frozen layer L-K in
    the same forward pass (cost about 1 + K/L passes; --layer is then L-K). -1 copies all L layers: a fully
    fine-tuned second encoder (Yang et al. 2023, about 2 passes). 0: none (frozen features of --layer)."""
    branch_lr: float = 1e-4
    """Learning rate of a branch's copied layers (the head learns at --lr)."""
    target_norm: str = "maxabs"
    """How each text's teacher scores are normalised before they are learned: ``maxabs`` (divided by the
    largest |score|), ``zscore`` (centred, divided by their standard deviation) or ``raw`` (as given); a
    scale head (and for zscore a shift head) puts explanations back on the teacher's scale."""
    lr: float = 1e-3
    """Learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    rank_weight: float = 1.0
    """Weight of the ListNet ranking term (0: none)."""
    pair_weight: float = 1.0
    """Weight of a pairwise (RankNet) ranking term over every pair of words (0: none)."""
    importance_weight: float = 2.0
    """Regression weight grows as 1 + importance_weight * |normalised teacher score|."""
    tau: float = 0.1
    """Temperature of the ranking term."""
    batch_size: int = 32
    """Labelled texts per optimisation step."""
    max_epochs: int = 150
    """Upper bound on epochs; early stopping usually ends training sooner."""
    patience: int = 20
    """Early stopping patience (epochs without a better val/spearman)."""
    val_fraction: float = 0.1
    """Fraction of the labelled texts held out for validation (early stopping, best weights)."""
    seed: int = 0
    """Seed of the split, the initialisation and the shuffling."""
    accelerator: str = "auto"
    """Lightning accelerator: ``auto``, ``cpu``, ``gpu``, ``mps``."""
    devices: str | int = "auto"
    """Lightning devices: ``auto``, a count, or a list such as ``0,1``."""
    strategy: str = "auto"
    """Lightning strategy (``auto``, ``ddp``, ...)."""
    precision: str | None = None
    """Lightning precision (``32-true``, ``bf16-mixed``, ``16-mixed``); default: Lightning's (32-bit)."""
    logger: str = "csv"
    """``csv`` (metrics CSV in the checkpoint), ``wandb`` (works offline with WANDB_MODE=offline) or ``none``."""
    wandb_project: str = "plex"
    """wandb project of the run (with ``--logger wandb``)."""
    fast_dev_run: bool = False
    """Run one training and one validation batch only (a smoke test; the checkpoint is still written)."""


@dataclass
class ExplainConfig:
    """Settings of ``plex explain``: explain the texts of a file with a trained student."""

    input: str | None = None
    """Texts to explain: ``.txt`` (one per line), ``.jsonl`` or ``.csv``/``.tsv`` (required)."""
    output: str = "-"
    """JSONL file, one object per text; ``-`` (the default) writes to standard output."""
    html: str | None = None
    """Also write a self-contained HTML heatmap here."""
    checkpoint: str = StudentTrainConfig.output
    """Student checkpoint folder; default: ``plex train``'s output."""
    classifier: str | None = None
    """Classifier the student explains, when it is not where the checkpoint says (a moved folder):
    a folder, a hub name or ``prompt:<lm>``; its weights must be the ones the student was trained for."""
    encoder: str | None = None
    """Separate encoder of a student of a black-box classifier, when it is not where the checkpoint says."""
    target: str | None = None
    """Class to explain, by index or name; default: each text's predicted class."""
    text_column: str = "text"
    """Column or key of the texts in JSONL/CSV input."""
    batch_size: int = 64
    """Texts per forward pass."""
    device: str | None = None
    """``cpu``, ``cuda``, ``cuda:1``, ... (default: GPU when present; with several --devices, each process's own)."""
    devices: int | str = 1
    """Processes explaining at once, one per device (Lightning Fabric, as ``plex label --devices``); the output
    is in input order and the same as one process's."""
    num_nodes: int = 1
    """Machines taking part (Lightning's MASTER_ADDR, MASTER_PORT and NODE_RANK set on each)."""
    accelerator: str = "auto"
    """Lightning accelerator of the processes: ``auto``, ``cpu``, ``gpu``."""
    strategy: str = "ddp"
    """Lightning strategy launching them: ``ddp`` (re-runs the command in each process) or ``ddp_spawn``."""


@dataclass
class ExplainPromptConfig:
    """Settings of ``plex explain-prompt`` besides gSMILE's own (``--num-samples``, ``--model``, ...)."""

    input: str | None = None
    """Also explain the prompts of this file (``.txt``, ``.jsonl`` or ``.csv``)."""
    text_column: str = "text"
    """Column or key of the prompts in JSONL/CSV input."""
    output: str | None = None
    """Write the explanations as JSONL here (``-``: standard output)."""
    html: str | None = None
    """Write an HTML heatmap here (nothing is written unless asked)."""
    concurrency: int = 8
    """Prompts explained at once: their generations and embeddings share the model's forward batches."""


@dataclass
class BenchConfig:
    """Settings of ``plex bench``: speed, measured in one run and reported as ratios."""

    what: str = "all"
    """``student`` (student vs one forward pass over batch sizes), ``teachers``, ``all`` (both), or ``label``
    (labelling throughput: the libraries as documented, plex label, the raw forward pass, 1..N processes)."""
    checkpoint: str = StudentTrainConfig.output
    """Student checkpoint folder; default: ``plex train``'s output."""
    classifier: str | None = None
    """Classifier: with ``student`` and ``all``, the student's when it is not where the checkpoint says;
    with ``teachers``, the one they explain. Default: the student's, or checkpoints/classifier-minilm-polarity
    for ``teachers``."""
    dataset: str = "polarity"
    """Dataset whose texts are timed (any source ``plex label`` takes)."""
    split: str = "test"
    """Split of the timed texts (a single data file is used whole)."""
    n: int = 256
    """Texts for the student and forward-pass timings."""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128])
    """Batch sizes at which the student and the forward pass are timed."""
    teacher_n: int = 10
    """Texts explained by each teacher."""
    lime_samples: list[int] = field(default_factory=lambda: [500, 5000])
    """LIME budgets to time (samples per text)."""
    shap_evals: list[int] = field(default_factory=lambda: [500])
    """SHAP ``max_evals`` to time."""
    teachers: str = ""
    """More teachers to time at their default settings, comma-separated (``lime-llm,ig,occlusion``)."""
    label_teachers: list[str] = field(default_factory=lambda: ["lime:500", "lime:5000", "shap:500", "occlusion"])
    """With ``label``: teacher settings to time (``lime:N``, ``shap:N``, ``occlusion``, ``lime-llm:N``,
    ``gsmile:N``)."""
    label_n: int = 20
    """With ``label``: texts labelled by each teacher setting (the first of the split)."""
    label_repeats: int = 1
    """With ``label``: times (a), (b) and (c) run side by side per teacher; the median is reported with the
    range of the ratios (a shared machine's speed drifts by tens of percent between runs)."""
    label_processes: int = 2
    """With ``label``: scale plex label over 1..N processes (for the first teacher setting)."""
    label_share_device: bool = False
    """With ``label``: the processes of the scaling share one device (``plex label --devices 1
    --processes-per-device N``) instead of taking one device each: the figure for a machine with one GPU."""
    concurrency: int = LabelConfig.concurrency
    """With ``label``: texts plex label explains at once per process."""
    label_batch_size: int = LabelConfig.batch_size
    """With ``label``: texts per classifier forward pass."""
    accelerator: str = "auto"
    """With ``label``: Lightning accelerator of the processes of the scaling runs."""
    device: str | None = None
    """Device of the classifier (default: GPU when present)."""


@dataclass
class DemoConfig:
    """Settings of ``plex demo``: the main job on the embedded default, end to end."""

    output: str = "outputs/demo"
    """Folder of every artefact the demo makes: classifier (unless ``--classifier`` names one),
    labels, student, explanations and summary."""
    classifier: str | None = None
    """Classifier to explain, reused as it is; default: fine-tune MiniLM on polarity into
    ``<output>/classifier`` (once: later runs reuse it)."""
    limit: int = 240
    """Train sentences labelled by LIME (chosen to finish within 25 minutes on a 2-core CPU)."""
    num_samples: int = 500
    """LIME samples per text."""
    held_out: int = 40
    """Test sentences on which the student and LIME are compared."""
    reference_samples: int = 2000
    """LIME budget of the reference the student and its teacher are compared with on the held-out
    sentences (chosen to keep the demo within 25 minutes on a 2-core CPU)."""


@dataclass
class EvaluateConfig:
    """Settings of ``plex evaluate``: the student against its teachers on the same texts."""

    checkpoint: str = StudentTrainConfig.output
    """Student checkpoint folder (its classifier is the one judged); default: ``plex train``'s output."""
    classifier: str | None = None
    """The student's classifier, when it is not where the checkpoint says (a moved folder)."""
    encoder: str | None = None
    """Separate encoder of a student of a black-box classifier, when it is not where the checkpoint says."""
    teachers: str = "lime,shap"
    """Comma-separated teachers; the student's own teacher (added when missing) runs at its labelling budget."""
    reference_samples: int = 5000
    """LIME budget of the high-budget reference every explainer is compared with (0: no reference)."""
    reference_runs: int = 0
    """Instead of LIME at --reference-samples, use the mean of this many runs of the student's own
    teacher at its budget (seeds seed + 1000, ...) as the reference."""
    data: str = "polarity"
    """Dataset (any source ``plex label`` takes); a ``rationale_spans`` column enables plausibility."""
    split: str = "test"
    """Split to evaluate on (a single data file is used whole, whatever the split)."""
    text_column: str = "text"
    """Column holding the texts."""
    label_column: str | None = "label"
    """Column holding gold labels (``null`` when there are none)."""
    rationale_format: str = "plex"
    """``plex`` (a ``rationale_spans`` column), ``hatexplain`` (dataset.json) or ``eraser`` (a split's
    jsonl with docs/ beside it)."""
    n: int = 200
    """Texts to evaluate (the first n of the split)."""
    out: str = "reports/demo"
    """Report folder: metrics.json, report.md and PNG plots."""
    seed: int = 0
    """Seed of the teachers (the reference uses seed + 1000 and up) and of the bootstrap intervals."""
    repeats: int = 2
    """Runs of each random teacher (seeds seed, seed + 1, ...): the second gives its test-retest
    reliability r, all of them the consistency spread."""
    top_k: int = 3
    """k of the top-k sets in stability, and the fixed k of plausibility's token F1 at k."""
    stability_edits: bool = True
    """Also explain one-word edits of every text (doubles the teachers' cost)."""
    batch_size: int = 64
    """Texts per classifier forward pass."""
    device: str | None = None
    """Device of the classifier (default: GPU when present)."""


@dataclass
class DistillStudyConfig:
    """Settings of ``plex study distill``: students of one teacher against its high-budget reference, over
    labelling allocations at equal compute and student variants (see :mod:`plex.evaluate.distill`)."""

    classifier: str = "outputs/demo/classifier"
    """Classifier folder or name (the demo's fine-tuned MiniLM by default)."""
    teacher: str = "lime"
    """Teacher that labels the texts and, at ``reference_samples``, makes the reference."""
    teacher_args: dict = field(default_factory=dict)
    """Further teacher settings, the same for every budget (the budget and the seed are set by the study)."""
    budget_arg: str = "num_samples"
    """The teacher setting that is its budget (``num_samples`` for LIME, ``max_evals`` for SHAP)."""
    dataset: str = "polarity"
    """Corpus whose texts are labelled for training (the first texts of ``split``)."""
    split: str = "train"
    """Split labelled for training; its last ``select_n`` texts are the selection texts."""
    allocations: list[dict] = field(default_factory=lambda: [
        {"texts": 240, "samples": 500}, {"texts": 1200, "samples": 100}, {"texts": 600, "samples": 100, "draws": 2},
        {"texts": 3000, "samples": 40}])
    """Labelling allocations: ``{texts, samples, draws}`` (draws: runs with seeds 0, 1, ... per text)."""
    variants: list[dict] = field(default_factory=lambda: [
        {"name": "frozen", "context_layers": 0, "pair_weight": 0.0}, {"name": "default"}])
    """Student variants: a ``name`` and any ``plex train`` settings (mode, layer, context_layers, lr, ...)."""
    test_data: str = "polarity"
    """Corpus of the test texts (the figures reported)."""
    test_split: str = "test"
    """Split of the test texts."""
    n_test: int = 100
    """Test texts (the first of ``test_split``)."""
    select_n: int = 40
    """Selection texts (the last of ``split``), on which variants are chosen."""
    reference_samples: int = 5000
    """Budget of the reference run of the teacher (seed 1000)."""
    seed: int = 0
    """Seed of the students' training and of the bootstrap."""
    shard_size: int = 64
    """Labelled rows per shard (a killed study loses at most one shard per labels folder)."""
    out: str = "outputs/study-distill"
    """Study folder: labels, held-out runs, students, ``study.md``, ``study.json``, ``agreement.png``."""


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
    """Fine-tuning epochs of each classifier."""
    lime_samples: int = 500
    """LIME budget used to measure comprehensiveness and plausibility."""
    data: str = "../shared/data/rationales/sentiment-rationales.jsonl"
    """Evaluation texts; a ``rationale_spans`` column gives plausibility."""
    split: str = "train"
    """Split of the evaluation texts."""
    n: int = 100
    """Evaluation texts per size."""
    out: str = "reports/study-minilm-sizes"
    """Report folder."""
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
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = " ".join(str(getattr(err, "problem", None) or err).split())
            raise ConfigError(f"{path} is not valid YAML{where} ({problem}); fix the file or pass the "
                              "settings as flags") from None
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

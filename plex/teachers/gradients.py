"""Integrated Gradients as a teacher: path integrals of gradients at the input embedding layer.

Captum's ``LayerIntegratedGradients`` is applied to the classifier's token embedding layer, as in
captum's BERT tutorial: the input ids and a baseline of the same length (every non-special token
replaced by ``[PAD]``, ``[CLS]``/``[SEP]`` kept) are embedded, and the gradients are integrated
along the straight line between the two embeddings. A token's attribution is the sum over the
embedding dimension; a word's is the sum over its subword tokens, found through the tokenizer's
offset mapping (:func:`plex.words.align_tokens`).

IG needs gradients, so it only explains white-box classifiers (:class:`GradientClassifier`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from plex.classifiers.base import Classifier
from plex.teachers.base import Target, Teacher, check_int
from plex.words import Segmentation, align_tokens

logger = logging.getLogger(__name__)

BASELINES = ("pad", "mask", "unk")
OUTPUTS = ("probs", "logits")
# captum's integration rules (captum.attr._utils.approximation_methods).
METHODS = ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle", "riemann_trapezoid")


@runtime_checkable
class GradientClassifier(Protocol):
    """What :class:`IntegratedGradients` needs from a classifier; :class:`plex.HFClassifier` has it.

    Attributes:
        model: a ``torch.nn.Module`` called as ``model(input_ids=..., attention_mask=...,
            [token_type_ids=...])`` whose output has ``.logits`` ``[batch, n_labels]``; with the
            default ``layer`` it also has ``get_input_embeddings()`` (every ``transformers``
            ``PreTrainedModel`` does).
        tokenizer: its fast tokenizer (character offsets and special-token masks).
        device: where the model's parameters are; inputs are moved there.
        max_length: token limit; longer texts are truncated and their tail scores 0.
        labels: class names, in the order of the logits.
    """

    model: torch.nn.Module
    tokenizer: Any
    device: torch.device
    max_length: int

    @property
    def labels(self) -> list[str]: ...


def require_gradients(classifier: Any) -> None:
    """Raise a ValueError saying what to use instead unless ``classifier`` is a white box."""
    if not isinstance(classifier, GradientClassifier) or not isinstance(classifier.model, torch.nn.Module):
        raise ValueError(
            f"IG needs a white-box classifier with gradients, e.g. plex.load_classifier(...); "
            f"{type(classifier).__name__} has no torch model, tokenizer, device and max_length "
            "(see plex.teachers.gradients.GradientClassifier); use lime/shap/occlusion for black boxes"
        )
    if getattr(classifier, "identity", None) and classifier.identity().get("kind") == "prompt":
        raise ValueError(
            "IG here differentiates a sequence classifier's logits; a PromptClassifier reads label-word "
            "likelihoods from a causal LM, which this IG does not support: use gsmile, lime, shap or "
            "occlusion for it"
        )
    if not getattr(classifier.tokenizer, "is_fast", False):
        raise ValueError(
            f"IG maps tokens to words through character offsets, which {type(classifier.tokenizer).__name__} "
            "(a slow tokenizer) does not give: load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )


@dataclass
class IntegratedGradients(Teacher):
    """Layer Integrated Gradients (captum) on the input embeddings of a white-box classifier.

    Attributes:
        n_steps: points on the path from the baseline to the input (captum's default is 50).
        method: captum's integration rule: ``gausslegendre`` (its default) or a ``riemann_*`` rule.
        baseline: the token whose id replaces every non-special token of the input in the
            baseline: ``"pad"``, ``"mask"`` or ``"unk"``. Special tokens ([CLS], [SEP]) are kept.
        output: what is attributed: ``"probs"`` (the softmax, on the same scale as LIME, SHAP and
            occlusion) or ``"logits"``.
        internal_batch_size: interpolated inputs per forward and backward pass (captum's
            ``internal_batch_size``); the steps of all asked targets share these passes.
        multiply_by_inputs: multiply the integrated gradients by ``input - baseline`` (IG proper,
            whose scores add up to ``f(input) - f(baseline)``); ``False`` gives the plain
            integrated gradients.
        layer: dotted path of the module to attribute at, e.g. ``"bert.embeddings"``; by default
            the model's token embeddings (``model.get_input_embeddings()``).

    Deterministic: the same text always gets the same scores, so it has no seed.
    """

    name = "ig"
    deterministic = True
    batches_classifier_calls = False  # runs forward and backward passes of the model itself
    concurrent_texts = False
    surrogate = False
    keeps_samples = False

    n_steps: int = 50
    method: str = "gausslegendre"
    baseline: str = "pad"
    output: str = "probs"
    internal_batch_size: int = 64
    multiply_by_inputs: bool = True
    layer: str | None = None

    def __post_init__(self) -> None:
        self.n_steps = check_int("n_steps", self.n_steps, 1, "captum's default is 50")
        self.internal_batch_size = check_int("internal_batch_size", self.internal_batch_size, 1)
        for setting, value, choices in (("method", self.method, METHODS),
                                        ("baseline", self.baseline, BASELINES),
                                        ("output", self.output, OUTPUTS)):
            if value not in choices:
                raise ValueError(f"{setting} must be one of {', '.join(choices)}, got {value!r}")
        if not isinstance(self.multiply_by_inputs, bool):
            raise ValueError(f"multiply_by_inputs must be true or false, got {self.multiply_by_inputs!r}")
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer.strip()):
            raise ValueError(
                f"layer must be a dotted module path such as 'bert.embeddings' or null for the "
                f"input embeddings, got {self.layer!r}"
            )

    def explain(self, classifier: Classifier, texts: str | Sequence[str], target: Target = None,
                all_classes: bool = False):
        """As :meth:`Teacher.explain`; first checks that ``classifier`` gives gradients."""
        require_gradients(classifier)
        return super().explain(classifier, texts, target=target, all_classes=all_classes)

    def attribute(
        self, classifier: Classifier, seg: Segmentation, targets: list[int]
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """IG of each word for each target, all targets in one captum call.

        Returns:
            scores ``[len(targets), n_words]`` (words past the classifier's ``max_length`` score
            0) and meta with captum's ``convergence_delta`` per target (sum of all token
            attributions minus ``f(input) - f(baseline)``; small when ``n_steps`` suffices) and
            ``n_steps``.
        """
        from captum.attr import LayerIntegratedGradients

        require_gradients(classifier)
        model, tokenizer = classifier.model, classifier.tokenizer
        layer = _resolve_layer(model, self.layer)
        baseline_id = _baseline_id(tokenizer, self.baseline)
        enc = tokenizer(seg.text, truncation=True, max_length=classifier.max_length,
                        return_offsets_mapping=True, return_special_tokens_mask=True,
                        return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].numpy()
        special = enc.pop("special_tokens_mask").bool()
        k = len(targets)
        input_ids = enc["input_ids"].repeat(k, 1).to(classifier.device)
        baselines = torch.where(special, enc["input_ids"], torch.full_like(enc["input_ids"], baseline_id))
        baselines = baselines.repeat(k, 1).to(classifier.device)
        attention_mask = enc["attention_mask"].repeat(k, 1).to(classifier.device)
        token_type_ids = enc.get("token_type_ids")
        if token_type_ids is not None:
            token_type_ids = token_type_ids.repeat(k, 1).to(classifier.device)

        logger.debug("ig: %d words, %d tokens, %d steps, targets %s",
                     len(seg), input_ids.shape[1], self.n_steps, targets)
        with torch.inference_mode(False), torch.enable_grad(), _eval_mode(model):
            lig = LayerIntegratedGradients(_forward(model, self.output), layer,
                                           multiply_by_inputs=self.multiply_by_inputs)
            attributions, delta = lig.attribute(
                inputs=input_ids, baselines=baselines, target=list(targets),
                additional_forward_args=(attention_mask, token_type_ids),
                n_steps=self.n_steps, method=self.method,
                internal_batch_size=self.internal_batch_size, return_convergence_delta=True,
            )
        if attributions.dim() != 3 or attributions.shape[:2] != input_ids.shape:
            raise RuntimeError(
                f"captum returned attributions of shape {tuple(attributions.shape)} for input ids of "
                f"shape {tuple(input_ids.shape)}; layer {self.layer or 'input embeddings'!r} must output "
                "one vector per token ([batch, tokens, hidden])"
            )
        token_scores = attributions.detach().sum(dim=-1).double().cpu().numpy()
        word_ids = align_tokens(offsets, seg.spans)
        in_word = word_ids >= 0
        scores = np.stack([np.bincount(word_ids[in_word], weights=row[in_word], minlength=len(seg))
                           for row in token_scores])
        meta = {"convergence_delta": [float(d) for d in delta.detach().cpu()], "n_steps": self.n_steps}
        return scores, meta


def _forward(model: torch.nn.Module, output: str):
    """The function captum differentiates: token ids to probabilities or logits ``[batch, n_labels]``."""

    def forward(input_ids, attention_mask, token_type_ids):
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        logits = model(**kwargs).logits.float()
        return logits if output == "logits" else torch.softmax(logits, dim=-1)

    return forward


def _resolve_layer(model: torch.nn.Module, path: str | None) -> torch.nn.Module:
    if path is None:
        layer = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        if layer is None:
            raise ValueError(
                f"{type(model).__name__} has no get_input_embeddings(); set the teacher's layer to the "
                "dotted path of its embedding module, e.g. layer='bert.embeddings'"
            )
        return layer
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        top = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"layer {path!r} is not a module of {type(model).__name__} ({err}); give a dotted path "
            f"such as 'bert.embeddings' (its top-level modules: {top})"
        ) from err


def _baseline_id(tokenizer, baseline: str) -> int:
    token_id = getattr(tokenizer, f"{baseline}_token_id", None)
    if token_id is None:
        have = [b for b in BASELINES if getattr(tokenizer, f"{b}_token_id", None) is not None]
        raise ValueError(
            f"the tokenizer has no {baseline} token for the IG baseline; set baseline to one it has "
            f"({', '.join(have) or 'none'})"
        )
    return int(token_id)


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode (no dropout) and give it back in the mode it was in."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)

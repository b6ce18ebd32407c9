"""The PLEX student: a Siamese scorer over contextual word and sentence vectors (plain nn.Module)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("conditional", "paper")
TARGET_NORMS = ("maxabs", "zscore", "raw")
BRANCH_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
"""Encoders whose layers a branch student can copy: a stack ``base_model.encoder.layer`` of layers called as
``layer(hidden, attention_mask)`` with transformers' bidirectional mask."""


@dataclass
class ScorerConfig:
    """Shape of a :class:`SiameseScorer`; saved in every checkpoint's ``config.json``."""

    input_dim: int
    num_labels: int
    mode: str = "conditional"
    hidden_dim: int = 256
    proj_dim: int = 128
    dropout: float = 0.1
    context_layers: int = 0
    context_heads: int = 4
    target_norm: str = "maxabs"
    """How the teacher's scores of a text are normalised before they are learned (see
    :func:`plex.student.module.normalise`); the scale (and shift) heads undo it at inference."""
    branch_layers: int = 0
    """Trainable copies of the classifier's top layers before the head (0: none, the frozen features)."""
    sentence_pooling: str = "cls"
    """Sentence vector of a branch student's output: ``cls``, ``mean`` or ``last``."""

    def to_dict(self) -> dict:
        return asdict(self)


class Projector(nn.Module):
    """The tower shared by the sentence and every word: ``d -> hidden -> proj``."""

    def __init__(self, input_dim: int, hidden_dim: int, proj_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, proj_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SiameseScorer(nn.Module):
    """Word importances from the pair (projected sentence, projected word).

    With ``context_layers > 0`` a small pre-norm transformer runs over the projected sentence vector
    (as the first token) and the projected words before scoring, so that a word's score can depend
    on the other words of the text, not only on its own frozen vector and the sentence's (a context
    head; it adds a few small matrix products to the classifier's one forward pass).

    Modes:
        ``paper``: as in PLEX, ``score = cosine(P(sentence), P(word))``, one score per word for
            the predicted class; scores lie in [-1, 1].
        ``conditional``: the interaction features ``[P(w), P(w) * P(s), |P(w) - P(s)|]`` are read
            out by a vector of the target class, so any class of a multi-class classifier can be
            explained. Scores are learned per-text normalised (``target_norm``: max |score| = 1, or
            z-scored, or raw); heads on ``P(s)`` predict the teacher's per-text scale (and, for
            z-scores, its mean), so :meth:`explain_scores` returns signed scores on the teacher's scale.
    """

    def __init__(self, config: ScorerConfig) -> None:
        super().__init__()
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
        if config.input_dim < 1 or config.num_labels < 1:
            raise ValueError("input_dim and num_labels must be positive")
        if config.target_norm not in TARGET_NORMS:
            raise ValueError(f"target_norm must be one of {', '.join(TARGET_NORMS)}, got {config.target_norm!r}")
        if config.mode == "paper" and config.target_norm != "maxabs":
            raise ValueError("paper mode scores cosines in [-1, 1]: it learns max-abs normalised targets only; "
                             "use --target-norm maxabs, or --mode conditional")
        if config.context_layers < 0:
            raise ValueError(f"context_layers must be 0 (no context head) or more, got {config.context_layers}")
        if config.context_layers and (config.context_heads < 1 or config.proj_dim % config.context_heads):
            raise ValueError(f"proj_dim ({config.proj_dim}) must be a multiple of context_heads "
                             f"({config.context_heads}); change --proj-dim or --context-heads")
        self.config = config
        p = config.proj_dim
        self.projector = Projector(config.input_dim, config.hidden_dim, p, config.dropout)
        self.context: nn.TransformerEncoder | None = None
        if config.context_layers:
            layer = nn.TransformerEncoderLayer(p, config.context_heads, dim_feedforward=2 * p, dropout=config.dropout,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.context = nn.TransformerEncoder(layer, config.context_layers, enable_nested_tensor=False)
        if config.mode == "conditional":
            self.class_readout = nn.Embedding(config.num_labels, 3 * p)
            self.class_bias = nn.Embedding(config.num_labels, 1)
            self.scale_head = nn.Linear(p, config.num_labels)
            nn.init.normal_(self.class_readout.weight, std=(3 * p) ** -0.5)
            nn.init.zeros_(self.class_bias.weight)
            if config.target_norm == "zscore":  # the teacher's per-text mean, in units of its spread
                self.shift_head = nn.Linear(p, config.num_labels)

    def forward(self, sentence: torch.Tensor, words: torch.Tensor, classes: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised scores, the predicted log-scale and the predicted shift.

        Args:
            sentence: ``[B, d]`` sentence vectors.
            words: ``[B, W, d]`` word vectors (padding is ignored by the caller's mask).
            classes: ``[B, K]`` class indices to score (paper mode scores the same for any class).
            mask: ``[B, W]``, True for real words: the context head attends to these only (without
                it, every position is a word). Scores of other positions are still returned.

        Returns:
            ``scores [B, K, W]`` (normalised as ``config.target_norm`` says), ``log_scale [B, K]``
            (the teacher's per-text scale: max |score| or standard deviation; zeros in paper mode
            and for raw targets) and ``shift [B, K]`` (the per-text mean over the standard deviation
            for z-scored targets, else zeros).
        """
        zs = self.projector(sentence)  # [B, p]
        zw = self.projector(words)  # [B, W, p]
        if self.context is not None:
            if mask is None:
                mask = torch.ones(words.shape[:2], dtype=torch.bool, device=words.device)
            padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask.bool()], dim=1)  # the sentence is never padding
            out = self.context(torch.cat([zs[:, None, :], zw], dim=1), src_key_padding_mask=padding)
            zs, zw = out[:, 0], out[:, 1:]
        B, K = classes.shape
        if self.config.mode == "paper":
            cos = F.cosine_similarity(zw, zs[:, None, :], dim=-1)  # [B, W]
            zeros = torch.zeros(B, K, device=cos.device, dtype=cos.dtype)
            return cos[:, None, :].expand(B, K, -1), zeros, zeros
        features = torch.cat([zw, zw * zs[:, None, :], (zw - zs[:, None, :]).abs()], dim=-1)  # [B, W, 3p]
        readout = self.class_readout(classes)  # [B, K, 3p]
        scores = torch.einsum("bwf,bkf->bkw", features, readout) + self.class_bias(classes)  # [B, K, W]
        log_scale = torch.gather(self.scale_head(zs), 1, classes)  # [B, K]
        shift = (torch.gather(self.shift_head(zs), 1, classes) if self.config.target_norm == "zscore"
                 else torch.zeros_like(log_scale))
        if self.config.target_norm == "raw":
            log_scale = torch.zeros_like(log_scale)
        return scores, log_scale, shift

    def score_batch(self, batch: dict, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`forward` on a training batch (see :mod:`plex.student.data`)."""
        return self(batch["sentence"], batch["words"], classes, batch["mask"])

    def explain_scores(self, sentence: torch.Tensor, words: torch.Tensor, classes: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores on the teacher's scale (conditional) or cosines (paper): ``[B, K, W]``."""
        return denormalise(*self(sentence, words, classes, mask))


def explain_batch(scorer: SiameseScorer | BranchScorer, batch: dict, classes: torch.Tensor) -> torch.Tensor:
    """Scores on the teacher's scale for a padded batch (:func:`plex.student.data.collate`): ``[B, K, W]``."""
    return denormalise(*scorer.score_batch(batch, classes))


def denormalise(scores: torch.Tensor, log_scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Back from normalised scores to the teacher's scale: ``(scores + shift) * exp(log_scale)``."""
    return (scores + shift[..., None]) * log_scale.exp()[..., None]


class BranchScorer(nn.Module):
    """A branch student: a trainable copy of the classifier's top ``k`` layers, then the word head.

    The classifier's own forward pass (which gives the prediction) also gives the frozen trunk's
    token states at layer ``L - k``; the branch runs its copies of layers ``L - k + 1 .. L`` over
    them, mean-pools the result per word (and takes the sentence vector as ``sentence_pooling``
    says), and a :class:`SiameseScorer` turns the vectors into scores. Before training, the branch
    reproduces the classifier's last hidden layer exactly. Cost: about ``1 + k / L`` forward passes;
    ``k = L`` (all layers, the trunk being only the embeddings) is a fully fine-tuned second encoder,
    the amortized explainer of Yang et al. (2023), at about two passes.

    Args:
        config: the head's shape, with ``branch_layers = k`` and ``sentence_pooling``.
        encoder: the Hugging Face model whose layers are copied (the classifier's, or the separate
            encoder of a black-box classifier); only its top ``k`` layers and its config are kept.
    """

    def __init__(self, config: ScorerConfig, encoder: nn.Module) -> None:
        super().__init__()
        stack = branch_layer_stack(encoder)
        k = config.branch_layers
        if not 1 <= k <= len(stack):
            raise ValueError(f"branch_layers must be between 1 and the encoder's {len(stack)} layers, got {k}")
        if config.sentence_pooling not in ("cls", "mean", "last"):
            raise ValueError(f"sentence_pooling must be cls, mean or last, got {config.sentence_pooling!r}")
        self.config = config
        self.encoder_config = encoder.config
        self.layers = nn.ModuleList(copy.deepcopy(layer) for layer in stack[len(stack) - k :])
        for param in self.layers.parameters():
            param.requires_grad_(True)
        self.layers.train()  # the classifier's own layers are in eval mode; the copies start as any new module
        self.head = SiameseScorer(config)

    def encode(self, tokens: torch.Tensor, token_mask: torch.Tensor, word_ids: torch.Tensor, n_words: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentence ``[B, d]`` and word ``[B, n_words, d]`` vectors from trunk token states ``[B, T, d]``."""
        from transformers.masking_utils import create_bidirectional_mask

        hidden = tokens
        attention = create_bidirectional_mask(config=self.encoder_config, inputs_embeds=hidden,
                                              attention_mask=token_mask.long())
        for layer in self.layers:
            hidden = layer(hidden, attention)
            if isinstance(hidden, tuple):  # older layers return (hidden, ...)
                hidden = hidden[0]
        member = (word_ids[:, None, :] == torch.arange(n_words, device=word_ids.device)[None, :, None]).to(hidden.dtype)
        words = member @ hidden / member.sum(-1, keepdim=True).clamp_min(1.0)  # [B, W, d]
        pooling = self.config.sentence_pooling
        if pooling == "cls":
            sentence = hidden[:, 0]
        elif pooling == "last":
            last = token_mask.long().sum(1) - 1
            sentence = hidden[torch.arange(len(hidden), device=hidden.device), last]
        else:
            in_word = (word_ids >= 0).to(hidden.dtype)[..., None]
            sentence = (hidden * in_word).sum(1) / in_word.sum(1).clamp_min(1.0)
        return sentence, words

    def forward(self, tokens: torch.Tensor, token_mask: torch.Tensor, word_ids: torch.Tensor, classes: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As :meth:`SiameseScorer.forward`, from the trunk's token states (``mask`` marks real, visible words)."""
        sentence, words = self.encode(tokens, token_mask, word_ids, mask.shape[1])
        return self.head(sentence, words, classes, mask)

    def score_batch(self, batch: dict, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self(batch["tokens"], batch["token_mask"], batch["word_ids"], classes, batch["mask"])


def branch_layer_stack(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers, or a ValueError naming what works instead."""
    config = getattr(encoder, "config", None)
    kind = getattr(config, "model_type", type(encoder).__name__)
    stack = getattr(getattr(getattr(encoder, "base_model", None), "encoder", None), "layer", None)
    if kind not in BRANCH_MODEL_TYPES or not isinstance(stack, nn.ModuleList):
        raise ValueError(f"a branch student copies encoder layers of {', '.join(BRANCH_MODEL_TYPES)} models; this "
                         f"classifier is a {kind!r} model: use a context head instead (--branch-layers 0 "
                         "--context-layers 1)")
    return stack


def build_scorer(config: ScorerConfig, encoder: nn.Module | None = None) -> SiameseScorer | BranchScorer:
    """The student a config describes: a :class:`BranchScorer` over ``encoder``'s layers when
    ``config.branch_layers`` is set, else a :class:`SiameseScorer`."""
    if config.branch_layers:
        if encoder is None:
            raise ValueError("a branch student is built from the classifier's (or encoder's) model: pass encoder=")
        return BranchScorer(config, encoder)
    return SiameseScorer(config)

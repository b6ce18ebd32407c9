"""The PLEX student: a Siamese scorer over contextual word and sentence vectors (plain nn.Module)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODES = ("conditional", "paper")


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
            explained. Scores are per-text normalised (max |score| = 1); a head on ``P(s)`` predicts
            the teacher's per-text scale, so :meth:`explain_scores` returns signed scores on the
            teacher's scale.
    """

    def __init__(self, config: ScorerConfig) -> None:
        super().__init__()
        if config.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {config.mode!r}")
        if config.input_dim < 1 or config.num_labels < 1:
            raise ValueError("input_dim and num_labels must be positive")
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

    def forward(self, sentence: torch.Tensor, words: torch.Tensor, classes: torch.Tensor,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised scores and the predicted log-scale.

        Args:
            sentence: ``[B, d]`` sentence vectors.
            words: ``[B, W, d]`` word vectors (padding is ignored by the caller's mask).
            classes: ``[B, K]`` class indices to score (paper mode scores the same for any class).
            mask: ``[B, W]``, True for real words: the context head attends to these only (without
                it, every position is a word). Scores of other positions are still returned.

        Returns:
            ``scores [B, K, W]`` and ``log_scale [B, K]`` (zeros in paper mode).
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
            return cos[:, None, :].expand(B, K, -1), torch.zeros(B, K, device=cos.device, dtype=cos.dtype)
        features = torch.cat([zw, zw * zs[:, None, :], (zw - zs[:, None, :]).abs()], dim=-1)  # [B, W, 3p]
        readout = self.class_readout(classes)  # [B, K, 3p]
        scores = torch.einsum("bwf,bkf->bkw", features, readout) + self.class_bias(classes)  # [B, K, W]
        log_scale = torch.gather(self.scale_head(zs), 1, classes)  # [B, K]
        return scores, log_scale

    def explain_scores(self, sentence: torch.Tensor, words: torch.Tensor, classes: torch.Tensor,
                       mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores on the teacher's scale (conditional) or cosines (paper): ``[B, K, W]``."""
        scores, log_scale = self(sentence, words, classes, mask)
        return scores * log_scale.exp()[..., None]

"""The LightningModule around the scorer: the loss, the metrics and the optimizer."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from plex.student.model import BranchScorer, SiameseScorer

EPS = 1e-8


def normalise(scores: torch.Tensor, mask: torch.Tensor, how: str = "maxabs"
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise each text's (and class's) scores over its real words.

    ``maxabs``: divided by their max |score| (in [-1, 1], signs kept); ``zscore``: minus their mean,
    over their standard deviation (every text weighs the same in the loss whatever its spread);
    ``raw``: as the teacher gave them.

    Args:
        scores: ``[B, K, W]``; mask: ``[B, W]``; how: ``maxabs``, ``zscore`` or ``raw``.

    Returns:
        normalised scores (0 on padding), the per-text scale ``[B, K]`` and the per-text shift
        ``[B, K]``, so that ``scores = (normalised + shift / scale) * scale`` on real words
        (scale 1 and shift 0 for ``raw``, shift 0 for ``maxabs``).
    """
    m = mask[:, None, :].to(scores.dtype)
    if how == "maxabs":
        scale = (scores.abs() * m).amax(dim=-1)
        return scores / scale.clamp_min(EPS)[..., None] * m, scale, torch.zeros_like(scale)
    if how == "zscore":
        n = m.sum(dim=-1).clamp_min(1.0)
        shift = (scores * m).sum(dim=-1) / n
        scale = ((((scores - shift[..., None]) * m) ** 2).sum(dim=-1) / n).sqrt()
        return (scores - shift[..., None]) / scale.clamp_min(EPS)[..., None] * m, scale, shift
    if how == "raw":
        ones = torch.ones(scores.shape[:2], dtype=scores.dtype, device=scores.device)
        return scores * m, ones, torch.zeros_like(ones)
    raise ValueError(f"target normalisation must be maxabs, zscore or raw, got {how!r}")


def listnet(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Listwise ranking loss: cross-entropy between top-one distributions of target and prediction."""
    m = mask[:, None, :].expand_as(pred)
    neg = torch.finfo(pred.dtype).min
    p_target = torch.softmax(target.masked_fill(~m, neg) / tau, dim=-1)
    log_p_pred = torch.log_softmax(pred.masked_fill(~m, neg) / tau, dim=-1)
    per_list = -(p_target * log_p_pred.masked_fill(~m, 0.0)).sum(dim=-1)
    has_words = mask.any(dim=-1)[:, None].expand_as(per_list)
    return per_list[has_words].mean()


def pairwise(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """Pairwise ranking loss (RankNet): for every pair of real words whose target scores differ, the
    logistic loss of the predicted difference having the target's sign, weighted by the target gap."""
    m = mask[:, None, :].expand_as(pred)
    dt = target[..., :, None] - target[..., None, :]  # [B, K, W, W]
    dp = pred[..., :, None] - pred[..., None, :]
    pair = m[..., :, None] & m[..., None, :] & (dt > 0)  # each unordered pair once, ties left out
    if not pair.any():
        return pred.sum() * 0.0
    weight = dt[pair]
    return (weight * F.softplus(-dp[pair] / tau)).sum() / weight.sum()


def rank_metrics(pred: np.ndarray, target: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Spearman correlation and top-k overlap (|top-k(pred) ∩ top-k(target)| / k) for one text."""
    n = len(target)
    if n < 2 or np.all(target == target[0]) or np.all(pred == pred[0]):
        rho = float("nan")
    else:
        rho = float(spearmanr(pred, target).statistic)
    kk = min(k, n)
    top = len(set(np.argsort(-pred, kind="stable")[:kk]) & set(np.argsort(-target, kind="stable")[:kk])) / kk if kk else float("nan")
    return rho, top


class PlexModule(L.LightningModule):
    """Trains a :class:`SiameseScorer` on teacher scores normalised per text.

    Loss = importance-weighted MSE + ``rank_weight`` x ListNet + ``pair_weight`` x pairwise RankNet
    (+ MSE of the log-scale head, and of the shift head for z-scored targets, in conditional mode).
    Conditional mode learns every class of the labels; paper mode only the predicted one. A branch
    student's copied layers learn at ``branch_lr`` (they start from the classifier's weights), the
    head at ``lr``.
    """

    def __init__(self, scorer: SiameseScorer | BranchScorer, lr: float = 1e-3, weight_decay: float = 0.01,
                 rank_weight: float = 1.0, importance_weight: float = 2.0, tau: float = 0.1,
                 scale_weight: float = 0.1, pair_weight: float = 0.0, branch_lr: float = 1e-4) -> None:
        super().__init__()
        self.scorer = scorer
        self.save_hyperparameters(ignore=["scorer"])
        self._val: list[tuple[float, float]] = []

    def _classes(self, batch: dict) -> torch.Tensor:
        B, K = batch["scores"].shape[:2]
        if self.scorer.config.mode == "paper":
            return batch["target"][:, None]
        return torch.arange(K, device=batch["scores"].device).expand(B, K)

    def model_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        classes = self._classes(batch)
        teacher = torch.gather(batch["scores"], 1, classes[..., None].expand(-1, -1, batch["scores"].shape[-1]))
        how = self.scorer.config.target_norm
        target, scale, shift = normalise(teacher, batch["mask"], how)
        pred, log_scale, pred_shift = self.scorer.score_batch(batch, classes)
        m = batch["mask"][:, None, :].expand_as(pred).float()
        weight = (1.0 + self.hparams.importance_weight * target.abs()) * m
        mse = (weight * (pred - target) ** 2).sum() / weight.sum().clamp_min(EPS)
        loss = mse + self.hparams.rank_weight * listnet(pred, target, batch["mask"], self.hparams.tau)
        if self.hparams.pair_weight:
            loss = loss + self.hparams.pair_weight * pairwise(pred, target, batch["mask"], self.hparams.tau)
        if self.scorer.config.mode == "conditional" and how != "raw":
            valid = scale > EPS
            if valid.any():
                loss = loss + self.hparams.scale_weight * F.mse_loss(log_scale[valid], scale[valid].log())
                if how == "zscore":
                    loss = loss + self.hparams.scale_weight * F.mse_loss(pred_shift[valid],
                                                                         shift[valid] / scale[valid])
        return loss, pred, target, classes

    def training_step(self, batch, batch_idx):
        loss = self.model_step(batch)[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["target"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, pred, target, classes = self.model_step(batch)
        self.log("val/loss", loss, batch_size=len(batch["target"]))
        # metrics on the explained (predicted) class, the one a user sees
        row = (classes == batch["target"][:, None]).float().argmax(dim=1)
        for b in range(len(row)):
            mask = batch["mask"][b].cpu().numpy()
            p = pred[b, row[b]].float().cpu().numpy()[mask]
            t = target[b, row[b]].float().cpu().numpy()[mask]
            self._val.append(rank_metrics(p, t))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        rho, top = np.array(self._val, dtype=np.float64).T
        self.log("val/spearman", float(np.nanmean(rho)) if np.isfinite(rho).any() else 0.0, prog_bar=True)
        self.log("val/top3", float(np.nanmean(top)), prog_bar=True)
        self._val.clear()

    def configure_optimizers(self):
        groups = [{"params": list(self.scorer.head.parameters() if isinstance(self.scorer, BranchScorer)
                                  else self.scorer.parameters())}]
        if isinstance(self.scorer, BranchScorer):
            groups.append({"params": list(self.scorer.layers.parameters()), "lr": self.hparams.branch_lr})
        return torch.optim.AdamW(groups, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

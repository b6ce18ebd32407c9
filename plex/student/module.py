"""The LightningModule around the scorer: the loss, the metrics and the optimizer."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from plex.student.model import SiameseScorer

EPS = 1e-8


def normalise(scores: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each text's (and class's) scores by their max |score| over real words.

    Args:
        scores: ``[B, K, W]``; mask: ``[B, W]``.

    Returns:
        normalised scores in [-1, 1] and the per-text scale ``[B, K]``.
    """
    m = mask[:, None, :]
    scale = (scores.abs() * m).amax(dim=-1)
    return scores / scale.clamp_min(EPS)[..., None] * m, scale


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
    (+ MSE of the log-scale head in conditional mode). Conditional mode learns every class of the labels; paper mode only the
    predicted one.
    """

    def __init__(self, scorer: SiameseScorer, lr: float = 1e-3, weight_decay: float = 0.01,
                 rank_weight: float = 1.0, importance_weight: float = 2.0, tau: float = 0.1,
                 scale_weight: float = 0.1, pair_weight: float = 0.0) -> None:
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
        target, scale = normalise(teacher, batch["mask"])
        pred, log_scale = self.scorer(batch["sentence"], batch["words"], classes, batch["mask"])
        m = batch["mask"][:, None, :].expand_as(pred).float()
        weight = (1.0 + self.hparams.importance_weight * target.abs()) * m
        mse = (weight * (pred - target) ** 2).sum() / weight.sum().clamp_min(EPS)
        loss = mse + self.hparams.rank_weight * listnet(pred, target, batch["mask"], self.hparams.tau)
        if self.hparams.pair_weight:
            loss = loss + self.hparams.pair_weight * pairwise(pred, target, batch["mask"], self.hparams.tau)
        if self.scorer.config.mode == "conditional":
            valid = scale > EPS
            if valid.any():
                loss = loss + self.hparams.scale_weight * F.mse_loss(log_scale[valid], scale[valid].log())
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
        return torch.optim.AdamW(self.scorer.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

"""The labels dataset as training batches for the student, split by text (never by word)."""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from plex.student.embed import EmbeddingTable, TokenTable


DRAW_TARGETS = ("resample", "mean")


class LabelledTexts(Dataset):
    """One item per text: its word vectors and sentence vector (or, for a branch student, its token
    states and their word ids), teacher scores for every class, target.

    A text's scores are ``[n_labels, n_words]``, or ``[n_draws, n_labels, n_words]`` when the teacher
    labelled it several times with different seeds: ``draws="resample"`` then gives one draw chosen
    at random each time the text is read (a new noisy target every epoch, unbiased for the teacher's
    expectation), ``draws="mean"`` their mean.
    """

    def __init__(self, table: EmbeddingTable | TokenTable, scores: list[np.ndarray], targets: list[int], indices: np.ndarray,
                 draws: str = "mean"):
        if draws not in DRAW_TARGETS:
            raise ValueError(f"draws must be one of {', '.join(DRAW_TARGETS)}, got {draws!r}")
        self.table, self.scores, self.targets, self.indices, self.draws = table, scores, targets, indices, draws

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict:
        i = int(self.indices[k])
        scores = self.scores[i]
        if scores.ndim == 3:
            if self.draws == "resample":
                scores = scores[int(torch.randint(len(scores), ()).item())]
            else:
                scores = scores.mean(axis=0)
        if isinstance(self.table, TokenTable):
            return {**token_item(*self.table.text(i)), "scores": scores, "target": self.targets[i]}
        v = self.table.text(i)
        return {"words": v.words, "visible": v.visible, "sentence": v.sentence,
                "scores": scores, "target": self.targets[i]}


def token_item(hidden: np.ndarray, word_ids: np.ndarray, n_words: int) -> dict[str, np.ndarray]:
    """A branch student's input for one text: its trunk token states, their word ids (-1: no word) and
    which of its ``n_words`` words have a token (were read by the model)."""
    visible = np.zeros(n_words, dtype=bool)
    visible[word_ids[word_ids >= 0]] = True
    return {"tokens": np.asarray(hidden, dtype=np.float32), "word_ids": word_ids, "visible": visible}


def collate(items: list[dict]) -> dict[str, torch.Tensor]:
    """Pad a batch of texts, for training (items of :class:`LabelledTexts`) and for explaining (the
    same items without ``scores`` and ``target``).

    Words are padded to the longest text of the batch; ``mask`` marks real, visible words. Token items
    (a branch student's) are padded to the longest token sequence too: ``tokens``, ``token_mask`` and
    ``word_ids`` (-1 on padding); word items give ``words`` and ``sentence``.
    """
    B = len(items)
    W = max(1, max(len(it["visible"]) for it in items))
    mask = torch.zeros(B, W, dtype=torch.bool)
    for b, it in enumerate(items):
        mask[b, : len(it["visible"])] = torch.from_numpy(it["visible"])
    batch = {"mask": mask}
    if "tokens" in items[0]:
        T = max(len(it["tokens"]) for it in items)
        batch["tokens"] = torch.zeros(B, T, items[0]["tokens"].shape[1])
        batch["token_mask"] = torch.zeros(B, T, dtype=torch.bool)
        batch["word_ids"] = torch.full((B, T), -1, dtype=torch.long)
        for b, it in enumerate(items):
            t = len(it["tokens"])
            batch["tokens"][b, :t] = torch.from_numpy(it["tokens"])
            batch["token_mask"][b, :t] = True
            batch["word_ids"][b, :t] = torch.from_numpy(it["word_ids"].astype(np.int64))
    else:
        batch["words"] = torch.zeros(B, W, items[0]["sentence"].shape[0])
        for b, it in enumerate(items):
            batch["words"][b, : len(it["words"])] = torch.from_numpy(it["words"])
        batch["sentence"] = torch.from_numpy(np.stack([it["sentence"] for it in items]))
    if "scores" in items[0]:
        batch["scores"] = torch.zeros(B, items[0]["scores"].shape[0], W)
        for b, it in enumerate(items):
            batch["scores"][b, :, : it["scores"].shape[1]] = torch.from_numpy(it["scores"])
        batch["target"] = torch.tensor([it["target"] for it in items], dtype=torch.long)
    return batch


class LabelsDataModule(L.LightningDataModule):
    """Train/validation split of a labels dataset by text, with cached word vectors.

    Args:
        table: word vectors of every row (see :func:`plex.student.embed.cached_embeddings`), or
            token states for a branch student (:func:`plex.student.embed.cached_token_states`).
        scores: per row, the teacher's ``[n_labels, n_words]`` scores.
        targets: per row, the explained (predicted) class.
        val_fraction: share of texts held out for validation (at least one text).
        batch_size: texts per batch.
        seed: seed of the split.
        limit: use only the first ``limit`` rows (learning curves on one labels folder).
        draws: with several draws per text (``[n_draws, n_labels, n_words]`` scores), how training
            reads them (see :class:`LabelledTexts`); validation always compares with their mean,
            the least noisy estimate of the teacher's expectation.
    """

    def __init__(self, table: EmbeddingTable | TokenTable, scores: list[np.ndarray], targets: list[int],
                 val_fraction: float = 0.1, batch_size: int = 32, seed: int = 0, limit: int | None = None,
                 draws: str = "resample") -> None:
        super().__init__()
        n = len(table) if limit is None else min(len(table), limit)
        if n < 2:
            raise ValueError(f"training needs at least 2 labelled texts (one for validation), got {n}; "
                             "label more with `plex label --limit N`")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
        order = np.random.default_rng(seed).permutation(n)
        n_val = min(n - 1, max(1, math.ceil(val_fraction * n)))
        self.val_indices, self.train_indices = np.sort(order[:n_val]), np.sort(order[n_val:])
        self.table, self.scores, self.targets = table, scores, targets
        self.batch_size, self.draws = batch_size, draws

    def train_dataloader(self) -> DataLoader:
        return DataLoader(LabelledTexts(self.table, self.scores, self.targets, self.train_indices, self.draws),
                          batch_size=self.batch_size, shuffle=True, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(LabelledTexts(self.table, self.scores, self.targets, self.val_indices),
                          batch_size=self.batch_size, shuffle=False, collate_fn=collate)

"""Fine-tune an encoder into a sequence classifier with Lightning: the default black box.

``train_classifier(ClassifierTrainConfig())`` fine-tunes the packaged MiniLM on the polarity train
split, keeps the epoch with the best validation accuracy (``ModelCheckpoint``), reports validation
and test accuracy, and writes a ``save_pretrained`` folder that :func:`plex.load_classifier` reads.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from plex.assets import resolve_model
from plex.config import ClassifierTrainConfig

logger = logging.getLogger(__name__)


class ClassifierModule(L.LightningModule):
    """Holds a ``transformers`` sequence classifier; owns the step, the metrics and the optimizer."""

    def __init__(self, model, lr: float = 5e-5, weight_decay: float = 0.01, warmup_ratio: float = 0.1):
        super().__init__()
        self.model = model
        # transformers 5 returns models in eval mode from from_pretrained, and Lightning keeps the
        # submodules' mode: switch to train mode so dropout is active while fine-tuning.
        self.model.train()
        self.lr, self.weight_decay, self.warmup_ratio = lr, weight_decay, warmup_ratio

    def model_step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        out = self.model(**batch)
        acc = (out.logits.argmax(dim=-1) == batch["labels"]).float().mean()
        n = batch["labels"].shape[0]
        self.log(f"{stage}/loss", out.loss, prog_bar=stage == "train", batch_size=n)
        self.log(f"{stage}/acc", acc, prog_bar=stage != "train", batch_size=n)
        return out.loss

    def training_step(self, batch, batch_idx):
        return self.model_step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self.model_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self.model_step(batch, "test")

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.lr,
        )
        total = self.trainer.estimated_stepping_batches
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TextClassificationData(L.LightningDataModule):
    """Tokenised train/validation/test splits with dynamic padding."""

    def __init__(self, splits, tokenizer, batch_size: int = 32, max_length: int = 128):
        super().__init__()
        self.splits, self.tokenizer = splits, tokenizer
        self.batch_size, self.max_length = batch_size, max_length

    def setup(self, stage: str | None = None) -> None:
        def tokenize(batch):
            return self.tokenizer(batch["text"], truncation=True, max_length=self.max_length)

        self.encoded = {
            name: ds.map(tokenize, batched=True, remove_columns=["text"]).rename_column("label", "labels")
            for name, ds in self.splits.items()
        }

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        from transformers import DataCollatorWithPadding

        return DataLoader(self.encoded[split], batch_size=self.batch_size, shuffle=shuffle,
                          collate_fn=DataCollatorWithPadding(self.tokenizer))

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("validation", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)


def load_train_val_test(cfg: ClassifierTrainConfig, held_out: float = 0.1) -> dict:
    """The train, validation and test splits; missing ones are carved from train (seeded)."""
    from plex.data import DataError, load_split

    splits = {"train": load_split(cfg.dataset, "train", cfg.text_column, cfg.label_column)}
    for name in ("validation", "test"):
        try:
            splits[name] = load_split(cfg.dataset, name, cfg.text_column, cfg.label_column, whole_file=False)
        except DataError:
            logger.info("%s has no %s split: holding out %.0f%% of train for it", cfg.dataset, name, 100 * held_out)
            parts = splits["train"].train_test_split(test_size=held_out, seed=cfg.seed)
            splits["train"], splits[name] = parts["train"], parts["test"]
    if min(splits["train"]["label"]) < 0:
        raise ValueError(f"{cfg.dataset} has rows without a label; training a classifier needs gold labels "
                         f"in every row (check --label-column, now {cfg.label_column!r})")
    return splits


def train_classifier(cfg: ClassifierTrainConfig, progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``cfg.encoder`` on ``cfg.dataset`` and save it to ``cfg.output``.

    Returns the metrics written to ``<output>/metrics.json`` (validation and test accuracy).
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from plex.data import label_names

    L.seed_everything(cfg.seed, workers=True)
    splits = load_train_val_test(cfg)
    if cfg.limit_train is not None:
        splits["train"] = splits["train"].select(range(min(cfg.limit_train, len(splits["train"]))))
    names = label_names(splits["train"]) or [str(i) for i in range(max(splits["train"]["label"]) + 1)]
    path = resolve_model(cfg.encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    size = {"num_hidden_layers": cfg.num_layers} if cfg.num_layers else {}
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)}, **size,
    )
    data = TextClassificationData(splits, tokenizer, cfg.batch_size, cfg.max_length)
    module = ClassifierModule(model, cfg.lr, cfg.weight_decay, cfg.warmup_ratio)
    output = Path(cfg.output)
    if output.exists() and not (output.is_dir() and (output / "config.json").is_file()):
        what = "a folder that holds no saved model (no config.json)" if output.is_dir() else "not a folder"
        raise FileExistsError(f"--output {output} exists and is {what}; plex replaces only a classifier it saved: "
                              "choose another --output or remove it first")
    output.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}-", dir=output.parent))
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(
        dirpath=work / "lightning", monitor="val/acc", mode="max", save_top_k=1, save_weights_only=True,
    )
    trainer = L.Trainer(
        max_epochs=cfg.epochs, accelerator=cfg.accelerator, devices=cfg.devices, precision=cfg.precision,
        callbacks=[checkpoint], logger=L.pytorch.loggers.CSVLogger(work, name="logs"),
        enable_progress_bar=progress, deterministic=False,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    val = trainer.validate(module, datamodule=data, ckpt_path="best", verbose=False)[0]
    test = trainer.test(module, datamodule=data, ckpt_path="best", verbose=False)[0]
    metrics = {
        "val_accuracy": float(val["val/acc"]),
        "test_accuracy": float(test["test/acc"]),
        "best_epoch_checkpoint": Path(checkpoint.best_model_path).name,
        "train_examples": len(splits["train"]),
        "seconds": round(time.perf_counter() - start, 1),
        "config": asdict(cfg),
    }
    module.model.eval()
    module.model.save_pretrained(work / "model")
    tokenizer.save_pretrained(work / "model")
    (work / "model" / "metrics.json").write_text(json.dumps(metrics, indent=2))
    shutil.copytree(work / "logs", work / "model" / "logs")
    if output.exists():
        shutil.rmtree(output)
    (work / "model").rename(output)
    shutil.rmtree(work, ignore_errors=True)
    logger.info("classifier saved to %s: validation accuracy %.3f, test accuracy %.3f",
                output, metrics["val_accuracy"], metrics["test_accuracy"])
    return metrics

"""``plex.Plex``: explain texts with a trained student at about the cost of one forward pass."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from plex.attribution import Attribution
from plex.classifiers.base import Classifier, as_text_list
from plex.classifiers.hf import default_device
from plex.student.checkpoint import load_checkpoint
from plex.student.embed import Embedder
from plex.student.model import SiameseScorer
from plex.teachers.base import resolve_targets
from plex.words import segment


class Plex:
    """A trained PLEX student bound to its classifier.

    Build it with :meth:`from_checkpoint`; :meth:`explain` returns the same
    :class:`~plex.Attribution` objects as the teachers, over the same words.
    """

    method = "plex"

    def __init__(self, scorer: SiameseScorer, embedder: Embedder, config: dict) -> None:
        self.scorer, self.embedder, self.config = scorer, embedder, config
        self.device = next(scorer.parameters()).device

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, classifier: Classifier | str | None = None,
                        encoder: str | None = None, device: str | torch.device | None = None,
                        batch_size: int = 64) -> Plex:
        """Load a student and the classifier it explains (by default the one in its config.json).

        Raises :class:`~plex.student.checkpoint.CheckpointError` when the classifier's weights or
        labels differ from the ones the student was trained for.
        """
        from plex.classifiers import load_classifier
        from plex.student.train import check_same_classifier

        device = torch.device(device) if device is not None else default_device()
        scorer, config = load_checkpoint(path, device=device)
        recorded = config["classifier"]
        if classifier is None or isinstance(classifier, (str, os.PathLike)):
            if classifier is None and recorded.get("kind") == "callable":
                from plex.student.checkpoint import CheckpointError

                raise CheckpointError(f"{path} explains a callable classifier ({recorded.get('path')!r}); "
                                      "pass it: Plex.from_checkpoint(path, classifier=plex.CallableClassifier(...))")
            classifier = load_classifier(classifier or recorded["path"], device=device, batch_size=batch_size)
        check_same_classifier(recorded, classifier.identity(), what=f"the student {Path(path).name}")
        emb = config["embedding"]
        if not emb["white_box"]:
            encoder = encoder or emb["encoder"]
        embedder = Embedder(classifier, encoder=encoder, layer=emb["layer"], pooling=emb["pooling"])
        if not emb["white_box"] and embedder.source.weights_sha256 != emb["weights_sha256"]:
            from plex.student.checkpoint import CheckpointError

            raise CheckpointError(f"the encoder {emb['encoder']!r} has other weights than the one the student was "
                                  "trained on; use the same encoder or retrain the student")
        return cls(scorer, embedder, config)

    @property
    def classifier(self) -> Classifier:
        return self.embedder.classifier

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def explain(self, texts: str | Sequence[str], batch_size: int = 256, target=None,
                all_classes: bool = False) -> list[Attribution]:
        """Explain ``texts``: one forward pass of the classifier (white box) plus the scorer.

        Args:
            texts: one text or a list.
            batch_size: texts per forward pass.
            target: ``None`` explains the predicted label; an int or one int per text otherwise.
            all_classes: also score every class (``meta["all_scores"]``, ``[n_labels, n_words]``).
        """
        texts = as_text_list(texts)
        per_text = target is not None and not isinstance(target, (int, np.integer))
        if per_text and len(list(target)) != len(texts):
            raise ValueError(f"got {len(list(target))} targets for {len(texts)} texts; pass one target per text")
        # Chunks of similar length pad least: sort once over all texts, restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        results: list[Attribution | None] = [None] * len(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            chunk_target = [list(target)[i] for i in idx] if per_text else target
            for i, a in zip(idx, self._explain_batch([texts[i] for i in idx], chunk_target, all_classes, batch_size)):
                results[i] = a
        return results

    def _explain_batch(self, texts: list[str], target, all_classes: bool, batch_size: int) -> list[Attribution]:
        t0 = time.perf_counter()
        probs, vectors = self.embedder(texts, batch_size=batch_size)
        targets = resolve_targets(target, probs, self.labels)
        K = self.classifier.num_labels
        classes = list(range(K)) if all_classes else None
        B, W = len(texts), max([1] + [len(v.words) for v in vectors])
        d = self.embedder.dim
        words = torch.zeros(B, W, d)
        for b, v in enumerate(vectors):
            words[b, : len(v.words)] = torch.from_numpy(v.words)
        sentence = torch.from_numpy(np.stack([v.sentence for v in vectors])) if vectors else torch.zeros(0, d)
        cls_idx = torch.tensor([classes or [t] for t in targets], dtype=torch.long)
        with torch.inference_mode():
            scores = self.scorer.explain_scores(sentence.to(self.device), words.to(self.device),
                                                cls_idx.to(self.device)).float().cpu().numpy()
        per_text = (time.perf_counter() - t0) / max(B, 1)
        out = []
        for b, (text, v, t) in enumerate(zip(texts, vectors, targets)):
            seg = segment(text)
            n = len(seg)
            s = scores[b, :, :n] * v.visible[None, :]
            meta = {"probs": probs[b], "labels": self.labels, "visible_words": int(v.visible.sum()),
                    "seconds": per_text}
            if all_classes:
                meta["all_scores"] = s
            row = s[t] if all_classes else s[0]
            out.append(Attribution(text=text, words=seg.words, spans=seg.spans, scores=row, target=t,
                                   method=self.method, meta=meta))
        return out


def explain_file(checkpoint: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike,
                 html: str | os.PathLike | None = None, text_column: str = "text", batch_size: int = 64,
                 device: str | None = None, progress: bool = True) -> list[Attribution]:
    """``plex explain``: read texts (txt / JSONL / CSV), write one JSON object per text, and a heatmap page."""
    from tqdm.auto import tqdm

    from plex.io import attribution_record, read_texts, write_jsonl
    from plex.render import write_html

    texts = read_texts(input, text_column=text_column)
    student = Plex.from_checkpoint(checkpoint, device=device, batch_size=batch_size)
    attributions: list[Attribution] = []
    with tqdm(total=len(texts), desc="explaining", unit="text", disable=not progress) as bar:
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            attributions.extend(student.explain(chunk, batch_size=batch_size))
            bar.update(len(chunk))
    write_jsonl(output, (attribution_record(a) for a in attributions))
    if html is not None:
        write_html(html, attributions, title=f"plex explanations: {Path(checkpoint).name} on {Path(input).name}")
    return attributions

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
from plex.distributed import ONE_PROCESS, Ranks, launch, several
from plex.student.embed import Embedder
from plex.student.data import collate, token_item
from plex.student.model import BranchScorer, SiameseScorer, explain_batch
from plex.teachers.base import resolve_targets
from plex.words import segment


class Plex:
    """A trained PLEX student bound to its classifier.

    Build it with :meth:`from_pretrained`; :meth:`explain` returns the same
    :class:`~plex.Attribution` objects as the teachers, over the same words.
    """

    method = "plex"

    def __init__(self, scorer: SiameseScorer | BranchScorer, embedder: Embedder, config: dict) -> None:
        self.scorer, self.embedder, self.config = scorer, embedder, config
        self.device = next(scorer.parameters()).device

    @classmethod
    def from_pretrained(cls, dir_or_hub_name: str | os.PathLike, classifier: Classifier | str | None = None,
                        encoder: str | None = None, device: str | torch.device | None = None,
                        batch_size: int = 64) -> Plex:
        """Load a student and the classifier it explains.

        Args:
            dir_or_hub_name: a checkpoint folder (written by ``plex train`` or :meth:`save_pretrained`),
                or a Hugging Face Hub repository holding one (downloaded with ``snapshot_download``).
            classifier: the classifier, or where to load it from; by default the one the checkpoint
                records: its path relative to the checkpoint, then the absolute path it had when
                saved, then its hub or embedded name.
            encoder: the separate encoder of a black-box classifier, found the same way by default.
            device: default: GPU when present.
            batch_size: texts per forward pass of the classifier.

        Raises:
            plex.student.checkpoint.CheckpointError: the checkpoint is unreadable, its classifier
                cannot be found, or the classifier's (encoder's) weights or labels differ from the
                ones the student was trained for.
        """
        from plex.classifiers import load_classifier
        from plex.classifiers.portable import is_local, locate
        from plex.student.checkpoint import (CheckpointError, checkpoint_folder, first_line, read_config,
                                             read_weights, scorer_from)
        from plex.student.train import check_same_classifier

        path = checkpoint_folder(dir_or_hub_name)
        device = torch.device(device) if device is not None else default_device()
        config = read_config(path)
        state = read_weights(path, device)
        # a head alone is checked now, before the classifier is looked for; a branch needs the classifier's layers
        scorer = None if config.get("scorer", {}).get("branch_layers") else scorer_from(path, config, state)
        recorded = config["classifier"]
        if classifier is None or isinstance(classifier, (str, os.PathLike)):
            location = classifier if classifier is not None else locate(recorded, path, what="the classifier")
            try:
                classifier = load_classifier(location, device=device, batch_size=batch_size)
            except OSError as err:
                if classifier is not None or is_local(location):
                    raise
                raise CheckpointError(f"the classifier {location!r} recorded in {path} cannot be loaded "
                                      f"({first_line(err)}); pass classifier= (Python) or --classifier (CLI)") from err
        check_same_classifier(recorded, classifier.identity(), what=f"the student {Path(path).name}")
        emb = config["embedding"]
        if not emb["white_box"]:
            encoder = encoder or locate(emb, path, key="encoder", what="the encoder", flag="encoder")
        embedder = Embedder(classifier, encoder=encoder, layer=emb["layer"], pooling=emb["pooling"])
        if not emb["white_box"] and embedder.source.weights_sha256 != emb["weights_sha256"]:
            raise CheckpointError(f"the encoder {emb['encoder']!r} has other weights than the one the student was "
                                  "trained on; use the same encoder or retrain the student")
        if scorer is None:
            scorer = scorer_from(path, config, state, encoder=embedder.source.model)
        return cls(scorer.to(device).eval(), embedder, config)

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write the student to ``save_directory`` (weights, config.json, model card), atomically.

        The classifier and encoder are recorded relative to the new folder (plus their absolute
        paths as hints), so the folder reloads with :meth:`from_pretrained` wherever it is copied
        along with them. Returns the folder.
        """
        from plex.student.checkpoint import save_checkpoint

        path = Path(save_directory)
        config = {k: v for k, v in self.config.items() if k not in ("format", "scorer")}
        config.update(name=path.name, checkpoint=str(path), classifier=self.classifier.identity(),
                      embedding=self.embedder.identity())
        return save_checkpoint(path, self.scorer, config)

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

        Raises:
            ValueError: a student trained in ``paper`` mode (:attr:`mode`) is asked for
                ``all_classes`` or for a target other than a text's predicted class: its score is
                one cosine per word, the same for every class, and only means something for the
                predicted class it was trained on.
        """
        texts = as_text_list(texts)
        if all_classes and self.mode == "paper":
            raise ValueError(_paper_mode_message("all_classes=True asks for the scores of every class"))
        per_text = target is not None and not isinstance(target, (int, np.integer))
        if per_text:
            target = list(target)
            if len(target) != len(texts):
                raise ValueError(f"got {len(target)} targets for {len(texts)} texts; pass one target per text")
        # Chunks of similar length pad least: sort once over all texts, restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        results: list[Attribution | None] = [None] * len(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            chunk_target = [target[i] for i in idx] if per_text else target
            for i, a in zip(idx, self._explain_batch([texts[i] for i in idx], chunk_target, all_classes, batch_size,
                                                     positions=idx)):
                results[i] = a
        return results

    @property
    def mode(self) -> str:
        """How the student scores: ``conditional`` (any class) or ``paper`` (the predicted class only)."""
        return self.scorer.config.mode

    def _explain_batch(self, texts: list[str], target, all_classes: bool, batch_size: int,
                       positions: Sequence[int] | None = None) -> list[Attribution]:
        t0 = time.perf_counter()
        if isinstance(self.scorer, BranchScorer):  # the trunk's token states, as in training
            probs, states = self.embedder.tokens(texts, batch_size=batch_size)
            items = [token_item(st.hidden, st.word_ids, len(segment(text))) for text, st in zip(texts, states)]
        else:
            probs, vectors = self.embedder(texts, batch_size=batch_size)
            items = [{"words": v.words, "visible": v.visible, "sentence": v.sentence} for v in vectors]
        targets = resolve_targets(target, probs, self.labels)
        if self.mode == "paper" and target is not None:
            check_paper_targets(targets, probs.argmax(axis=1), self.labels,
                                positions if positions is not None else range(len(texts)))
        K = self.classifier.num_labels
        classes = list(range(K)) if all_classes else None
        B = len(texts)
        cls_idx = torch.tensor([classes or [t] for t in targets], dtype=torch.long, device=self.device)
        batch = {k: v.to(self.device) for k, v in collate(items).items()} if items else None
        with torch.inference_mode():
            scores = explain_batch(self.scorer, batch, cls_idx).float().cpu().numpy() if items else None
        per_text = (time.perf_counter() - t0) / max(B, 1)
        out = []
        for b, (text, item, t) in enumerate(zip(texts, items, targets)):
            seg = segment(text)
            visible = item["visible"]
            s = scores[b, :, : len(seg)] * visible[None, :]
            meta = {"probs": probs[b], "labels": self.labels, "visible_words": int(visible.sum()),
                    "seconds": per_text}
            if all_classes:
                meta["all_scores"] = s
            row = s[t] if all_classes else s[0]
            out.append(Attribution(text=text, words=seg.words, spans=seg.spans, scores=row, target=t,
                                   method=self.method, meta=meta))
        return out


def check_paper_targets(targets: Sequence[int], predicted: Sequence[int], labels: Sequence[str],
                        positions: Sequence[int]) -> None:
    """A paper-mode student explains each text's predicted class only: a ValueError for any other target.

    ``positions`` are the texts' 0-based places in what the caller was given (named 1-based in the message).
    """
    wrong = [(int(p), int(t), int(c)) for p, t, c in zip(positions, targets, predicted) if int(t) != int(c)]
    if wrong:
        number, t, c = min(wrong)
        raise ValueError(_paper_mode_message(
            f"text #{number + 1} is asked for class {t} ({labels[t]!r}) but its predicted class is {c} "
            f"({labels[c]!r})"))


def _paper_mode_message(why: str) -> str:
    return (f"this student was trained in paper mode, whose word scores are one cosine for the predicted class, "
            f"the same whatever class is asked; {why}. Explain the predicted class (target=None in Python, no "
            f"--target with plex explain) or train a conditional student (plex train --mode conditional)")


def explain_file(checkpoint: str | os.PathLike, input: str | os.PathLike, output: str | os.PathLike,
                 html: str | os.PathLike | None = None, text_column: str = "text", batch_size: int = 64,
                 device: str | None = None, progress: bool = True, classifier: Classifier | str | None = None,
                 target: int | str | None = None, encoder: str | None = None, devices: int | str = 1,
                 num_nodes: int = 1, accelerator: str = "auto", strategy: str = "ddp") -> list[Attribution] | None:
    """``plex explain``: read texts (txt / JSONL / CSV), write one JSON object per text, and a heatmap page.

    Args:
        checkpoint: the student's folder.
        input: the texts (see :func:`plex.io.read_texts`).
        output: the JSONL file to write, one record per text in input order (see
            :func:`plex.io.attribution_record`); ``-`` is standard output.
        html: also write a heatmap page here (``-``: standard output); ``None`` for none.
        text_column: the JSONL key or CSV/TSV column of the texts.
        batch_size: texts per forward pass.
        device: ``cpu``, ``cuda``...; default: GPU when present.
        progress: show a progress bar.
        classifier: the classifier the student explains, when not the one recorded in its checkpoint
            (a loaded :class:`~plex.classifiers.base.Classifier` or a path).
        target: the class to explain in every text, as an index or a class name (matched ignoring
            case); ``None`` explains each text's predicted class.
        encoder: the separate encoder of a student of a black-box classifier, when not where its
            checkpoint says.
        devices, num_nodes, accelerator, strategy: above one device or node, one process per device
            with Lightning Fabric, as ``plex label`` does: batch ``k`` of the texts goes to rank
            ``k mod world size``, and rank 0 writes every output in input order, the same as one
            process writes (each batch is the same batch either way).

    Texts without words (empty or only whitespace) are not run through the classifier: each keeps
    its place in the output as a record with ``"empty": true``, no words or scores and ``null``
    target and prediction (and an "(empty text)" row in the page), and one warning gives their
    count. Outputs never overwrite the input or each other (:func:`plex.io.check_outputs`, checked
    before any work) and are written as :func:`plex.io.open_output` describes.

    Returns:
        One :class:`~plex.Attribution` per text, in input order; texts without words get the
        placeholder of :func:`plex.io.empty_attribution` (``meta["empty"]``). (``None`` in the
        processes other than rank 0 of a run over several devices.)

    Raises:
        plex.io.OutputError: an output is the input or the other output.
        plex.data.DataError: the input cannot be read, or ``target`` is not a class of the classifier.
        ValueError: the student was trained in paper mode and ``target`` is not the predicted class
            of some text (such a student explains the predicted class only); nothing is written.
    """
    from plex.io import check_outputs, read_texts

    check_outputs({"--output": output, "--html": html}, {"--input": input})
    texts = read_texts(input, text_column=text_column)
    settings = dict(checkpoint=checkpoint, input=input, output=output, html=html, batch_size=batch_size,
                    device=device, progress=progress, classifier=classifier, target=target, encoder=encoder)
    if several(devices, num_nodes):
        if classifier is not None and not isinstance(classifier, (str, os.PathLike)):
            raise ValueError("with several devices every process loads the classifier itself: pass its location")
        return launch(_explain_on_rank, texts, settings, accelerator=accelerator, devices=devices,
                      num_nodes=num_nodes, strategy=strategy)
    return _explain_texts(texts, ranks=ONE_PROCESS, **settings)


def _explain_on_rank(ranks: Ranks, device: str, texts: list[str], settings: dict) -> list[Attribution] | None:
    settings = {**settings, "device": settings["device"] or device, "progress": settings["progress"] and ranks.rank == 0}
    return _explain_texts(texts, ranks=ranks, **settings)


def _explain_texts(texts: list[str], checkpoint, input, output, html, batch_size, device, progress, classifier,
                   target, encoder, ranks: Ranks) -> list[Attribution] | None:
    import logging

    from tqdm.auto import tqdm

    from plex.data import class_index
    from plex.io import attribution_record, empty_attribution, write_jsonl
    from plex.render import write_html

    logger = logging.getLogger(__name__)
    rank, world = ranks.rank, ranks.world
    student = Plex.from_pretrained(checkpoint, classifier=classifier, encoder=encoder, device=device,
                                   batch_size=batch_size)
    target = None if target is None else class_index(target, student.labels, what="target")
    worded = [i for i, text in enumerate(texts) if segment(text).words]
    attributions: list[Attribution] = [empty_attribution(text, student.method, student.labels) for text in texts]
    if len(worded) < len(texts) and rank == 0:
        read = set(worded)
        empty = [i + 1 for i in range(len(texts)) if i not in read]
        shown = ", ".join(f"#{n}" for n in empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
        logger.warning("%d of %d texts of %s have no words (empty or only whitespace): %s; they are not "
                       "explained and are written with \"empty\": true", len(empty), len(texts), input, shown)
    # A paper-mode student can only explain the predicted class: explain that and refuse any text
    # whose prediction is not the asked target, naming it by its number in the input.
    paper = target is not None and student.mode == "paper"
    chunks = [worded[start : start + batch_size] for start in range(0, len(worded), batch_size)]
    mine = chunks[rank::world]  # batch k to rank k mod world size: the same batches as one process
    done: list[tuple[int, Attribution]] = []
    with tqdm(total=sum(map(len, mine)), desc="explaining" if world == 1 else f"explaining (rank 0 of {world})",
              unit="text", disable=not progress) as bar:
        for chunk in mine:
            explained = student.explain([texts[i] for i in chunk], batch_size=batch_size,
                                        target=None if paper else target)
            if paper:
                check_paper_targets([target] * len(chunk), [a.target for a in explained], student.labels, chunk)
            done.extend(zip(chunk, explained))
            bar.update(len(chunk))
    done = [pair for part in ranks.gather(done) for pair in part]
    if rank != 0:
        return None
    for i, a in done:
        attributions[i] = a
    write_jsonl(output, (attribution_record(a) for a in attributions))
    if html is not None:
        write_html(html, attributions, title=f"plex explanations: {Path(checkpoint).name} on {Path(input).name}")
    return attributions

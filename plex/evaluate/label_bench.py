"""``plex bench label``: labelling throughput against the libraries used as documented and the raw forward pass.

On the same texts, for each teacher setting:

(a) the library driven as its own documentation shows: ``lime``'s ``LimeTextExplainer.explain_instance``
    one text at a time with the classifier's batched ``predict_proba`` as ``classifier_fn``; for SHAP,
    ``shap.Explainer`` with a ``shap.maskers.Text`` over the classifier's tokenizer (none for occlusion);
(b) ``plex label`` in one process (the shared batching classifier, ``concurrency`` texts at once);
(c) the classifier's raw forward pass over exactly the distinct perturbed texts (b) sent it, in one call;
(c') the same forward passes as (b)'s rounds made them (those of the last repeat), one call per round, one
    after another, against that repeat's (c): (c') - (c)
    is what cutting the work into rounds costs the forward pass (smaller, less uniform batches than one
    call sorted by length over everything), (b) - (c') what the threads and their coordination cost;
(d) ``plex label`` again with every classifier answer looked up from (b)'s: the teachers' own work (sampling,
    surrogate fits, threads), which on a CPU shares the cores with the forward pass. With (c)'s seconds it
    bounds what (b)/(c) can reach on this machine: (c) / ((c) + (d)) when nothing overlaps;
(b1) for LIME-LLM and gSMILE, which have no library to compare with, ``plex label`` explaining one text
    at a time (concurrency 1): what sharing the rounds of every model, the language models included, gives;

and the scaling of (b) over 1..N processes (Lightning Fabric). Every figure comes from this one run.
Texts per second count explained texts; classifier texts per second count texts the classifier ran.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from plex.classifiers.base import Classifier
from plex.classifiers.batching import WrappedClassifier

logger = logging.getLogger(__name__)


class _Recording(WrappedClassifier):
    """The classifier, keeping every call it gets (one per round under plex label), every text it is asked
    about (in the order asked) and its answer."""

    def __init__(self, inner: Classifier) -> None:
        super().__init__(inner)
        self.texts: list[str] = []
        self.calls: list[list[str]] = []
        self.answers: dict[str, np.ndarray] = {}

    def predict_proba(self, texts):
        texts = list(texts)
        self.texts.extend(texts)
        self.calls.append(texts)
        probs = np.asarray(self.inner.predict_proba(texts))
        self.answers.update(zip(texts, probs))
        return probs


class _Replay(WrappedClassifier):
    """Answers looked up from a recording: the teacher's work without the forward pass."""

    def __init__(self, recording: _Recording) -> None:
        super().__init__(recording.inner)
        self.answers = recording.answers

    def predict_proba(self, texts):
        texts = list(texts)
        missing = [t for t in texts if t not in self.answers]
        if missing:  # a teacher asking for other texts than in (b): answer them (counted in its time)
            self.answers.update(zip(missing, np.asarray(self.inner.predict_proba(missing))))
        return np.stack([self.answers[t] for t in texts]) if texts else np.zeros((0, self.num_labels))


@dataclass
class LabelBenchRow:
    """One teacher setting: (a) library, (b) plex label, (c) raw forward, with texts/s and classifier texts/s."""

    teacher: str
    texts: int
    library_texts_per_s: float | None = None
    library_classifier_texts_per_s: float | None = None
    plex_texts_per_s: float = float("nan")
    plex_classifier_texts_per_s: float = float("nan")
    unique_fraction: float = float("nan")
    mean_forward_batch: float = float("nan")
    batch_size: int = 0
    forward_texts_per_s: float = float("nan")
    forward_seconds: float = float("nan")
    rounds_seconds: float = float("nan")
    rounds: int = 0
    rounds_forward_seconds: float = float("nan")
    teacher_seconds: float = float("nan")
    serial_texts_per_s: float | None = None
    repeats: int = 1
    forward_pairs: list[float] = field(default_factory=list)
    library_pairs: list[float] = field(default_factory=list)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    scaling: dict[int, float] = field(default_factory=dict)
    share_device: bool = False

    @property
    def plex_over_library(self) -> float | None:
        """(b)'s texts per second over (a)'s; with repeats, the median of the repeats' ratios."""
        if self.library_pairs:
            return float(np.median(self.library_pairs))
        return self.plex_texts_per_s / self.library_texts_per_s if self.library_texts_per_s else None

    @property
    def plex_over_forward(self) -> float:
        """(b)'s classifier throughput over (c)'s: 1 means labelling costs exactly its distinct forward passes;
        with repeats, the median of the repeats' ratios."""
        if self.forward_pairs:
            return float(np.median(self.forward_pairs))
        return self.plex_classifier_texts_per_s / self.forward_texts_per_s

    @property
    def forward_share(self) -> float:
        """(c)'s seconds over (c)'s plus (d)'s: the most (b)/(c) can be where the teacher's work and the
        forward pass share the same cores."""
        return self.forward_seconds / (self.forward_seconds + self.teacher_seconds)

    @property
    def teacher_ceiling(self) -> float:
        """Texts per second of (d), the teacher's own work alone: the most one process can label, however fast
        its device (the explanations take turns at that work, see :meth:`plex.batching.Batcher.turn`). For a
        teacher with models of its own (LIME-LLM, gSMILE) (d) still runs them: only the classifier is replayed."""
        return self.texts / self.teacher_seconds if self.teacher_seconds else float("nan")

    @property
    def concurrent_over_serial(self) -> float | None:
        """(b) over (b1): labelling ``concurrency`` texts at once against one at a time."""
        return self.plex_texts_per_s / self.serial_texts_per_s if self.serial_texts_per_s else None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(plex_over_library=self.plex_over_library, plex_over_forward=self.plex_over_forward,
                   forward_share=self.forward_share, teacher_ceiling=self.teacher_ceiling,
                   concurrent_over_serial=self.concurrent_over_serial)
        return out


BUDGETS = {"lime": "num_samples", "shap": "max_evals", "lime-llm": "num_samples", "gsmile": "num_samples"}
SERIAL = ("lime-llm", "gsmile")  # no library to drive: (b) is compared with itself one text at a time


def parse_teacher(spec: str) -> tuple[str, dict[str, Any]]:
    """``lime:500`` -> LIME with 500 samples, ``shap:500`` -> SHAP with 500 evaluations, ``occlusion``;
    ``lime-llm:20`` and ``gsmile:64`` -> those teachers with that many samples."""
    name, _, budget = spec.strip().partition(":")
    if name not in (*BUDGETS, "occlusion") or (budget and name not in BUDGETS) or (budget and not budget.isdigit()):
        raise ValueError(f"--label-teachers takes lime:N, shap:N, occlusion, lime-llm:N or gsmile:N, got {spec!r}")
    return name, ({BUDGETS[name]: int(budget)} if budget else {})


def _library_lime(classifier: Classifier, texts: Sequence[str], num_samples: int) -> tuple[float, int]:
    from lime.lime_text import LimeTextExplainer

    counted = _Recording(classifier)
    explainer = LimeTextExplainer(class_names=classifier.labels, random_state=0)
    start = time.perf_counter()
    for text in texts:
        explainer.explain_instance(text, counted.predict_proba, num_features=10, num_samples=num_samples)
    return time.perf_counter() - start, len(counted.texts)


def _library_shap(classifier: Classifier, texts: Sequence[str], max_evals: int) -> tuple[float, int] | None:
    import shap

    tokenizer = getattr(classifier, "tokenizer", None)
    if tokenizer is None:
        return None
    counted = _Recording(classifier)
    explainer = shap.Explainer(lambda x: counted.predict_proba([str(t) for t in x]), shap.maskers.Text(tokenizer),
                               output_names=classifier.labels)
    start = time.perf_counter()
    for text in texts:
        explainer([text], max_evals=max_evals, silent=True)
    return time.perf_counter() - start, len(counted.texts)


def _median_run(runs: list, seconds) -> Any:
    """The run of median time (the lower middle one of an even number)."""
    return sorted(runs, key=seconds)[(len(runs) - 1) // 2]


def bench_label(classifier_location: str, texts: Sequence[str], teachers: Sequence[str], processes: int = 1,
                concurrency: int = 8, batch_size: int = 64, accelerator: str = "auto", device: str | None = None,
                work: str | Path | None = None, repeats: int = 1, share_device: bool = False) -> list[LabelBenchRow]:
    """Measure (a), (b), (c) for every teacher spec (``repeats`` times, side by side: the run of median time
    is reported, and the range of the per-repeat ratios), (d), (b1) where it applies, and (b) over
    1..``processes`` processes for the first (one device each, or all on one device with ``share_device``)."""
    from plex.classifiers import load_classifier
    from plex.config import LabelConfig
    from plex.label import read_manifest, run_label

    if work is None:  # label folders of a throw-away run: removed afterwards
        with tempfile.TemporaryDirectory(prefix="plex-bench-label-") as tmp:
            return bench_label(classifier_location, texts, teachers, processes, concurrency, batch_size, accelerator,
                               device, work=tmp, repeats=repeats, share_device=share_device)
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    classifier = load_classifier(classifier_location, device=device, batch_size=batch_size)
    folder = Path(work)
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    classifier.predict_proba(list(texts[:4]))  # warm-up
    rows = []
    for number, spec in enumerate(teachers):
        name, args = parse_teacher(spec)
        row = LabelBenchRow(teacher=spec, texts=len(texts), batch_size=classifier.batch_size, repeats=repeats,
                            share_device=share_device)
        cfg = LabelConfig(dataset=str(data), label_column=None, classifier=classifier_location, teacher=name,
                          teacher_args={**args, "seed": 0} if name == "lime" else args,
                          output=str(folder / f"{number}-{name}-1"), concurrency=concurrency, batch_size=batch_size,
                          device=device)
        library_runs, plex_runs, forward_runs = [], [], []
        for _ in range(repeats):  # (a), (b), (c) side by side, so that the machine's drift hits them alike
            library = None  # (a) the library as documented
            if name == "lime":
                library = _library_lime(classifier, texts, args["num_samples"])
            elif name == "shap":
                library = _library_shap(classifier, texts, args["max_evals"])
            if library is not None:
                library_runs.append(library)
            recording = _Recording(classifier)  # (b) plex label, one process, recording what the classifier ran
            run_label(cfg, classifier=recording, overwrite=True, progress=False)
            speed = read_manifest(cfg.output)["throughput"]
            plex_runs.append(speed)
            start = time.perf_counter()  # (c) the raw forward pass on exactly those texts, in one call
            classifier.predict_proba(recording.texts)
            forward_runs.append((time.perf_counter() - start, len(recording.texts)))
        if library_runs:
            seconds, asked = _median_run(library_runs, lambda r: r[0])
            row.library_texts_per_s, row.library_classifier_texts_per_s = len(texts) / seconds, asked / seconds
        speed = _median_run(plex_runs, lambda r: r["seconds"])
        row.models = speed.get("models", {})
        row.plex_texts_per_s = speed["texts_per_second"]
        calls = speed.get("classifier", {})
        row.plex_classifier_texts_per_s = calls.get("texts_per_second", float("nan"))
        row.unique_fraction = calls.get("unique_fraction", float("nan"))
        row.mean_forward_batch = calls.get("mean_forward_batch", float("nan"))
        row.forward_seconds, ran = _median_run(forward_runs, lambda r: r[0])
        row.forward_texts_per_s = ran / row.forward_seconds
        pairs = [(p.get("classifier", {}).get("texts_per_second", float("nan")) / (n / f))
                 for p, (f, n) in zip(plex_runs, forward_runs)]
        row.forward_pairs = pairs
        if library_runs:
            row.library_pairs = [p["texts_per_second"] * a_seconds / len(texts)
                                 for p, (a_seconds, _) in zip(plex_runs, library_runs)]
        # (c') the last repeat's rounds, replayed one after another, beside that repeat's own (c)
        start = time.perf_counter()
        for call in recording.calls:
            classifier.predict_proba(call)
        row.rounds_seconds = time.perf_counter() - start
        row.rounds, row.rounds_forward_seconds = len(recording.calls), forward_runs[-1][0]
        # (d) the teacher's own work: (b) again, every answer looked up
        replay = dataclasses.replace(cfg, output=str(folder / f"{number}-{name}-replay"))
        run_label(replay, classifier=_Replay(recording), overwrite=True, progress=False)
        row.teacher_seconds = read_manifest(replay.output)["throughput"]["seconds"]
        row.scaling[1] = row.plex_texts_per_s
        if name in SERIAL:  # (b1)
            serial = dataclasses.replace(cfg, output=str(folder / f"{number}-{name}-serial"), concurrency=1)
            run_label(serial, classifier=classifier, overwrite=True, progress=False)
            row.serial_texts_per_s = read_manifest(serial.output)["throughput"]["texts_per_second"]
        if number == 0 and processes > 1:
            # shards small enough for every rank to have work; one process is timed again with the same shards
            shard = max(1, len(texts) // (2 * processes))
            out = folder / f"{number}-{name}-shards"
            run_label(dataclasses.replace(cfg, output=str(out), shard_size=shard), overwrite=True, progress=False)
            row.scaling[1] = read_manifest(out)["throughput"]["texts_per_second"]
            for k in range(2, processes + 1):
                out = folder / f"{number}-{name}-{k}"
                devices = {"devices": 1, "processes_per_device": k} if share_device else {"devices": k}
                run_label(dataclasses.replace(cfg, output=str(out), accelerator=accelerator, strategy="ddp_spawn",
                                              device=None, shard_size=shard, **devices),
                          overwrite=True, progress=False)
                row.scaling[k] = read_manifest(out)["throughput"]["texts_per_second"]
        logger.info("%s: plex %.2f texts/s, library %s, forward %.0f texts/s", spec, row.plex_texts_per_s,
                    f"{row.library_texts_per_s:.2f}" if row.library_texts_per_s else "-", row.forward_texts_per_s)
        rows.append(row)
    return rows


SHORT_SECONDS = 10.0
"""Forward passes shorter than this are flagged in the table: the ratio of two such timings is mostly drift (occlusion
on 20 texts, about 3 s, gave (b)/(c) from 0.60 to 1.31 over three repeats of one run; on 256 texts, 0.95 to 1.05)."""


def format_label_bench(rows: Sequence[LabelBenchRow]) -> str:
    """The table ``plex bench label`` prints: throughputs, then the ratios the targets are stated in."""
    def num(x, fmt="{:,.2f}"):
        return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else fmt.format(x)

    lines = [f"{'teacher':<12} {'(a) texts/s':>11} {'(a) clf/s':>10} {'(b) texts/s':>11} {'(b) clf/s':>10} "
             f"{'(c) fwd/s':>10} {'(b)/(a)':>8} {'(b)/(c)':>8} {'unique':>7} {'batch':>11}"]
    for r in rows:
        lines.append(f"{r.teacher:<12} {num(r.library_texts_per_s):>11} {num(r.library_classifier_texts_per_s, '{:,.0f}'):>10} "
                     f"{num(r.plex_texts_per_s):>11} {num(r.plex_classifier_texts_per_s, '{:,.0f}'):>10} "
                     f"{num(r.forward_texts_per_s, '{:,.0f}'):>10} {num(r.plex_over_library):>8} "
                     f"{num(r.plex_over_forward):>8} {num(r.unique_fraction):>7} "
                     f"{num(r.mean_forward_batch, '{:.1f}')}/{r.batch_size:<4}")
    for r in rows:
        if r.repeats > 1:
            spread = [f"(b)/(c) {min(r.forward_pairs):.2f}-{max(r.forward_pairs):.2f}"]
            if r.library_pairs:
                spread.append(f"(b)/(a) {min(r.library_pairs):.2f}-{max(r.library_pairs):.2f}")
            lines.append(f"{r.teacher}: {r.repeats} repeats of (a), (b), (c) side by side; medians above, ranges "
                         + ", ".join(spread))
        lines.append(f"{r.teacher}: (c) {r.forward_seconds:.1f} s of forward passes in one call, (d) "
                     f"{r.teacher_seconds:.1f} s of the teacher's own work: (b)/(c) can reach {r.forward_share:.2f} "
                     f"where they share the cores; (c') the last repeat's {r.rounds} rounds one after another "
                     f"{r.rounds_seconds:.1f} s against its (c) {r.rounds_forward_seconds:.1f} s; (d) alone "
                     + (f"{r.teacher_ceiling:.1f} texts/s, which still runs the teacher's own models"
                        if r.models else
                        f"{r.teacher_ceiling:.1f} texts/s, the most one process can label on any device"))
        if r.forward_seconds < SHORT_SECONDS:
            lines.append(f"{r.teacher}: note: (c) took {r.forward_seconds:.1f} s, too short to read (b)/(c) closely: a "
                         "shared machine drifts by 10-30 % between minutes; time more texts (--label-n) or repeats")
        if r.serial_texts_per_s:
            lines.append(f"{r.teacher}: one text at a time (b1) {r.serial_texts_per_s:.3f} texts/s; (b)/(b1) "
                         f"{r.concurrent_over_serial:.2f}")
        for name, m in sorted(r.models.items()):
            lines.append(f"  {r.teacher} {name}: {m['requests']} calls, {m['texts']} inputs, {m['unique']} distinct, "
                         f"{m['rounds']} rounds, mean batch {m['mean_forward_batch']:.1f}")
    scaled = [r for r in rows if len(r.scaling) > 1]
    for r in scaled:
        one = r.scaling[1]
        cells = ", ".join(f"{k}: {v:.2f} texts/s (efficiency {v / (k * one):.2f})" for k, v in sorted(r.scaling.items()))
        where = "sharing one device" if r.share_device else "one device each"
        lines.append(f"scaling of (b), {r.teacher}, processes ({where}) {cells}")
    lines.append("(a) the library as its docs drive it; (b) plex label, one process; (c) the raw forward pass on the "
                 "distinct texts (b) ran. clf/s: classifier texts per second; (b)/(c) compares classifier texts/s; "
                 "batch: mean forward batch / batch size.")
    return "\n".join(lines)

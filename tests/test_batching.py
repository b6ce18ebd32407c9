"""Teachers share one batching classifier: concurrent calls gathered into deduplicated rounds, and labels
that do not depend on how they were batched."""

import threading

import numpy as np
import pytest

from plex.classifiers.base import Classifier
from plex.classifiers.batching import BatchingClassifier, explain_concurrently
from plex.config import LabelConfig
from plex.label import load_labels, read_manifest, run_label

from test_student import write_corpus


class Recording(Classifier):
    """Wraps a classifier and records the texts of every call it gets."""

    def __init__(self, inner, batch_size=8):
        self.inner, self.batch_size, self.calls = inner, batch_size, []

    @property
    def labels(self):
        return self.inner.labels

    def identity(self):
        return self.inner.identity()

    def predict_proba(self, texts):
        self.calls.append(list(texts))
        return self.inner.predict_proba(texts)


def test_concurrent_calls_become_one_deduplicated_round(linear_bow):
    _, clf = linear_bow
    inner = Recording(clf, batch_size=8)
    asks = [["good film", "bad plot", "good film"], ["bad plot", "a dull movie"], ["fun"], ["good film"]]
    got = [None] * len(asks)
    with BatchingClassifier(inner, max_wait=5.0) as batcher:  # the round starts when all four wait, not at 5 s
        gate = threading.Barrier(len(asks))

        def ask(k):
            with batcher.client():  # four explanations in flight, then each makes its call
                gate.wait()
                got[k] = batcher.predict_proba(asks[k])

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(asks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert len(inner.calls) == 1 and sorted(inner.calls[0]) == ["a dull movie", "bad plot", "fun", "good film"]
    for texts, probs in zip(asks, got):
        np.testing.assert_array_equal(probs, clf.predict_proba(texts))  # each caller gets its own rows
    s = batcher.stats
    assert (s.requests, s.texts, s.unique, s.rounds, s.forward_batches) == (4, 7, 4, 1, 1)
    assert s.unique_fraction == pytest.approx(4 / 7) and s.mean_forward_batch == 4


def test_explanations_count_from_their_hand_over_so_the_first_round_holds_them_all(linear_bow):
    """Threads start one after another; an explanation counts as in flight from the moment it is handed to
    a thread, so the first round waits for all of them (not for the 5 s timeout, and not one by one)."""
    import time

    _, clf = linear_bow
    inner = Recording(clf)
    with BatchingClassifier(inner, max_wait=5.0) as batcher:
        start = time.perf_counter()
        out = list(explain_concurrently(batcher, lambda k: batcher.predict_proba([f"good film {k}"]), range(6), 6))
        elapsed = time.perf_counter() - start
    assert len(inner.calls) == 1 and len(inner.calls[0]) == 6 and elapsed < 2.5
    np.testing.assert_array_equal(np.concatenate(out), clf.predict_proba([f"good film {k}" for k in range(6)]))
    with pytest.raises(ValueError, match="item 3"):  # an explanation's error reaches the consumer, no hang
        def fail(k):
            if k == 3:
                raise ValueError("item 3")
            return batcher_two.predict_proba(["fun"])
        with BatchingClassifier(clf) as batcher_two:
            list(explain_concurrently(batcher_two, fail, range(8), 4))


def test_explanations_run_with_one_blas_thread(linear_bow):
    """numpy's BLAS runs single-threaded while concurrent explanations run (they are the parallelism), and
    gets its threads back afterwards."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    np.dot(np.ones((4, 4)), np.ones((4, 4)))  # numpy's BLAS is loaded
    _, clf = linear_bow
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() and set(blas_threads()) == {2}
        with BatchingClassifier(clf) as batcher:
            inside = list(explain_concurrently(batcher, lambda k: blas_threads(), range(4), 2))
        assert inside == [[1] * len(blas_threads())] * 4 and set(blas_threads()) == {2}


class ThreadRecording(Recording):
    """Records the thread that runs each call."""

    def __init__(self, inner, batch_size=8):
        super().__init__(inner, batch_size)
        self.threads = []

    def predict_proba(self, texts):
        self.threads.append(threading.current_thread())
        return super().predict_proba(texts)


def test_rounds_run_on_the_thread_that_waits_for_the_results(linear_bow):
    """Under explain_concurrently the rounds run on the consumer's thread (the one that loaded the model: a
    second OpenMP team slows PyTorch on a CPU), and the batcher's worker serves again afterwards."""
    _, clf = linear_bow
    inner = ThreadRecording(clf, batch_size=2)
    texts = [f"good film {k}" for k in range(12)]
    with BatchingClassifier(inner) as batcher:
        out = list(explain_concurrently(batcher, lambda k: batcher.predict_proba([texts[k], "fun"]), range(12), 4))
        assert inner.threads and set(inner.threads) == {threading.current_thread()}
        assert len(inner.calls) > 1  # several rounds, every one of them here
        np.testing.assert_array_equal(np.concatenate(out), clf.predict_proba([t for k in range(12) for t in (texts[k], "fun")]))
        inner.threads = []
        asked = []
        thread = threading.Thread(target=lambda: asked.append(batcher.predict_proba(["bad plot"])))
        thread.start()
        thread.join(timeout=10)
        assert asked and inner.threads == [batcher.batcher._worker]  # the worker took over again


def test_leaving_the_results_early_lets_the_running_explanations_finish(linear_bow):
    """A consumer that stops reading gives the rounds back to the worker: the explanations still in flight
    get their answers and the pool shuts down (no deadlock)."""
    import time

    _, clf = linear_bow
    inner = ThreadRecording(clf)
    finished = []

    def slow(k):
        probs = batcher.predict_proba([f"good film {k}"])
        while k and batcher.batcher._leader is not None:  # the others ask again once the consumer has left
            time.sleep(0.01)
        probs = batcher.predict_proba([f"bad plot {k}"])
        finished.append(k)
        return probs

    from plex.batching import Batcher

    with Batcher(turns=None) as engine:  # no turns: the explanations wait below without holding one
        batcher = BatchingClassifier(inner, batcher=engine)
        results = explain_concurrently(batcher, slow, range(20), 4)
        next(results)
        results.close()
        assert engine._worker in inner.threads  # rounds after the consumer left ran on the worker
    assert 0 in finished and 2 <= len(finished) < 20


def test_a_second_consumer_does_not_take_the_lead(linear_bow):
    """Two explain_concurrently sharing one batcher from two threads: one leads, the other's rounds are that
    leader's (or, once it is done, the worker's), and both get every result."""
    from plex.batching import Batcher

    _, clf = linear_bow
    inner = ThreadRecording(clf)
    outs = {}
    both_in = threading.Barrier(2)  # each consumer's first explanation waits until the other consumer runs

    def explain(name, k):
        if k == 0:
            both_in.wait(timeout=10)
        return batcher.predict_proba([f"{name} {k}"])

    with Batcher(turns=None) as engine:  # no turns: the first explanations wait without holding one
        batcher = BatchingClassifier(inner, batcher=engine)

        def consume(name):
            outs[name] = list(explain_concurrently(batcher, lambda k: explain(name, k), range(10), 3))

        threads = [threading.Thread(target=consume, args=(n,)) for n in ("good", "bad")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=20)
        assert not any(t.is_alive() for t in threads)
        worker = engine._worker
    for name in ("good", "bad"):
        np.testing.assert_array_equal(np.concatenate(outs[name]), clf.predict_proba([f"{name} {k}" for k in range(10)]))
    assert set(inner.threads) <= {*threads, worker}
    assert len(set(inner.threads) & set(threads)) == 1  # one consumer led, never both


@pytest.mark.parametrize("turns", [1, None])
def test_explanations_take_turns_at_their_own_work(turns):
    """With ``turns=1`` one explanation at a time runs its own code (the others wait for a round or for the
    turn), and the turn passes on whenever an explanation waits for a round, so all six still share one
    round; ``turns=None`` lets every thread run at once."""
    import time

    from plex.batching import Batcher

    active, most, lock, calls = [0], [0], threading.Lock(), []

    def own_work():
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1

    def explain(k):
        own_work()
        out = batcher.call("m", lambda xs: calls.append(list(xs)) or [x.upper() for x in xs], [f"t{k}"], batch_size=64)
        own_work()
        return out

    with Batcher(max_wait=5.0, max_hold=5.0, turns=turns) as batcher:
        start = time.perf_counter()
        assert list(explain_concurrently(batcher, explain, range(6), 6)) == [[f"T{k}"] for k in range(6)]
        elapsed = time.perf_counter() - start
    assert len(calls) == 1 and sorted(calls[0]) == [f"t{k}" for k in range(6)] and elapsed < 2.5
    assert most[0] == 1 if turns == 1 else most[0] > 1
    with pytest.raises(ValueError, match="turns"):
        Batcher(turns=0)


def _occlusion_labels(tmp_path, clf, n, seed, batch_size, shard_size):
    """Occlusion labels of ``n`` texts made by plex label (concurrency 16) through a recording classifier:
    the texts and the recording, after checking the rows equal occlusion on the bare classifier, bit for bit."""
    from plex.teachers import Occlusion

    texts = write_corpus(tmp_path / "c.csv", n, seed=seed)
    inner = Recording(clf, batch_size=batch_size)
    run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier="linear-bow",
                          teacher="occlusion", output=str(tmp_path / "labels"), concurrency=16,
                          shard_size=shard_size), classifier=inner, teacher=Occlusion(), progress=False)
    rows = load_labels(tmp_path / "labels")
    assert list(rows["text"]) == texts
    for row, a in zip(rows, Occlusion().explain(clf, texts, all_classes=True)):
        np.testing.assert_array_equal(np.asarray(row["scores"]), a.meta["all_scores"].astype(np.float32))
    return texts, inner


def test_label_asks_for_each_text_with_its_perturbations(tmp_path, linear_bow):
    """plex label asks for a text's own probabilities after its explanation, which scored the text among its
    perturbations (occlusion's base): each text runs once, in the call that runs its variants, and its
    probabilities come from memory, not from a round of their own."""
    from plex.teachers.occlusion import occlusion_variants
    from plex.words import segment

    texts, inner = _occlusion_labels(tmp_path, linear_bow[1], 10, seed=5, batch_size=4, shard_size=10)
    for text in texts:
        holding = [call for call in inner.calls if text in call]
        assert len(holding) == 1 and set(occlusion_variants(segment(text))) <= set(holding[0])
    classifier = read_manifest(tmp_path / "labels")["throughput"]["classifier"]
    assert classifier["remembered"] >= len(texts) and classifier["unique"] == sum(len(c) for c in inner.calls)


def test_label_streams_across_shards(tmp_path, linear_bow, monkeypatch):
    """The next shard's explanations do not wait for this shard's to finish: with room for all six, two
    shards of three texts share their rounds, and each shard is written with its own rows."""
    import functools

    import plex.label

    monkeypatch.setattr(plex.label, "BatchingClassifier", functools.partial(BatchingClassifier, max_wait=5.0))
    texts, inner = _occlusion_labels(tmp_path, linear_bow[1], 6, seed=6, batch_size=8, shard_size=3)
    # one round of the six texts with their variants; shard by shard, it would be one round for each shard
    assert len(inner.calls) == 1 and set(texts) < set(inner.calls[0])
    assert len(list((tmp_path / "labels").glob("shards/*"))) == 2


@pytest.mark.parametrize("first, rounds", [(2, 1), (8, 2)])
def test_a_round_short_of_a_batch_waits_for_the_others(first, rounds):
    """After ``max_wait`` a round starts only if a forward batch waits: two inputs wait on for a caller still
    busy with its own work (one round), a full batch of eight does not (two rounds)."""
    import time

    from plex.batching import Batcher

    calls = []
    with Batcher(max_wait=0.01, max_hold=10.0) as batcher:
        batcher.join(2)  # two explanations in flight

        def ask(delay, n):
            try:
                time.sleep(delay)
                return batcher.call("m", lambda xs: calls.append(list(xs)) or xs, [f"{delay}-{k}" for k in range(n)],
                                    batch_size=8)
            finally:
                batcher.leave()

        threads = [threading.Thread(target=ask, args=(0.0, first)), threading.Thread(target=ask, args=(0.3, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert len(calls) == rounds and sum(map(len, calls)) == first + 1


def test_a_round_short_of_a_batch_waits_no_longer_than_max_hold():
    import time

    from plex.batching import Batcher

    with Batcher(max_wait=0.01, max_hold=0.2) as batcher, batcher.client():  # an explanation that never calls
        with batcher.client():
            start = time.perf_counter()
            assert batcher.call("m", lambda xs: xs, ["a"], batch_size=8) == ["a"]
            assert 0.15 < time.perf_counter() - start < 3


def test_earlier_rounds_are_remembered(linear_bow):
    """A text scored in an earlier round is answered from memory (the text an explanation starts from, asked
    again by lime's first sample); the memory is bounded, and ``remember=0`` turns it off."""
    _, clf = linear_bow
    inner = Recording(clf)
    with BatchingClassifier(inner, remember=2) as batcher:
        batcher.predict_proba(["good film", "bad plot"])
        mixed = batcher.predict_proba(["bad plot", "fun", "good film"])
        np.testing.assert_array_equal(mixed, clf.predict_proba(["bad plot", "fun", "good film"]))
        batcher.predict_proba(["bad plot"])  # forgotten: the two used last are kept ("good film", "fun")
    assert inner.calls == [["good film", "bad plot"], ["fun"], ["bad plot"]]
    s = batcher.stats
    assert (s.texts, s.remembered, s.unique, s.rounds) == (6, 2, 4, 3)
    inner = Recording(clf)
    with BatchingClassifier(inner, remember=0) as batcher:
        batcher.predict_proba(["good film"])
        batcher.predict_proba(["good film"])
    assert inner.calls == [["good film"], ["good film"]]


def test_errors_reach_every_caller_and_a_closed_batcher_refuses(linear_bow):
    class Broken(Recording):
        def predict_proba(self, texts):
            raise RuntimeError("out of memory")

    with BatchingClassifier(Broken(linear_bow[1])) as batcher:
        with pytest.raises(RuntimeError, match="out of memory"):
            batcher.predict_proba(["good film"])
        assert batcher.labels == ["negative", "positive"] and batcher.predict_proba([]).shape == (0, 2)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.predict_proba(["good film"])


def test_results_keep_their_order_whatever_finishes_first(linear_bow):
    import time

    with BatchingClassifier(linear_bow[1]) as batcher:
        def slow_first(k):
            time.sleep(0.05 if k == 0 else 0.0)
            return k, float(batcher.predict_proba(["good film"] * (k + 1)).sum())

        out = list(explain_concurrently(batcher, slow_first, range(6), concurrency=3))
    assert [k for k, _ in out] == list(range(6)) and [v for _, v in out] == pytest.approx([k + 1.0 for k in range(6)])


@pytest.mark.parametrize("teacher,args", [("lime", {"num_samples": 60}), ("shap", {"max_evals": 40}),
                                          ("occlusion", {})])
def test_labels_do_not_depend_on_concurrency_exactly(tmp_path, linear_bow, teacher, args):
    """A classifier whose rows do not depend on their batch (the linear bag of words): the labels made 1, 4
    and 16 texts at a time through the shared classifier equal, bit for bit, those of the teacher run on
    the bare classifier one text at a time."""
    from plex.teachers import get_teacher

    _, clf = linear_bow
    texts = write_corpus(tmp_path / "c.csv", 24, seed=11)
    folders = {}
    for concurrency in (1, 4, 16):
        folders[concurrency] = tmp_path / f"labels-{concurrency}"
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier="linear-bow",
                              teacher=teacher, teacher_args=args, output=str(folders[concurrency]),
                              concurrency=concurrency, shard_size=10), classifier=clf, progress=False)
    bare = get_teacher(teacher, **args).explain(clf, texts, all_classes=True)
    for concurrency, folder in folders.items():
        rows = load_labels(folder)
        assert list(rows["text"]) == texts
        for row, a in zip(rows, bare):
            np.testing.assert_array_equal(np.asarray(row["scores"]), a.meta["all_scores"].astype(np.float32))
    speed = read_manifest(folders[16])["throughput"]
    assert speed["concurrency"] == 16 and speed["labelled"] == 24 and speed["texts_per_second"] > 0
    calls = speed["classifier"]
    assert calls["unique"] <= calls["texts"] and calls["texts_per_second"] > 0 and calls["rounds"] < calls["requests"]


def test_labels_of_a_transformer_match_to_float_tolerance(tmp_path, tiny_bert_path, tiny_classifier):
    """A Hugging Face model pads each forward batch to its longest text, so a text's probabilities can move in
    the last float32 bits with the batch around it: labels made 8 texts at a time match one at a time to 1e-5."""
    write_corpus(tmp_path / "c.csv", 12, seed=12)
    out = {}
    for concurrency in (1, 8):
        out[concurrency] = tmp_path / f"l{concurrency}"
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(tiny_bert_path),
                              teacher="lime", teacher_args={"num_samples": 40}, output=str(out[concurrency]),
                              concurrency=concurrency), classifier=tiny_classifier, progress=False)
    one, many = load_labels(out[1]), load_labels(out[8])
    for a, b in zip(one, many):
        np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-5)
        np.testing.assert_allclose(a["probs"], b["probs"], atol=1e-6)
    with pytest.raises(Exception, match="concurrency"):
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(tiny_bert_path),
                              teacher="lime", output=str(tmp_path / "bad"), concurrency=0),
                  classifier=tiny_classifier, progress=False)


def _label_cfg(tmp_path, model, out, **kw):
    settings = {"teacher_args": {"num_samples": 40}, "shard_size": 2, **kw}
    return LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(model), teacher="lime",
                       output=str(out), **settings)


@pytest.mark.parametrize("devices, per_device", [(2, 1), (1, 2)])
def test_two_cpu_ranks_label_like_one_process(tmp_path, tiny_bert_path, tiny_classifier, devices, per_device):
    """Lightning Fabric, two CPU processes (gloo), as two devices or as two processes sharing one: each labels
    every other shard, rank 0 consolidates; the rows equal a single process's (to the transformer's float
    tolerance, see above) with none lost or doubled."""
    write_corpus(tmp_path / "c.csv", 11, seed=13)
    run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "one"), classifier=tiny_classifier, progress=False)
    result = run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "two", devices=devices, accelerator="cpu",
                                  strategy="ddp_spawn", processes_per_device=per_device), progress=False)
    assert result.rows == result.added == 11
    one, two = load_labels(tmp_path / "one"), load_labels(tmp_path / "two")
    assert list(two["idx"]) == list(range(11)) and list(two["text"]) == list(one["text"])
    for a, b in zip(one, two):
        np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-5)
    manifest = read_manifest(tmp_path / "two")
    assert manifest["rows_done"] == 11 and manifest["throughput"]["processes"] == 2
    assert manifest["throughput"]["classifier"]["unique"] > 0
    with pytest.raises(Exception, match="every process loads the classifier"):
        run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "x", devices=2), classifier=tiny_classifier)


def test_processes_per_device_settings(tmp_path, tiny_bert_path):
    """Processes sharing GPUs: local rank r of k per GPU runs on GPU r // k; settings that cannot work say so in
    one line before anything is launched."""
    import torch

    from plex.config import ConfigError
    from plex.distributed import check_launch, rank_device, several

    assert [rank_device(r, 4) for r in (0, 3, 4, 7, 8)] == ["cuda:0", "cuda:0", "cuda:1", "cuda:1", "cuda:2"]
    assert several(1, 1, 2) and not several(1, 1, 1)
    with pytest.raises(ConfigError, match="processes-per-device must be a positive integer"):
        check_launch(1, 1, "ddp", 0)
    with pytest.raises(ConfigError, match="as a count"):
        check_launch("0,1", 1, "ddp", 2)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees none"):
            run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "g", processes_per_device=2, accelerator="gpu"),
                      progress=False)


def test_killed_ranks_resume_without_losing_or_doubling_a_row(tmp_path, tiny_bert_path, tiny_classifier):
    """`plex label --devices 2 --strategy ddp` (Lightning re-runs the command in a second process), killed with
    SIGKILL once some shards are written, then run again: the rows are complete, once each, and equal one
    process's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    write_corpus(tmp_path / "c.csv", 24, seed=14)
    out = tmp_path / "labels"
    command = [sys.executable, "-m", "plex", "label", "--dataset", str(tmp_path / "c.csv"), "--label-column", "null",
               "--classifier", str(tiny_bert_path), "--teacher-args", "{num_samples: 1500}", "--shard-size", "1",
               "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    job = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    written = 0
    while time.monotonic() < deadline and job.poll() is None:
        written = len(list((out / "shards").glob("shard-*"))) if (out / "shards").is_dir() else 0
        if written >= 3:
            break
        time.sleep(0.02)
    assert job.poll() is None, job.stderr.read().decode()[-2000:]  # still running: killed mid-way
    os.killpg(job.pid, signal.SIGKILL)  # both ranks
    job.wait()
    assert 3 <= written < 24
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = load_labels(out)
    assert list(rows["idx"]) == list(range(24))  # nothing lost, nothing doubled
    run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "one", teacher_args={"num_samples": 1500},
                         shard_size=24), classifier=tiny_classifier, progress=False)
    for a, b in zip(load_labels(tmp_path / "one"), rows):
        assert a["text"] == b["text"]
        np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-5)


def test_bench_label_measures_library_plex_and_forward(tmp_path, tiny_bert_path, capsys):
    """`plex bench label` on a tiny model: every column measured, and the counts behind the ratios are the
    runs' own (LIME's library asks for num_samples texts per text; plex runs each distinct text once)."""
    import dataclasses

    from plex.cli import main
    from plex.evaluate.label_bench import bench_label, format_label_bench, parse_teacher

    write_corpus(tmp_path / "c.csv", 6, seed=15)
    texts = [line for line in (tmp_path / "c.csv").read_text().splitlines()[1:]]
    rows = bench_label(str(tiny_bert_path), texts, ["lime:50", "shap:40", "occlusion", "gsmile:8"], processes=1,
                       concurrency=4, batch_size=16, work=tmp_path / "work")
    lime, shap, occlusion, gsmile = rows
    # gSMILE has no library: it is compared with plex label one text at a time, and its embedder's rounds are kept
    assert gsmile.library_texts_per_s is None and gsmile.serial_texts_per_s > 0 and gsmile.concurrent_over_serial > 0
    assert gsmile.models["token embedder"]["unique"] > 0 and lime.serial_texts_per_s is None
    printed = format_label_bench(rows)  # (d) of a teacher with models of its own still runs them
    assert "which still runs the teacher's own models" in next(line for line in printed.splitlines()
                                                               if line.startswith("gsmile:8: (c)"))
    assert lime.forward_seconds < 10 and "lime:50: note: (c) took" in printed  # seconds on a tiny model: flagged
    assert "note:" not in format_label_bench([dataclasses.replace(lime, forward_seconds=30.0)])
    assert lime.library_classifier_texts_per_s / lime.library_texts_per_s == pytest.approx(50)  # 50 per text
    assert 0 < lime.unique_fraction <= 1 and 0 < lime.mean_forward_batch <= 16
    assert lime.plex_over_library > 0 and lime.plex_over_forward > 0 and lime.forward_texts_per_s > 0
    # (d): the same labelling with every answer replayed is the teacher's own work, cheaper than (b)
    assert 0 < lime.teacher_seconds < lime.texts / lime.plex_texts_per_s and 0 < lime.forward_share < 1
    assert f"(d) alone {lime.teacher_ceiling:.1f} texts/s, the most one process can label" in printed
    assert lime.rounds >= 1 and lime.rounds_seconds > 0  # (c'): the repeat's rounds replayed, beside its own (c)
    assert lime.rounds_forward_seconds == lime.forward_seconds  # one repeat: its (c) is the median
    assert shap.library_texts_per_s > 0 and occlusion.library_texts_per_s is None
    assert parse_teacher("lime:5000") == ("lime", {"num_samples": 5000})
    assert parse_teacher("gsmile:12") == ("gsmile", {"num_samples": 12})
    for bad in ("ig", "occlusion:3", "lime:many"):
        with pytest.raises(ValueError, match="lime:N"):
            parse_teacher(bad)
    assert main(["bench", "label", "--classifier", str(tiny_bert_path), "--dataset", str(tmp_path / "c.csv"),
                 "--label-n", "4", "--label-teachers", "lime:30", "--label-processes", "1", "--label-repeats", "2"]) == 0
    printed = capsys.readouterr().out
    assert "(b)/(a)" in printed and "lime:30" in printed and "2 repeats" in printed
    assert "the most one process can label on any device" in printed


def test_bench_label_scales_over_processes_sharing_one_device(tmp_path, tiny_bert_path, capsys):
    """The bench's scaling on a machine with one device: 1 and 2 processes, the two sharing it."""
    from plex.cli import main

    write_corpus(tmp_path / "c.csv", 8, seed=18)
    assert main(["bench", "label", "--classifier", str(tiny_bert_path), "--dataset", str(tmp_path / "c.csv"),
                 "--label-n", "8", "--label-teachers", "occlusion", "--label-processes", "2", "--label-share-device",
                 "--accelerator", "cpu"]) == 0
    printed = capsys.readouterr().out
    scaling = next(line for line in printed.splitlines() if line.startswith("scaling of (b)"))
    import re

    speeds = {int(k): float(v) for k, v in re.findall(r"(\d+): ([\d.]+) texts/s", scaling)}
    assert "sharing one device" in scaling and set(speeds) == {1, 2} and min(speeds.values()) > 0


def test_explain_over_two_cpu_ranks_writes_what_one_process_writes(tmp_path, tiny_bert_path, tiny_classifier):
    from plex.config import StudentTrainConfig
    from plex.student.infer import explain_file
    from plex.student.train import train_student

    write_corpus(tmp_path / "c.csv", 10, seed=16)
    run_label(_label_cfg(tmp_path, tiny_bert_path, tmp_path / "labels"), classifier=tiny_classifier, progress=False)
    train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "student"), max_epochs=1,
                                     accelerator="cpu", logger="none"), progress=False)
    lines = write_corpus(tmp_path / "more.csv", 23, seed=17)
    (tmp_path / "in.txt").write_text("\n".join(lines[:5] + [""] + lines[5:]) + "\n")  # an empty line keeps its place
    explain_file(tmp_path / "student", tmp_path / "in.txt", tmp_path / "one.jsonl", batch_size=4, device="cpu",
                 progress=False)
    explain_file(tmp_path / "student", tmp_path / "in.txt", tmp_path / "two.jsonl", batch_size=4, devices=2,
                 accelerator="cpu", strategy="ddp_spawn", progress=False)
    assert (tmp_path / "two.jsonl").read_text() == (tmp_path / "one.jsonl").read_text()


def _recording_lm():
    from plex.lm import LanguageModel

    class Recording(LanguageModel):
        def __init__(self):
            super().__init__()
            self.calls = []

        def identity(self):
            return {"kind": "recording"}

        def _generate(self, prompts, max_new_tokens, temperature, stop, seed):
            self.calls.append(("generate", [m[-1]["content"] for m in prompts]))
            if any("boom" in m[-1]["content"] for m in prompts):
                raise RuntimeError("the server is down")
            return [m[-1]["content"].upper()[:max_new_tokens] for m in prompts]

        def _log_likelihood(self, texts):
            self.calls.append(("log_likelihood", list(texts)))
            return [(-float(len(t)), len(t.split())) for t in texts]

    return Recording()


def test_language_model_calls_of_concurrent_explanations_share_rounds():
    """Each method (with its settings) gets one call per round, each distinct prompt once; every caller gets
    its own answers; another setting is another call; a model's error reaches its callers only."""
    from plex.batching import Batcher
    from plex.lm.batching import BatchingLM

    inner = _recording_lm()
    asks = [["a b", "c"], ["c", "d e f"], ["a b"]]
    got, scores, other = [None] * 3, [None] * 3, [None] * 3
    with Batcher(max_wait=5.0) as batcher:
        lm = BatchingLM(inner, batcher)
        assert lm.identity() == {"kind": "recording"}
        gate = threading.Barrier(len(asks))

        def ask(k):
            with batcher.client():
                gate.wait()
                got[k] = lm.generate(asks[k], max_new_tokens=8)
                scores[k] = lm.log_likelihood(asks[k])
                other[k] = lm.generate(asks[k][:1], max_new_tokens=2)

        threads = [threading.Thread(target=ask, args=(k,)) for k in range(len(asks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert got == [["A B", "C"], ["C", "D E F"], ["A B"]]
        assert scores == [[(-3.0, 2), (-1.0, 1)], [(-1.0, 1), (-5.0, 3)], [(-3.0, 2)]]
        assert other == [["A "], ["C"], ["A "]]
        methods = [(m, sorted(texts)) for m, texts in inner.calls]
        assert methods == [("generate", ["a b", "c", "d e f"]), ("log_likelihood", ["a b", "c", "d e f"]),
                           ("generate", ["a b", "c"])]
        stats = batcher.stats["lm Recording.generate"]
        assert (stats.requests, stats.texts, stats.unique, stats.rounds) == (6, 8, 5, 2)
        # an error reaches the caller that asked; the model's cache keeps what it computed
        with pytest.raises(RuntimeError, match="server is down"):
            lm.generate(["boom"])
        assert lm.generate(["a b"], max_new_tokens=8) == ["A B"] and len(inner.calls) == 4


def test_lime_llm_labels_do_not_depend_on_concurrency(tmp_path, linear_bow, tiny_lm_path, monkeypatch):
    """LIME-LLM with a real (tiny, random) causal LM: its generate, next-token and fluency calls, its sentence
    encoder and its GloVe search go through the batcher of the classifier. Explanations made 6 texts at a time
    choose the same rewrites as one at a time, and their scores match to 1e-6 (the bag-of-words classifier is
    exact; the LM's and the encoder's outputs may move in the last float32 bits with the batch around them)."""
    from plex.batching import Batcher
    from plex.teachers import get_teacher

    _, clf = linear_bow
    texts = write_corpus(tmp_path / "c.csv", 10, seed=21)
    args = {"num_samples": 8, "lm": str(tiny_lm_path), "max_new_tokens": 3}
    teacher = get_teacher("lime-llm", **args)
    bare = teacher.explain(clf, texts, all_classes=True)
    with Batcher() as batcher:
        shared = BatchingClassifier(clf, batcher=batcher)
        batched = teacher.with_batcher(batcher)
        assert batched.config() == teacher.config()
        together = list(explain_concurrently(
            batcher, lambda t: batched.explain(shared, [t], all_classes=True)[0], texts, concurrency=6))
    for ref, got in zip(bare, together):
        assert [(s["position"], s["replacement"], s["kind"]) for s in got.meta["samples"]] == \
            [(s["position"], s["replacement"], s["kind"]) for s in ref.meta["samples"]]
        np.testing.assert_allclose(got.meta["all_scores"], ref.meta["all_scores"], atol=1e-6)
    generate = next(v for k, v in batcher.stats.items() if k.endswith(".generate"))
    assert generate.rounds < generate.requests  # calls of several texts shared a round
    assert {"classifier", "sentence encoder", "glove neighbours"} <= set(batcher.stats)

    from plex.lm.local import LocalLM

    rows_run, pad = [], LocalLM._pad  # the rows of every forward pass the LM runs (generate's included)
    monkeypatch.setattr(LocalLM, "_pad", lambda self, rows, side: rows_run.append(len(rows)) or pad(self, rows, side))
    folder = tmp_path / "labels"  # plex label does the same, with the LM at 3 texts per forward pass
    run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier="linear-bow",
                          teacher="lime-llm", teacher_args=args, output=str(folder), concurrency=6, lm_batch_size=3),
              classifier=clf, progress=False)
    for row, ref in zip(load_labels(folder), bare):
        np.testing.assert_allclose(np.asarray(row["scores"]), ref.meta["all_scores"], atol=1e-6)
    speed = read_manifest(folder)["throughput"]
    assert speed["concurrency"] == 6 and {"sentence encoder", "glove neighbours"} <= set(speed["models"])
    lm_calls = [m for name, m in speed["models"].items() if name.startswith("lm ")]
    assert lm_calls and all(m["mean_forward_batch"] <= 3 for m in lm_calls)
    assert max(m["mean_forward_batch"] for m in lm_calls) > 2  # rounds filled the 3 (8 samples per text)
    # the forward passes the LM ran: at most 3 rows, nearly all full, no more than the batcher counted
    assert max(rows_run) == 3 and sum(rows_run) > 2.5 * len(rows_run)
    assert sum(rows_run) <= sum(m["unique"] for m in lm_calls)
    assert len(rows_run) <= sum(m["forward_batches"] for m in lm_calls)
    with pytest.raises(Exception, match="lm-batch-size must be a positive integer"):
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, teacher="lime-llm",
                              teacher_args=args, output=str(tmp_path / "bad"), lm_batch_size=0), classifier=clf)


def test_gsmile_labels_do_not_depend_on_concurrency(tmp_path, linear_bow):
    _, clf = linear_bow
    write_corpus(tmp_path / "c.csv", 8, seed=22)
    out = {}
    for concurrency in (1, 4):
        out[concurrency] = tmp_path / f"g{concurrency}"
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier="linear-bow",
                              teacher="gsmile", teacher_args={"num_samples": 12}, output=str(out[concurrency]),
                              concurrency=concurrency), classifier=clf, progress=False)
    for a, b in zip(load_labels(out[1]), load_labels(out[4])):
        np.testing.assert_allclose(np.asarray(a["scores"]), np.asarray(b["scores"]), atol=1e-6)
    assert "token embedder" in read_manifest(out[4])["throughput"]["models"]


def test_a_tokenizer_shared_by_threads_keeps_each_calls_settings(tiny_bert_path):
    """A fast tokenizer's padding and truncation settings live in its Rust state: an explanation asking how many
    words a text keeps (no padding) while the batcher's worker pads a forward batch made the batch ragged
    ("Unable to create tensor"). Every call goes through one lock."""
    from plex.classifiers.hf import HFClassifier

    clf = HFClassifier.from_pretrained(tiny_bert_path, device="cpu", batch_size=16)
    rng = np.random.default_rng(0)
    words = "good bad film plot great dull fun movie actor scene".split()
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) for _ in range(400)]
    stop, errors, kept = threading.Event(), [], []

    def ask():
        while not stop.is_set():
            try:
                kept.append(clf.visible_words([(0, 4), (5, 9)], "good film"))
            except Exception as err:  # noqa: BLE001 - any error is the failure
                errors.append(err)

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for t in askers:
        t.start()
    try:
        probs = [clf.predict_proba(texts) for _ in range(2)]
    finally:
        stop.set()
        for t in askers:
            t.join()
    assert not errors and kept and set(kept) == {2}
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-6)
    np.testing.assert_allclose(probs[0][:8], clf.predict_proba(texts[:8]), atol=1e-5)

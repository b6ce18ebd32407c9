"""The PLEX student: learns known mappings, round-trips checkpoints, explains any class."""

import dataclasses
from dataclasses import dataclass

import lightning as L
import numpy as np
import pytest
import torch

import plex
from plex.config import LabelConfig, StudentTrainConfig
from plex.label import run_label
from plex.student.checkpoint import CheckpointError
from plex.student.data import LabelsDataModule
from plex.student.embed import Embedder, EmbeddingTable
from plex.student.model import ScorerConfig, SiameseScorer
from plex.student.module import PlexModule, listnet, normalise, pairwise
from plex.student.train import train_student
from plex.teachers.base import Teacher

from conftest import LinearBagOfWords, make_tiny_bert


def synthetic_table(fn, n_texts=240, n_words=10, d=16, seed=0):
    """Random word/sentence vectors and teacher scores that are a fixed function of them."""
    rng = np.random.default_rng(seed)
    words = rng.normal(size=(n_texts * n_words, d)).astype(np.float32)
    sentences = rng.normal(size=(n_texts, d)).astype(np.float32)
    table = EmbeddingTable(words, np.ones(len(words), bool), sentences, np.arange(0, len(words) + 1, n_words))
    scores = [fn(words[i * n_words:(i + 1) * n_words], sentences[i]).astype(np.float32) for i in range(n_texts)]
    targets = [int(np.argmax(s.sum(axis=1))) for s in scores]
    return table, scores, targets


def fit(table, scores, targets, mode, epochs=40, **shape):
    L.seed_everything(0)
    d = table.words.shape[1]
    scorer = SiameseScorer(ScorerConfig(input_dim=d, num_labels=scores[0].shape[0], mode=mode, hidden_dim=64,
                                        proj_dim=32, dropout=0.0, **shape))
    module = PlexModule(scorer, lr=3e-3)
    data = LabelsDataModule(table, scores, targets, val_fraction=0.2, batch_size=32)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    return trainer.validate(module, datamodule=data, verbose=False)[0]


def test_conditional_scorer_learns_a_known_mapping():
    rng = np.random.default_rng(1)
    a = rng.normal(size=16)
    A = rng.normal(size=(8, 16)) / 4

    def fn(w, s):  # class 1: a word term plus a word-sentence interaction; class 0: its negation
        s1 = 0.5 * w @ a + (w @ A.T) @ (A @ s)
        return np.stack([-s1, s1])

    metrics = fit(*synthetic_table(fn, n_texts=1000), mode="conditional", epochs=40)
    assert metrics["val/spearman"] >= 0.95
    assert metrics["val/top3"] >= 0.8


def test_context_head_learns_what_depends_on_the_other_words():
    """A word's score is scaled, and flipped, by a property of the whole text (how negated it is, say),
    which the sentence vector here does not carry: the frozen head cannot learn it, the context head can."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=16), rng.normal(size=16)

    def fn(w, s):
        s1 = (w @ a) * (w @ b).mean()
        return np.stack([-s1, s1])

    data = synthetic_table(fn, n_texts=600)
    frozen = fit(*data, mode="conditional", epochs=30)
    context = fit(*data, mode="conditional", epochs=30, context_layers=1, context_heads=1)
    assert frozen["val/spearman"] < 0.4  # measured 0.23
    assert context["val/spearman"] >= 0.65 and context["val/spearman"] > frozen["val/spearman"] + 0.3  # 0.74


def test_context_head_ignores_padding():
    torch.manual_seed(0)
    scorer = SiameseScorer(ScorerConfig(input_dim=8, num_labels=2, proj_dim=16, hidden_dim=16, context_layers=2)).eval()
    words, sentence = torch.randn(1, 5, 8), torch.randn(1, 8)
    classes = torch.tensor([[0, 1]])
    alone = scorer.explain_scores(sentence, words, classes, torch.ones(1, 5, dtype=torch.bool))
    padded = torch.cat([words, torch.randn(1, 3, 8)], dim=1)  # three padding positions with junk in them
    mask = torch.tensor([[True] * 5 + [False] * 3])
    batched = scorer.explain_scores(sentence, padded, classes, mask)
    assert torch.allclose(batched[..., :5], alone, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of context_heads"):
        SiameseScorer(ScorerConfig(input_dim=8, num_labels=2, proj_dim=10, context_layers=1, context_heads=4))


def test_paper_scorer_learns_a_cosine_mapping():
    A = np.random.default_rng(2).normal(size=(8, 16))

    def fn(w, s):
        pw, ps = w @ A.T, s @ A.T
        cos = pw @ ps / (np.linalg.norm(pw, axis=1) * np.linalg.norm(ps))
        return np.stack([cos, -cos])

    table, scores, _ = synthetic_table(fn)
    metrics = fit(table, scores, [0] * len(scores), mode="paper")  # class 0 is the explained class
    assert metrics["val/spearman"] >= 0.9


def test_loss_terms():
    mask = torch.tensor([[True, True, True, False]])
    scores = torch.tensor([[[2.0, -4.0, 1.0, 9.0]]])
    norm, scale, shift = normalise(scores, mask)
    assert torch.allclose(norm, torch.tensor([[[0.5, -1.0, 0.25, 0.0]]])) and scale.item() == 4.0
    assert shift.item() == 0.0
    good = listnet(norm, norm, mask, tau=0.1)
    bad = listnet(-norm, norm, mask, tau=0.1)
    assert bad > good  # the ranking term prefers the teacher's order
    good, bad = pairwise(norm, norm, mask, tau=0.1), pairwise(-norm, norm, mask, tau=0.1)
    assert bad > good and good < 0.01  # in the teacher's order, with margins of 0.25 and more: nearly no loss
    # one pair by hand: targets (1, 0), predictions (0, 0.5): softplus(0.5 / tau) weighted by the gap
    one = pairwise(torch.tensor([[[0.0, 0.5]]]), torch.tensor([[[1.0, 0.0]]]), torch.tensor([[True, True]]), 0.1)
    assert one.item() == pytest.approx(float(torch.nn.functional.softplus(torch.tensor(5.0))))
    padding = pairwise(torch.tensor([[[0.0, 9.0]]]), torch.tensor([[[1.0, 0.0]]]), torch.tensor([[True, False]]), 0.1)
    assert padding.item() == 0.0


@dataclass
class TrueLinear(Teacher):
    """The closed-form attribution of a linear bag-of-words model: each word's logit weight,
    centred over classes (softmax ignores a shared shift)."""

    name = "true-linear"

    def attribute(self, classifier, seg, targets):
        W = classifier.fn.weights
        rows = np.array([W.get(w.lower(), np.zeros(classifier.num_labels)) for w in seg.words])
        rows = rows - rows.mean(axis=1, keepdims=True)
        return rows[:, targets].T, {}


VOCAB = "good bad great awful fun dull film plot music slow fast calm loud".split()


def write_corpus(path, n, seed):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(VOCAB, size=rng.integers(4, 9))) for _ in range(n)]
    path.write_text("text\n" + "\n".join(lines) + "\n")
    return lines


@pytest.fixture(scope="module")
def three_class(tmp_path_factory):
    rng = np.random.default_rng(3)
    weights = {w: rng.normal(0, 1.0, size=3) for w in VOCAB}
    clf = plex.CallableClassifier(LinearBagOfWords(weights, num_labels=3), labels=["a", "b", "c"], name="bow3")
    root = tmp_path_factory.mktemp("three")
    encoder = make_tiny_bert(root / "encoder")
    write_corpus(root / "train.csv", 300, seed=4)
    run_label(LabelConfig(dataset=str(root / "train.csv"), label_column=None, classifier="bow3",
                          teacher="true-linear", output=str(root / "labels"), shard_size=100),
              classifier=clf, teacher=TrueLinear(), progress=False)
    cfg = StudentTrainConfig(labels=str(root / "labels"), output=str(root / "student"), encoder=str(encoder),
                             layer=0, pooling="mean", max_epochs=60, patience=60, lr=3e-3, hidden_dim=128,
                             proj_dim=64, dropout=0.0, accelerator="cpu", logger="none")
    result = train_student(cfg, classifier=clf, progress=False)
    return clf, weights, result, root


def test_conditional_mode_explains_a_non_predicted_class(three_class):
    clf, weights, result, root = three_class
    student = plex.Plex.from_pretrained(result.checkpoint, classifier=clf, device="cpu")
    texts = write_corpus(root / "held_out.csv", 20, seed=99)
    probs = clf.predict_proba(texts)
    least_likely = probs.argmin(axis=1)  # never the predicted class
    rhos = []
    for text, t, a in zip(texts, least_likely, student.explain(texts, target=least_likely.tolist())):
        assert a.target == t != probs[texts.index(text)].argmax()
        truth = np.array([weights[w][t] - weights[w].mean() for w in a.words])
        if np.ptp(truth) > 0:
            from scipy.stats import spearmanr

            rhos.append(spearmanr(a.scores, truth).statistic)
    assert np.mean(rhos) >= 0.9, rhos


def tiny_labels(tmp_path, classifier_path, classifier, n: int, seed: int, samples: int):
    """LIME labels of ``n`` random sentences, for the tiny random BERT, in ``tmp_path / "labels"``."""
    write_corpus(tmp_path / "c.csv", n, seed=seed)
    run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(classifier_path),
                          teacher="lime", teacher_args={"num_samples": samples}, output=str(tmp_path / "labels")),
              classifier=classifier, progress=False)


@pytest.mark.parametrize("context_layers", [0, 2])
def test_checkpoint_round_trip_and_mismatch(tmp_path, tiny_bert_path, tiny_classifier, context_layers):
    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=12, seed=5, samples=20)
    cfg = StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "student"), max_epochs=2,
                             accelerator="cpu", logger="csv", context_layers=context_layers)
    result = train_student(cfg, progress=False)
    files = {p.name for p in result.checkpoint.iterdir()}
    assert {"model.safetensors", "config.json", "README.md"} <= files
    texts = ["good film , good music", "", "bad plot"]
    loaded = plex.Plex.from_pretrained(result.checkpoint, device="cpu")
    assert loaded.scorer.config.context_layers == context_layers
    assert (loaded.scorer.context is not None) == bool(context_layers)
    in_memory = plex.Plex(result.scorer.eval(), loaded.embedder, loaded.config)  # the scorer training returned
    first = in_memory.explain(texts)
    again = loaded.explain(texts, batch_size=1)
    for a, b in zip(first, again):
        assert a.words == b.words
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    assert len(first[1].scores) == 0 and first[0].meta["probs"].shape == (2,)
    other = make_tiny_bert(tmp_path / "other", seed=1)
    with pytest.raises(CheckpointError, match="use the same classifier"):
        plex.Plex.from_pretrained(result.checkpoint, classifier=str(other), device="cpu")


def test_plex_train_cli_fast_dev_run(tmp_path, tiny_bert_path, tiny_classifier):
    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=6, seed=6, samples=10)
    from plex.cli import main

    assert main(["train", "--labels", str(tmp_path / "labels"), "-o", str(tmp_path / "s"), "--fast-dev-run",
                 "true", "--accelerator", "cpu", "--mode", "paper"]) == 0
    assert (tmp_path / "s" / "model.safetensors").is_file()


def test_plex_explain_writes_jsonl_and_escaped_html(tmp_path, tiny_bert_path, tiny_classifier):
    import json

    from plex.cli import main

    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=6, seed=7, samples=10)
    train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "s"), max_epochs=1,
                                     accelerator="cpu", logger="none"), progress=False)
    texts = ["good film <script>alert(1)</script>", "", "bad & slow plot"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    assert main(["explain", "--checkpoint", str(tmp_path / "s"), "--input", str(tmp_path / "in.txt"),
                 "-o", str(tmp_path / "out.jsonl"), "--html", str(tmp_path / "out.html"), "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["text"] for r in rows] == texts
    assert [r["empty"] for r in rows] == [False, True, False]
    for r in rows:
        assert len(r["words"]) == len(r["scores"]) == len(r["spans"])
        if r["empty"]:  # a blank line is not run through the classifier: no words, no prediction
            assert r["words"] == [] and r["predicted"] is None and r["probs"] is None
            continue
        assert r["predicted_label"] in ("class_0", "class_1") and abs(sum(r["probs"]) - 1) < 1e-5
    page = (tmp_path / "out.html").read_text()
    i = page.find("<script>")
    assert i < 0, page[max(0, i - 400):i + 100]
    assert "&lt;" in page and "http" not in page


def test_wandb_logger_works_offline(tmp_path, monkeypatch, tiny_bert_path, tiny_classifier):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=6, seed=8, samples=10)
    result = train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "s"),
                                              max_epochs=2, accelerator="cpu", logger="wandb"), progress=False)
    runs = list((result.checkpoint / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_labels_folder_with_cached_embeddings_can_be_extended(tmp_path, tiny_bert_path, tiny_classifier):
    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=6, seed=9, samples=10)
    train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "s"), max_epochs=1,
                                     accelerator="cpu", logger="none"), progress=False)
    assert list((tmp_path / "labels" / "embeddings").glob("*.safetensors"))
    # the same labelling again (e.g. a larger --limit) works beside the student's embedding cache
    result = run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None,
                                   classifier=str(tiny_bert_path), teacher="lime", teacher_args={"num_samples": 10},
                                   output=str(tmp_path / "labels")), classifier=tiny_classifier, progress=False)
    assert result.rows == 6 and result.added == 0


def test_bad_training_settings_fail_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a labels folder"):
        train_student(StudentTrainConfig(labels=str(tmp_path / "nowhere")))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "manifest.json").write_text("{}")
    with pytest.raises(ValueError, match="--mode must be one of conditional, paper"):
        train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), mode="papr"))
    with pytest.raises(ValueError, match="--logger"):
        train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), logger="tensorboard"))
    with pytest.raises(ValueError, match="--context-layers must be 0"):
        train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), context_layers=-1))
    with pytest.raises(ValueError, match="multiple of --context-heads"):
        train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), context_layers=1, proj_dim=30))


def test_pool_words_means_subwords_and_zeroes_unseen_words():
    from plex.classifiers.hf import TokenStates
    from plex.student.embed import pool_words

    hidden = np.array([[9, 9], [1, 2], [3, 4], [5, 6], [7, 7]], dtype=np.float32)  # [CLS] w0 w0 w1 [SEP]
    states = TokenStates(hidden, np.zeros((5, 2)), np.array([-1, 0, 0, 1, -1]))
    v = pool_words(states, n_words=3, pooling="cls")
    np.testing.assert_allclose(v.words, [[2, 3], [5, 6], [0, 0]])
    assert v.visible.tolist() == [True, True, False]  # word 2 was truncated away
    np.testing.assert_allclose(v.sentence, [9, 9])
    np.testing.assert_allclose(pool_words(states, 3, pooling="mean").sentence, [3, 4])


@pytest.fixture(scope="module")
def paper_student(tmp_path_factory, tiny_bert_path, tiny_classifier):
    """A paper-mode student of the tiny BERT, trained for one epoch on LIME labels."""
    root = tmp_path_factory.mktemp("paper")
    tiny_labels(root, tiny_bert_path, tiny_classifier, n=6, seed=10, samples=10)
    result = train_student(StudentTrainConfig(labels=str(root / "labels"), output=str(root / "s"), max_epochs=1,
                                              mode="paper", accelerator="cpu", logger="none"), progress=False)
    return result.checkpoint, root


PAPER_TEXTS = ["good film , good music", "bad plot", "a slow and dull story", "great acting", "the end"]


def test_paper_student_explains_only_the_predicted_class(paper_student, tiny_classifier):
    checkpoint, _ = paper_student
    student = plex.Plex.from_pretrained(checkpoint, classifier=tiny_classifier, device="cpu")
    assert student.mode == "paper"
    predicted = [int(p) for p in tiny_classifier.predict(PAPER_TEXTS)]
    plain = student.explain(PAPER_TEXTS)
    # a target equal to the prediction is fine, and gives the same explanation
    for a, b in zip(plain, student.explain(PAPER_TEXTS, target=predicted, batch_size=2)):
        assert a.target == b.target
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    with pytest.raises(ValueError, match=r"paper mode.*all_classes=True.*plex train --mode conditional"):
        student.explain(PAPER_TEXTS, all_classes=True)
    # one text asked for the other class: refused, naming that text
    other = list(predicted)
    other[3] = 1 - other[3]
    with pytest.raises(ValueError, match=rf"text #4 is asked for class {other[3]} .*predicted class is "
                                         rf"{predicted[3]}.*target=None.*--mode conditional") as err:
        student.explain(PAPER_TEXTS, target=other)
    assert "\n" not in str(err.value)
    # one class for every text: refused at the first text predicted otherwise
    k = 1 - predicted[2]
    first = min(i for i, p in enumerate(predicted) if p != k)
    with pytest.raises(ValueError, match=rf"text #{first + 1} is asked for class {k} "):
        student.explain(PAPER_TEXTS, target=k)
    with pytest.raises(ValueError, match="paper mode"):
        student.explain(PAPER_TEXTS[2], target=np.int64(k))


def test_plex_explain_target_refused_for_a_paper_student(paper_student, tiny_classifier, capsys):
    from plex.cli import main
    from plex.student.infer import explain_file

    checkpoint, root = paper_student
    texts = ["", *PAPER_TEXTS]  # an empty first line: the texts are numbered as in the input
    (root / "in.txt").write_text("\n".join(texts) + "\n")
    predicted = [int(p) for p in tiny_classifier.predict(PAPER_TEXTS)]
    k = 1 - predicted[0]
    number = 2 + min(i for i, p in enumerate(predicted) if p != k)
    out = root / "out.jsonl"
    assert main(["explain", "--checkpoint", str(checkpoint), "--input", str(root / "in.txt"), "-o", str(out),
                 "--device", "cpu", "--target", str(k)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("plex explain: error:")]
    assert len(lines) == 1 and not out.exists()  # one line (progress bars of the model loading aside)
    err = lines[0]
    assert err.startswith("plex explain: error: this student was trained in paper mode")
    assert f"text #{number} is asked for class {k} ('class_{k}')" in err and "plex train --mode conditional" in err
    with pytest.raises(ValueError, match=rf"text #{number} is asked for class {k} "):
        explain_file(checkpoint, root / "in.txt", out, device="cpu", progress=False, target=f"class_{k}")
    # the predicted class of every text, when they share one, is allowed
    same = [t for t, p in zip(PAPER_TEXTS, predicted) if p == predicted[0]]
    (root / "same.txt").write_text("\n".join(same) + "\n")
    done = explain_file(checkpoint, root / "same.txt", out, device="cpu", progress=False, target=predicted[0])
    assert [a.target for a in done] == [predicted[0]] * len(same)


def test_several_draws_per_text_resampled_or_averaged():
    from plex.student.data import LabelledTexts

    table, scores, targets = synthetic_table(lambda w, s: np.stack([w[:, 0], -w[:, 0]]), n_texts=4, n_words=3, d=4)
    draws = [np.stack([s, 3 * s]) for s in scores]  # two draws per text
    mean = LabelledTexts(table, draws, targets, np.arange(4), draws="mean")
    np.testing.assert_allclose(mean[1]["scores"], 2 * scores[1])
    torch.manual_seed(0)
    seen = {float(LabelledTexts(table, draws, targets, np.arange(4), draws="resample")[0]["scores"][0, 0]
                  / scores[0][0, 0]) for _ in range(40)}
    assert seen == {1.0, 3.0}  # each read is one whole draw, and both come up
    with pytest.raises(ValueError, match="resample, mean"):
        LabelledTexts(table, draws, targets, np.arange(4), draws="median")


def test_train_on_draws_of_another_seed_and_a_subset(tmp_path, tiny_bert_path, tiny_classifier):
    from plex.label import read_manifest

    for seed in (0, 1):
        write_corpus(tmp_path / "c.csv", 12, seed=5)
        run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(tiny_bert_path),
                              teacher="lime", teacher_args={"num_samples": 20, "seed": seed},
                              output=str(tmp_path / f"labels-{seed}")), classifier=tiny_classifier, progress=False)
    cfg = StudentTrainConfig(labels=str(tmp_path / "labels-0"), draws=[str(tmp_path / "labels-1")], max_texts=8,
                             output=str(tmp_path / "student"), max_epochs=2, accelerator="cpu", logger="none")
    result = train_student(cfg, progress=False)
    config = plex.Plex.from_pretrained(result.checkpoint, device="cpu").config
    assert config["draws"] == [str(tmp_path / "labels-1")]
    assert config["train_texts"] + config["val_texts"] == 8
    assert read_manifest(tmp_path / "labels-1")["settings"]["teacher"]["seed"] == 1
    # a draw at another budget is not a draw of the same teacher
    run_label(LabelConfig(dataset=str(tmp_path / "c.csv"), label_column=None, classifier=str(tiny_bert_path),
                          teacher="lime", teacher_args={"num_samples": 30, "seed": 2},
                          output=str(tmp_path / "labels-30")), classifier=tiny_classifier, progress=False)
    with pytest.raises(ValueError, match="draws must differ only in their seed"):
        train_student(dataclasses.replace(cfg, draws=[str(tmp_path / "labels-30")]), progress=False)
    with pytest.raises(FileNotFoundError, match="--draws"):
        train_student(dataclasses.replace(cfg, draws=[str(tmp_path / "nowhere")]), progress=False)


def test_target_normalisations_invert_exactly():
    from plex.student.model import denormalise

    mask = torch.tensor([[True, True, True, False]])
    scores = torch.tensor([[[2.0, -4.0, 1.0, 9.0]]])
    z, scale, shift = normalise(scores, mask, "zscore")
    mean, std = -1 / 3, float(np.std([2.0, -4.0, 1.0]))
    assert shift.item() == pytest.approx(mean) and scale.item() == pytest.approx(std)
    np.testing.assert_allclose(z[0, 0, :3].numpy(), (np.array([2.0, -4.0, 1.0]) - mean) / std, rtol=1e-6)
    assert z[0, 0, 3].item() == 0.0  # padding stays out
    back = denormalise(z, scale.log(), shift / scale)  # what the scale and shift heads are trained to predict
    torch.testing.assert_close(back[..., :3], scores[..., :3])
    raw, one, zero = normalise(scores, mask, "raw")
    assert torch.equal(raw[..., :3], scores[..., :3]) and one.item() == 1.0 and zero.item() == 0.0
    with pytest.raises(ValueError, match="maxabs, zscore or raw"):
        normalise(scores, mask, "rank")
    with pytest.raises(ValueError, match="paper mode"):
        SiameseScorer(ScorerConfig(input_dim=4, num_labels=2, mode="paper", target_norm="zscore"))


@pytest.mark.parametrize("how", ["zscore", "raw"])
def test_other_target_normalisations_learn_and_return_the_teachers_scale(how):
    """The same known mapping as above, learned from z-scored or raw targets; explanations come back on
    the teacher's scale (centre and spread included), not in normalised units."""
    rng = np.random.default_rng(1)
    a = rng.normal(size=16)

    def fn(w, s):
        s1 = 0.3 * (w @ a) + 0.5 + 0.2 * s[0]  # an offset per text, which z-scoring removes and a head puts back
        return np.stack([-s1, s1])

    table, scores, targets = synthetic_table(fn, n_texts=600)
    L.seed_everything(0)
    scorer = SiameseScorer(ScorerConfig(input_dim=16, num_labels=2, hidden_dim=64, proj_dim=32, dropout=0.0,
                                        target_norm=how))
    module = PlexModule(scorer, lr=3e-3)
    data = LabelsDataModule(table, scores, targets, val_fraction=0.2, batch_size=32)
    trainer = L.Trainer(max_epochs=30, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    assert trainer.validate(module, datamodule=data, verbose=False)[0]["val/spearman"] >= 0.9
    scorer.eval()
    i = data.val_indices[:40]
    n = 10
    words = torch.from_numpy(table.words.reshape(-1, n, 16)[i])
    sentence = torch.from_numpy(table.sentences[i])
    with torch.no_grad():
        got = scorer.explain_scores(sentence, words, torch.tensor([[0, 1]] * len(i))).numpy()
    want = np.stack([scores[j] for j in i])
    assert np.abs(got - want).mean() < 0.25 * np.abs(want).mean()  # on the teacher's scale, offsets included


def test_branch_starts_as_the_classifiers_top_layers(tiny_classifier):
    """Before training, a branch of k copied layers over the trunk's layer L-k reproduces the classifier's
    last layer exactly: the same word and sentence vectors as the frozen features of layer -1, and the
    same whatever the padding of the batch."""
    from plex.student.data import collate, token_item
    from plex.student.model import BranchScorer, branch_layer_stack
    from plex.words import segment

    texts = ["a good film with music", "bad", "calm loud fast plot , dull and slow music"]
    n = [len(segment(t)) for t in texts]
    total = len(branch_layer_stack(tiny_classifier.model))
    _, last = Embedder(tiny_classifier, layer=-1, pooling="cls")(texts)
    for k in range(1, total + 1):
        trunk = Embedder(tiny_classifier, layer=total - k, pooling="cls")
        scorer = BranchScorer(ScorerConfig(input_dim=trunk.dim, num_labels=2, branch_layers=k), tiny_classifier.model)
        scorer.eval()
        for batch in (texts, *[[t] for t in texts]):  # all together (padded), then one at a time
            _, states = trunk.tokens(batch)
            padded = collate([token_item(st.hidden, st.word_ids, len(segment(t))) for t, st in zip(batch, states)])
            with torch.no_grad():
                sentence, words = scorer.encode(padded["tokens"], padded["token_mask"], padded["word_ids"],
                                                padded["mask"].shape[1])
            for b, t in enumerate(batch):
                v = last[texts.index(t)]
                np.testing.assert_allclose(words[b, : n[texts.index(t)]].numpy(), v.words, atol=1e-5)
                np.testing.assert_allclose(sentence[b].numpy(), v.sentence, atol=1e-5)
        assert sum(p.numel() for p in scorer.layers.parameters()) == k * sum(
            p.numel() for p in tiny_classifier.model.bert.encoder.layer[0].parameters())
    with pytest.raises(ValueError, match="between 1 and"):
        BranchScorer(ScorerConfig(input_dim=32, num_labels=2, branch_layers=total + 1), tiny_classifier.model)


def test_branch_refuses_a_model_it_cannot_copy(tiny_lm_path):
    from transformers import AutoModelForCausalLM

    from plex.student.model import branch_layer_stack

    with pytest.raises(ValueError, match="use a context head instead"):
        branch_layer_stack(AutoModelForCausalLM.from_pretrained(tiny_lm_path))


@pytest.mark.parametrize("branch_layers", [1, -1])
def test_branch_student_trains_saves_reloads_and_explains(tmp_path, tiny_bert_path, tiny_classifier, branch_layers):
    tiny_labels(tmp_path, tiny_bert_path, tiny_classifier, n=12, seed=5, samples=20)
    cfg = StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "student"), max_epochs=2,
                             accelerator="cpu", logger="none", branch_layers=branch_layers, branch_lr=1e-3,
                             context_layers=0, target_norm="zscore")
    before = {k: v.clone() for k, v in tiny_classifier.model.state_dict().items()}
    result = train_student(cfg, progress=False)
    for k, v in tiny_classifier.model.state_dict().items():  # the classifier itself is never trained
        assert torch.equal(v, before[k]), k
    trained = result.scorer.layers[0].output.dense.weight
    k = 2 if branch_layers == -1 else 1
    original = tiny_classifier.model.bert.encoder.layer[2 - k].output.dense.weight
    assert not torch.equal(trained, original)  # the copy learned
    loaded = plex.Plex.from_pretrained(result.checkpoint, device="cpu")
    assert loaded.scorer.config.branch_layers == k and loaded.embedder.layer == 2 - k
    assert loaded.config["embedding"]["layer"] == 2 - k
    texts = ["good film , good music", "", "bad plot"]
    in_memory = plex.Plex(result.scorer.eval(), loaded.embedder, loaded.config)
    for a, b in zip(in_memory.explain(texts), loaded.explain(texts, batch_size=1)):
        assert a.words == b.words
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    every = loaded.explain(texts[0], all_classes=True)[0]
    assert every.meta["all_scores"].shape == (2, len(every.words))
    other = loaded.explain(texts[0], target=1 - every.target)[0]
    np.testing.assert_allclose(other.scores, every.meta["all_scores"][1 - every.target], atol=1e-5)
    assert "branch" in (result.checkpoint / "README.md").read_text()
    from plex.cli import main

    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")  # as a user would: plex explain and plex bench
    assert main(["explain", "--checkpoint", str(result.checkpoint), "--input", str(tmp_path / "in.txt"), "-o",
                 str(tmp_path / "out.jsonl"), "--device", "cpu"]) == 0
    import json

    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(rows[0]["scores"], loaded.explain(texts[0])[0].scores, atol=1e-5)
    assert main(["bench", "student", "--checkpoint", str(result.checkpoint), "--dataset", str(tmp_path / "c.csv"),
                 "--split", "train", "--n", "8", "--batch-sizes", "4", "--device", "cpu"]) == 0
    with pytest.raises(CheckpointError, match="branch student"):
        from plex.student.checkpoint import load_checkpoint

        load_checkpoint(result.checkpoint)
    with pytest.raises(ValueError, match="at most 2"):
        train_student(dataclasses.replace(cfg, branch_layers=3, output=str(tmp_path / "s3")), progress=False)

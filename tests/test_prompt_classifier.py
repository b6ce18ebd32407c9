"""PromptClassifier on a tiny random Llama: probabilities and hidden states checked against the model itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plex.classifiers import PromptClassifier, load_classifier
from plex.student.embed import Embedder
from plex.words import segment

TEXTS = ["the film was good", "a dull , boring plot that goes nowhere at all", "bad",
         "the acting is great but the story is {not} \"fun\""]
TEMPLATE = "review : {text}\nanswer :"
CHAT_TEMPLATE = ("{% for m in messages %}user : {{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %} assistant :{% endif %}")


@pytest.fixture(scope="module")
def tiny_prompt(tiny_lm_path) -> PromptClassifier:
    return PromptClassifier.from_pretrained(tiny_lm_path, device="cpu", template=TEMPLATE, batch_size=3)


def make(clf: PromptClassifier, **kwargs) -> PromptClassifier:
    """Another classifier over the same model and tokenizer."""
    kwargs = {"template": clf.template, "device": "cpu", "batch_size": clf.batch_size, **kwargs}
    return PromptClassifier(clf.model, clf.tokenizer, source=clf.source, **kwargs)


def manual_log_likelihoods(clf: PromptClassifier, prompt: str, bos: bool) -> np.ndarray:
    """log p(label word | prompt) for each label, one unbatched forward pass per label."""
    tok = clf.tokenizer
    ids = ([tok.cls_token_id] if bos else []) + tok(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for word in clf.label_words:
        label = tok(word, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            logits = clf.model(torch.tensor([ids + label])).logits[0].double()
        logp = torch.log_softmax(logits, dim=-1)
        out.append(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(label)))
    return np.array(out)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("label_words", [None, [" awful movie", " great film indeed"]],
                         ids=["single-token", "multi-token"])
def test_probabilities_are_the_softmax_of_label_likelihoods(tiny_prompt, label_words):
    clf = make(tiny_prompt, label_words=label_words)
    assert [len(ids) for ids in clf.label_ids] == ([1, 1] if label_words is None else [2, 3])
    ll = clf.label_log_likelihoods(TEXTS)
    want = np.stack([manual_log_likelihoods(clf, TEMPLATE.replace("{text}", t), bos=True) for t in TEXTS])
    np.testing.assert_allclose(ll, want, atol=1e-5)
    probs = clf.predict_proba(TEXTS)
    assert probs.dtype == np.float64 and probs.shape == (4, 2)
    np.testing.assert_allclose(probs, softmax(want), atol=1e-5)
    np.testing.assert_allclose(make(clf, label_words=label_words, batch_size=1).predict_proba(TEXTS), probs, atol=1e-5)
    assert clf.predict_proba([]).shape == (0, 2)


def test_single_token_labels_take_one_forward_pass_per_batch(tiny_prompt):
    clf = make(tiny_prompt, batch_size=4, labels=["negative", "neutral", "positive"])
    calls = [0]
    hook = clf.model.register_forward_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    try:
        probs = clf.predict_proba(TEXTS)
    finally:
        hook.remove()
    assert calls[0] == 1 and probs.shape == (4, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)


def test_few_shot_examples_come_first(tiny_prompt):
    clf = make(tiny_prompt, examples=[("a fine film", "positive"), {"text": "dreadful", "label": "negative"}])
    text = TEXTS[0]
    want = ("review : a fine film\nanswer : positive\n\n" "review : dreadful\nanswer : negative\n\n"
            + TEMPLATE.replace("{text}", text))
    assert clf.prompt(text) == want
    np.testing.assert_allclose(clf.label_log_likelihoods([text])[0], manual_log_likelihoods(clf, want, bos=True),
                               atol=1e-5)
    assert clf.identity()["examples"] == [["a fine film", "positive"], ["dreadful", "negative"]]


def test_chat_mode_uses_the_chat_template_without_bos(tiny_prompt, tiny_lm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm_path)
    with pytest.raises(ValueError, match="chat template"):
        PromptClassifier(tiny_prompt.model, tokenizer, template=TEMPLATE, chat=True, device="cpu")
    tokenizer.chat_template = CHAT_TEMPLATE
    clf = PromptClassifier(tiny_prompt.model, tokenizer, template=TEMPLATE, chat=True, device="cpu")
    assert clf.label_words == ["negative", "positive"]
    text = TEXTS[1]
    assert clf.prompt(text) == "user : " + TEMPLATE.replace("{text}", text) + " assistant :"
    np.testing.assert_allclose(clf.label_log_likelihoods([text])[0],
                               manual_log_likelihoods(clf, clf.prompt(text), bos=False), atol=1e-5)
    tokenizer.chat_template = CHAT_TEMPLATE.replace("user", "{{ m['role'] }}")
    shot = PromptClassifier(tiny_prompt.model, tokenizer, template=TEMPLATE, chat=True, device="cpu",
                            examples=[("so bad", "negative")])
    assert shot.prompt("ok") == "user : review : so bad\nanswer :assistant : negativeuser : review : ok\nanswer : assistant :"


def test_token_states_cover_the_text_and_match_the_model(tiny_prompt):
    text = TEXTS[3]
    seg = segment(text)
    clf = make(tiny_prompt)
    out = clf.forward([TEXTS[0], text], layers=(0, 1, -1))
    tok = clf.tokenizer
    for row, t in enumerate([TEXTS[0], text]):  # the short text sits in a right-padded row
        ids = [tok.cls_token_id] + tok(clf.prompt(t), add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            hidden = clf.model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for layer in (0, 1, -1):
            np.testing.assert_allclose(out.states[layer][row].hidden, hidden[layer][0].numpy(), atol=1e-5)
    multi = make(clf, label_words=[" awful movie", " great film indeed"]).forward([TEXTS[0], text], layers=(1,))
    np.testing.assert_allclose(multi.states[1][1].hidden, out.states[1][1].hidden, atol=1e-5)
    before = 1 + len(tok("review :", add_special_tokens=False)["input_ids"])
    after = len(tok("answer :", add_special_tokens=False)["input_ids"])
    states = out.states[-1][1]
    assert states.hidden.shape == (len(ids), 32) and states.offsets.shape == (len(ids), 2)
    assert (states.word_ids[:before] == -1).all() and (states.word_ids[-after:] == -1).all()
    inside = states.word_ids[before:-after]
    assert sorted(set(inside.tolist())) == list(range(len(seg)))  # every word, and nothing but words
    for (s, e), w in zip(states.offsets, states.word_ids):
        if w >= 0:
            ws, we = seg.spans[w]
            assert ws <= s < e <= we and text[s:e] in seg.words[w]
        else:
            assert (s, e) == (0, 0)
    np.testing.assert_allclose(out.probs, clf.predict_proba([TEXTS[0], text]), atol=1e-6)
    assert len(clf.embed([text], layer=1)[0].hidden) == len(ids)
    assert clf.visible_words(seg.spans, text) == len(seg)


def test_embedder_uses_the_last_prompt_token(tiny_prompt):
    clf = make(tiny_prompt)
    emb = Embedder(clf, layer=-1)
    assert emb.white_box and emb.pooling == "last" and emb.dim == 32
    probs, vectors = emb(TEXTS)
    np.testing.assert_allclose(probs, clf.predict_proba(TEXTS), atol=1e-6)
    states = clf.embed(TEXTS, layer=-1)
    for text, v, s in zip(TEXTS, vectors, states):
        np.testing.assert_allclose(v.sentence, s.hidden[-1], atol=1e-6)
        assert v.words.shape == (len(segment(text)), 32) and v.visible.all()
    with pytest.raises(ValueError, match="layers 0..2"):
        Embedder(clf, layer=3)


def test_bad_prompts_are_clear_errors(tiny_prompt):
    with pytest.raises(ValueError, match=r"no \{text\} placeholder.*write \{text\} once"):
        make(tiny_prompt, template="review:\nanswer:")
    with pytest.raises(ValueError, match="tokenize to the same ids"):
        make(tiny_prompt, label_words=[" good", "good"])  # the BERT tokenizer drops the space
    with pytest.raises(ValueError, match="gives no tokens"):
        make(tiny_prompt, label_words=["", " good"])
    with pytest.raises(ValueError, match="label among"):
        make(tiny_prompt, examples=[("fine", "great")])
    with pytest.raises(ValueError, match=r"text 1: its prompt is \d+ tokens.*max_length=128"):
        make(tiny_prompt).predict_proba(["short", "word " * 130])
    with pytest.raises(ValueError, match="max_length=8"):
        make(tiny_prompt, max_length=8).predict_proba(["a b c d e f"])


def test_prompt_spec_reloads_the_same_classifier(tiny_lm_path):
    spec = f"prompt:{tiny_lm_path}"
    clf = load_classifier(spec, device="cpu", batch_size=2)
    assert isinstance(clf, PromptClassifier) and clf.template == PromptClassifier.DEFAULT_TEMPLATE
    ident = clf.identity()
    assert ident["kind"] == "prompt" and ident["path"] == f"prompt:{Path(tiny_lm_path).resolve()}"
    assert ident["model"] == str(Path(tiny_lm_path).resolve()) and ident["label_words"] == [" negative", " positive"]
    again = load_classifier(ident["path"], device="cpu")
    assert again.identity() == ident
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-6)
    assert PromptClassifier.from_pretrained(tiny_lm_path, device="cpu").identity()["path"] == ident["path"]
    custom = PromptClassifier.from_pretrained(tiny_lm_path, device="cpu", template=TEMPLATE)
    assert custom.identity()["path"] is None  # a custom prompt reloads only from a YAML file


def test_yaml_file_round_trip(tiny_lm_path, tmp_path, monkeypatch):
    import yaml

    config = {"model": str(tiny_lm_path), "template": TEMPLATE, "labels": ["bad", "ok", "good"],
              "label_words": [" awful", " fine", " great film"], "examples": [["so good", "good"]]}
    path = tmp_path / "prompt.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    clf = load_classifier("prompt.yaml", device="cpu")
    ident = clf.identity()
    assert ident["path"] == str(path.resolve()) and ident["labels"] == ["bad", "ok", "good"]
    assert ident["template"] == TEMPLATE and ident["examples"] == [["so good", "good"]] and ident["chat"] is False
    assert clf.prompt("meh").startswith("review : so good\nanswer : great film\n\nreview : meh")
    again = load_classifier(ident["path"], device="cpu")
    assert again.identity() == ident
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-6)
    with pytest.raises(ValueError, match="belong in the YAML file"):
        PromptClassifier.from_config(path, template=TEMPLATE)
    (tmp_path / "bad.yaml").write_text("model: x\ntemplat: '{text}'\n")
    with pytest.raises(ValueError, match="did you mean 'template'"):
        load_classifier(tmp_path / "bad.yaml")


def test_student_round_trip_with_a_prompt_classifier(tiny_lm_path, tmp_path):
    import plex
    from plex.config import LabelConfig, StudentTrainConfig
    from plex.label import run_label
    from plex.student.train import train_student

    (tmp_path / "c.txt").write_text("\n".join(TEXTS[:3] * 3) + "\n")
    spec = f"prompt:{tiny_lm_path}"
    run_label(LabelConfig(dataset=str(tmp_path / "c.txt"), label_column=None, classifier=spec, teacher="lime",
                          teacher_args={"num_samples": 10}, output=str(tmp_path / "labels"), device="cpu"),
              progress=False)
    result = train_student(StudentTrainConfig(labels=str(tmp_path / "labels"), output=str(tmp_path / "s"),
                                              max_epochs=1, accelerator="cpu", logger="none"), progress=False)
    student = plex.Plex.from_pretrained(result.checkpoint, device="cpu")
    assert isinstance(student.classifier, PromptClassifier) and student.embedder.pooling == "last"
    (a,) = student.explain([TEXTS[1]])
    assert a.words == segment(TEXTS[1]).words and np.isfinite(a.scores).all()
    np.testing.assert_allclose(a.meta["probs"], student.classifier.predict_proba([TEXTS[1]])[0], atol=1e-6)

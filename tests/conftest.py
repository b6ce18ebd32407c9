"""Shared fixtures: tiny random models built from configs (no download), toy classifiers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from plex.assets import minilm_path
from plex.classifiers import CallableClassifier, HFClassifier


def make_tiny_bert(path, num_labels: int = 2, max_position_embeddings: int = 64, seed: int = 0):
    """Save a 2-layer, 32-wide random BERT classifier with the packaged MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=max_position_embeddings, num_labels=num_labels,
        id2label={i: f"class_{i}" for i in range(num_labels)},
        label2id={f"class_{i}": i for i in range(num_labels)},
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert_path(tmp_path_factory):
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_classifier(tiny_bert_path) -> HFClassifier:
    return HFClassifier.from_pretrained(tiny_bert_path, device="cpu", batch_size=4)


class LinearBagOfWords:
    """A linear model over words: logit(class c) = sum of weight[c][word] over the text's words.

    Its true attribution of each word position to class c (in logit space) is ``weight[c][word]``,
    so explainers can be checked against a known answer.
    """

    def __init__(self, weights: dict[str, np.ndarray], num_labels: int = 2):
        self.weights = weights
        self.num_labels = num_labels

    def logits(self, text: str) -> np.ndarray:
        from plex.words import segment

        out = np.zeros(self.num_labels)
        for w in segment(text).words:
            out += self.weights.get(w.lower(), 0.0)
        return out

    def __call__(self, texts: list[str]) -> np.ndarray:
        z = np.stack([self.logits(t) for t in texts]) if texts else np.zeros((0, self.num_labels))
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def linear_bow():
    """A 2-class linear bag-of-words model with distinct weights for a fixed vocabulary."""
    rng = np.random.default_rng(0)
    vocab = ("the film was good bad great awful plot acting boring brilliant dull fun "
             "a movie is not very and but story").split()
    weights = {}
    for w in vocab:
        v = rng.normal(0.0, 0.6)
        weights[w] = np.array([-v / 2, v / 2])
    model = LinearBagOfWords(weights, num_labels=2)
    return model, CallableClassifier(model, labels=["negative", "positive"], name="linear-bow")


@pytest.fixture(scope="session")
def tiny_lm_path(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide random Llama with the packaged MiniLM tokenizer ([CLS] as BOS, [SEP] as EOS)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.bos_token, tokenizer.eos_token = "[CLS]", "[SEP]"
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=37, max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path

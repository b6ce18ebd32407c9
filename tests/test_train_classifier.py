"""Fine-tuning the default black box, on a tiny random BERT and a tiny corpus."""

import json

import pytest

import plex
from plex.classifiers.train import ClassifierModule, train_classifier
from plex.config import ClassifierTrainConfig


@pytest.fixture
def tiny_corpus(tmp_path):
    rows = [("a great and moving film", "positive"), ("dull , boring and far too long", "negative")] * 30
    path = tmp_path / "reviews.csv"
    path.write_text("review,sentiment\n" + "\n".join(f'"{t}",{y}' for t, y in rows) + "\n")
    return path


def test_train_classifier_saves_a_loadable_classifier(tmp_path, tiny_bert_path, tiny_corpus):
    cfg = ClassifierTrainConfig(encoder=str(tiny_bert_path), dataset=str(tiny_corpus), text_column="review",
                                label_column="sentiment", output=str(tmp_path / "clf"), epochs=8,
                                batch_size=8, lr=2e-3, warmup_ratio=0.0, accelerator="cpu")
    metrics = train_classifier(cfg, progress=False)
    saved = json.loads((tmp_path / "clf" / "metrics.json").read_text())
    assert saved["val_accuracy"] == metrics["val_accuracy"] and 0.0 <= metrics["test_accuracy"] <= 1.0
    # the corpus is separable and tiny: the model has to learn it (chance is 0.5)
    assert metrics["val_accuracy"] == 1.0
    clf = plex.load_classifier(tmp_path / "clf", device="cpu")
    assert clf.labels == ["negative", "positive"]
    assert clf.predict(["a great and moving film"]).tolist() == [1]
    assert not any(p.name.startswith(".clf-") for p in tmp_path.iterdir())  # no working folder left


def test_module_puts_the_model_in_train_mode(tiny_bert_path):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_path)
    assert not model.training  # transformers 5 loads in eval mode
    module = ClassifierModule(model)
    assert module.model.training and all(m.training for m in module.model.modules())

"""Labelling a split with a teacher: shards, resuming after a crash, settings checks, layout."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest

import plex.label
from plex.classifiers import CallableClassifier
from plex.config import LabelConfig
from plex.data import load_split
from plex.label import (
    FEATURES,
    LabelsMismatchError,
    dataset_fingerprint,
    load_labels,
    read_manifest,
    run_label,
)
from plex.teachers.base import Teacher
from plex.words import join_kept

TEXTS = [
    "the film was good", "a boring plot", "great acting and a fun story", "", "not very good",
    "the movie is dull but the story is brilliant", "awful", "good good bad", "very fun movie",
    "the plot was not boring", "brilliant acting",
]
GOLD = ["Positive", "negative", "positive", "negative", "NEGATIVE", "positive", "negative",
        "positive", "positive", "positive", "positive"]


@dataclasses.dataclass
class Occlusion(Teacher):
    """Leave-one-out: a word's score is the drop in a class's probability when it is removed."""

    name = "occlusion"
    mask_token: str = ""

    def attribute(self, classifier, seg, targets):
        base = classifier.predict_proba([seg.text])[0]
        keep = [np.arange(len(seg)) != j for j in range(len(seg))]
        probs = classifier.predict_proba([join_kept(seg.text, seg.spans, k, self.mask_token) for k in keep])
        return base[targets][:, None] - probs[:, targets].T, {}


class Interrupted(Exception):
    """Stands in for the process being killed."""


class Crashing(Occlusion):
    """Occlusion that is 'killed' after explaining ``budget`` texts (same config as Occlusion)."""

    def __init__(self, budget: int):
        super().__init__()
        self.budget = budget

    def explain(self, classifier, texts, target=None, all_classes=False):
        if self.budget < len(texts):
            raise Interrupted
        self.budget -= len(texts)
        return super().explain(classifier, texts, target, all_classes)


@pytest.fixture(autouse=True)
def isolated_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


@pytest.fixture
def data_file(tmp_path) -> Path:
    path = tmp_path / "reviews.jsonl"
    path.write_text("".join(json.dumps({"review": t, "gold": y}) + "\n" for t, y in zip(TEXTS, GOLD)))
    return path


@pytest.fixture
def make_cfg(tmp_path, data_file):
    def make(name: str, **changes) -> LabelConfig:
        settings = dict(dataset=str(data_file), text_column="review", label_column="gold",
                        classifier="linear-bow", teacher="occlusion", output=str(tmp_path / name),
                        shard_size=4)
        settings.update(changes)
        return LabelConfig(**settings)

    return make


@pytest.fixture
def reference(make_cfg, linear_bow):
    """An uninterrupted run over every row."""
    cfg = make_cfg("reference")
    result = run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    assert (result.rows, result.added) == (len(TEXTS), len(TEXTS))
    return load_labels(cfg.output)


def content(ds: datasets.Dataset) -> list[dict]:
    """Rows without the timing column."""
    return [{k: v for k, v in row.items() if k != "seconds"} for row in ds]


def leftovers(folder: str) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def test_rows_hold_every_class_score(reference, linear_bow):
    assert reference.features == FEATURES
    assert reference["idx"] == list(range(len(TEXTS)))
    assert reference["text"] == TEXTS
    assert reference["label"] == [1, 0, 1, 0, 0, 1, 0, 1, 1, 1, 1]
    model, classifier = linear_bow
    probs = classifier.predict_proba(TEXTS)
    assert reference["target"] == probs.argmax(axis=1).tolist()
    np.testing.assert_allclose([np.asarray(p) for p in reference["probs"]], probs, rtol=1e-6)
    row = reference[0]
    assert row["words"] == ["the", "film", "was", "good"]
    assert row["spans"] == [[0, 3], [4, 8], [9, 12], [13, 17]]
    assert np.asarray(row["scores"]).shape == (2, 4)
    assert row["teacher"] == "occlusion"
    assert json.loads(row["teacher_config"]) == {"name": "occlusion", "mask_token": ""}
    assert row["visible_words"] == 4 and row["seconds"] >= 0
    empty = reference[3]
    assert empty["words"] == [] and empty["spans"] == [] and empty["scores"] == [[], []]


def test_interrupted_mid_shard_resumes_to_the_same_rows(make_cfg, linear_bow, reference):
    cfg = make_cfg("resumed")
    with pytest.raises(Interrupted):
        run_label(cfg, classifier=linear_bow[1], teacher=Crashing(budget=6), progress=False)
    out = Path(cfg.output)
    assert [p.name for p in sorted((out / "shards").iterdir())] == ["shard-00000"]
    assert not (out / "dataset").exists()
    assert load_labels(out)["idx"] == [0, 1, 2, 3]

    result = run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    assert (result.rows, result.added) == (len(TEXTS), len(TEXTS) - 4)
    resumed = load_labels(out)
    assert resumed["idx"] == list(range(len(TEXTS)))
    assert content(resumed) == content(reference)
    assert content(datasets.load_from_disk(str(out / "dataset"))) == content(reference)
    assert leftovers(cfg.output) == []
    assert read_manifest(out)["rows_done"] == len(TEXTS)


def test_killed_while_writing_a_shard(make_cfg, linear_bow, reference, monkeypatch):
    cfg = make_cfg("killed-writing")
    save = datasets.Dataset.save_to_disk
    calls = []

    def save_then_die(self, path, *args, **kwargs):
        save(self, path, *args, **kwargs)
        calls.append(path)
        if len(calls) == 2:
            raise Interrupted

    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save_then_die)
    with pytest.raises(Interrupted):
        run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", save)
    assert len(leftovers(cfg.output)) == 1
    assert load_labels(cfg.output)["idx"] == [0, 1, 2, 3]

    run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    assert content(load_labels(cfg.output)) == content(reference)
    assert leftovers(cfg.output) == []


def test_limit_then_the_rest_with_another_shard_size(make_cfg, linear_bow, reference):
    first = run_label(make_cfg("limited", limit=4), classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    assert (first.rows, first.added) == (4, 4)
    out = first.output
    assert datasets.load_from_disk(str(out / "dataset"))["idx"] == [0, 1, 2, 3]

    again = run_label(make_cfg("limited", limit=4), classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    assert (again.rows, again.added) == (4, 0)

    rest = run_label(make_cfg("limited", shard_size=3), classifier=linear_bow[1], teacher=Occlusion(),
                     progress=False)
    assert (rest.rows, rest.added) == (len(TEXTS), len(TEXTS) - 4)
    assert len(list((out / "shards").iterdir())) == 1 + 3
    assert content(datasets.load_from_disk(str(out / "dataset"))) == content(reference)
    assert leftovers(str(out)) == []


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"teacher": Occlusion(mask_token="[UNK]")}, "teacher.mask_token"),
        ({"classifier": "other"}, "classifier.path"),
        ({"cfg": {"label_column": None}}, "label_column"),
    ],
)
def test_other_settings_are_refused(make_cfg, linear_bow, change, key):
    model, classifier = linear_bow
    run_label(make_cfg("mismatch", limit=2), classifier=classifier, teacher=Occlusion(), progress=False)
    kwargs = {"classifier": classifier, "teacher": Occlusion()}
    if change.get("classifier"):
        kwargs["classifier"] = CallableClassifier(model, labels=classifier.labels, name="other")
    if "teacher" in change:
        kwargs["teacher"] = change["teacher"]
    with pytest.raises(LabelsMismatchError) as err:
        run_label(make_cfg("mismatch", **change.get("cfg", {})), progress=False, **kwargs)
    message = str(err.value)
    assert key in message and "--output" in message and "--overwrite" in message


def test_changed_dataset_is_refused(make_cfg, linear_bow, data_file):
    run_label(make_cfg("changed", limit=2), classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    data_file.write_text(data_file.read_text().replace("great acting", "great directing"))
    with pytest.raises(LabelsMismatchError, match="dataset_fingerprint"):
        run_label(make_cfg("changed", limit=2), classifier=linear_bow[1], teacher=Occlusion(), progress=False)


def test_overwrite_discards_the_old_labels(make_cfg, linear_bow):
    cfg = make_cfg("overwritten")
    run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), progress=False)
    result = run_label(make_cfg("overwritten", limit=3), classifier=linear_bow[1],
                       teacher=Occlusion(mask_token="[UNK]"), overwrite=True, progress=False)
    assert (result.rows, result.added) == (3, 3)
    labels = load_labels(cfg.output)
    assert labels["idx"] == [0, 1, 2]
    assert {json.loads(c)["mask_token"] for c in labels["teacher_config"]} == {"[UNK]"}
    assert read_manifest(cfg.output)["settings"]["teacher"]["mask_token"] == "[UNK]"


def test_folder_with_other_files_is_refused(make_cfg, linear_bow):
    cfg = make_cfg("busy")
    Path(cfg.output).mkdir()
    (Path(cfg.output) / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="notes.txt"):
        run_label(cfg, classifier=linear_bow[1], teacher=Occlusion(), overwrite=True, progress=False)
    assert (Path(cfg.output) / "notes.txt").read_text() == "mine"


def test_manifest_records_classifier_hash_and_fingerprint(tmp_path, tiny_classifier, tiny_bert_path, caplog):
    path = tmp_path / "data.csv"
    path.write_text("text,label\ngood film,1\nbad plot,0\nfine,1\n")
    cfg = LabelConfig(dataset=str(path), classifier=str(tiny_bert_path), device="cpu", batch_size=4,
                      teacher="occlusion", output=str(tmp_path / "hf"), shard_size=2)
    with caplog.at_level(logging.INFO, logger="plex.label"):
        result = run_label(cfg, teacher=Occlusion(), progress=False)
    assert result.rows == 3
    assert any("s per text" in r.getMessage() and str(cfg.output) in r.getMessage() for r in caplog.records)
    settings = read_manifest(cfg.output)["settings"]
    assert settings["classifier"]["weights_sha256"] == tiny_classifier.weights_sha256
    assert settings["classifier"]["path_hint"] == str(Path(tiny_bert_path).resolve())
    assert (Path(cfg.output) / settings["classifier"]["path"]).resolve() == Path(tiny_bert_path).resolve()
    assert settings["classifier"]["labels"] == ["class_0", "class_1"]
    split = load_split(str(path), labels=tiny_classifier.labels)
    assert settings["dataset_fingerprint"] == dataset_fingerprint(split)
    assert settings["dataset"] == str(path) and settings["split"] == "train"
    assert settings["teacher"] == {"name": "occlusion", "mask_token": ""}
    manifest = read_manifest(cfg.output)
    assert manifest["rows_done"] == 3 and manifest["plex_version"] == plex.__version__


def test_teacher_by_name(make_cfg, linear_bow):
    teachers = pytest.importorskip("plex.teachers")
    if not hasattr(teachers, "get_teacher"):
        pytest.skip("plex.teachers.get_teacher is not there yet")
    cfg = make_cfg("lime", teacher="lime", teacher_args={"num_samples": 50, "seed": 3}, limit=3)
    run_label(cfg, classifier=linear_bow[1], progress=False)
    first = load_labels(cfg.output)
    assert first["teacher"] == ["lime"] * 3
    again = make_cfg("lime-again", teacher="lime", teacher_args={"num_samples": 50, "seed": 3}, limit=3)
    run_label(again, classifier=linear_bow[1], progress=False)
    assert content(load_labels(again.output)) == content(first)


def test_load_labels_of_a_folder_without_labels(tmp_path):
    with pytest.raises(FileNotFoundError, match="no labels"):
        load_labels(tmp_path)

"""Loading a split from files, saved folders and corpora as ``text`` / ``label`` columns."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest

import plex.assets
from plex.data import DataError, class_index, label_indices, label_names, load_split


@pytest.fixture(autouse=True)
def isolated_datasets_cache(tmp_path, monkeypatch):
    """Keep ``datasets``' cache of parsed files inside the test's folder."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def rows(ds: datasets.Dataset) -> list[tuple[str, int]]:
    return list(zip(ds["text"], ds["label"]))


def test_csv_with_other_column_names(tmp_path):
    path = tmp_path / "reviews.csv"
    pd.DataFrame({"id": [7, 8, 9], "review": ["good film", "bad plot", "fine"], "y": [1, 0, 1]}).to_csv(
        path, index=False
    )
    ds = load_split(str(path), text_column="review", label_column="y")
    assert ds.column_names == ["text", "label"]
    assert rows(ds) == [("good film", 1), ("bad plot", 0), ("fine", 1)]
    assert label_names(ds) is None


def test_tsv(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text("text\tlabel\na, b and c\t1\nnot fun\t0\n")
    assert rows(load_split(str(path))) == [("a, b and c", 1), ("not fun", 0)]


def test_jsonl_string_labels_become_class_names(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"sentence": "great", "gold": "Positive"}, {"sentence": "dull", "gold": "negative"},
               {"sentence": "ok", "gold": None}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = load_split(str(path), text_column="sentence", label_column="gold")
    assert label_names(ds) == ["negative", "Positive"]
    assert ds["label"] == [1, 0, -1]
    mapped = load_split(str(path), text_column="sentence", label_column="gold", labels=["POSITIVE", "Negative"])
    assert mapped["label"] == [0, 1, -1]
    assert label_names(mapped) == ["POSITIVE", "Negative"]


def test_json_array_file(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"text": "one", "label": 0}, {"text": "two", "label": 1}]))
    assert rows(load_split(str(path))) == [("one", 0), ("two", 1)]


def test_parquet(tmp_path):
    path = tmp_path / "data.parquet"
    pd.DataFrame({"body": ["x y", "z"], "label": [1, 0]}).to_parquet(path)
    assert rows(load_split(str(path), text_column="body")) == [("x y", 1), ("z", 0)]


def test_txt_is_one_unlabelled_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first text\nsecond, text\n")
    ds = load_split(str(path))
    assert rows(ds) == [("first text", -1), ("second, text", -1)]


def test_no_label_column(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b"]}).to_csv(path, index=False)
    assert load_split(str(path), label_column=None)["label"] == [-1, -1]


def test_saved_dataset_dict_keeps_class_names_and_picks_split(tmp_path):
    features = datasets.Features({"content": datasets.Value("string"),
                                  "stars": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"content": ["a", "b"], "stars": [0, 1]}, features=features)
    test = datasets.Dataset.from_dict({"content": ["c"], "stars": [1]}, features=features)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    ds = load_split(str(tmp_path / "saved"), "test", text_column="content", label_column="stars")
    assert rows(ds) == [("c", 1)]
    assert label_names(ds) == ["neg", "pos"]
    with pytest.raises(DataError) as err:
        load_split(str(tmp_path / "saved"), "validation", text_column="content", label_column="stars")
    assert "'validation'" in str(err.value) and "'train'" in str(err.value) and "'test'" in str(err.value)


def test_saved_dataset_class_names_reordered_to_the_classifier(tmp_path):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["positive", "negative"])})
    datasets.Dataset.from_dict({"text": ["a", "b", "c"], "label": [0, 1, -1]}, features=features).save_to_disk(
        str(tmp_path / "one")
    )
    ds = load_split(str(tmp_path / "one"), labels=["Negative", "Positive"])
    assert ds["label"] == [1, 0, -1]
    assert label_names(ds) == ["Negative", "Positive"]


def test_polarity_comes_from_the_embedded_corpora(monkeypatch):
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=plex.assets.POLARITY_LABELS)})
    fake = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["nice"], "label": [1]}, features=features)})
    monkeypatch.setitem(plex.assets.CORPORA, "polarity", lambda: fake)
    ds = load_split("polarity")
    assert rows(ds) == [("nice", 1)]
    assert label_names(ds) == ["negative", "positive"]


def test_missing_text_column_names_column_columns_and_flag(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"review": ["a"], "label": [0]}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_split(str(path), text_column="sentence")
    message = str(err.value)
    assert "'sentence'" in message and "'review'" in message and "'label'" in message
    assert "--text-column" in message


def test_missing_label_column_names_column_columns_and_flag(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a"], "sentiment": [0]}).to_csv(path, index=False)
    with pytest.raises(DataError) as err:
        load_split(str(path))
    message = str(err.value)
    assert "'label'" in message and "'text'" in message and "'sentiment'" in message
    assert "--label-column" in message


def test_a_single_file_is_its_own_only_split(tmp_path, caplog):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_csv(path, index=False)
    with caplog.at_level("INFO", logger="plex.data"):
        ds = load_split(str(path), split="test")
    assert rows(ds) == [("a", 0), ("b", 1)]
    assert "single data file" in caplog.text and "all its 2 rows" in caplog.text and "'test'" in caplog.text
    assert rows(load_split(str(path), split="validation")) == rows(load_split(str(path)))


def test_a_single_file_with_strict_splits_has_only_train(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "a", "label": 0}) + "\n")
    assert rows(load_split(str(path), whole_file=False)) == [("a", 0)]
    with pytest.raises(DataError) as err:
        load_split(str(path), split="test", whole_file=False)
    assert "'test'" in str(err.value) and "splits found: 'train'" in str(err.value) and "--split" in str(err.value)


def test_unknown_split_of_a_corpus_names_the_splits(monkeypatch):
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    one = datasets.Dataset.from_dict({"text": ["nice"], "label": [1]}, features=features)
    monkeypatch.setitem(plex.assets.CORPORA, "polarity", lambda: datasets.DatasetDict({"train": one, "test": one}))
    with pytest.raises(DataError) as err:
        load_split("polarity", split="validation")
    message = str(err.value)
    assert "\n" not in message and "'validation'" in message and "'train', 'test'" in message
    assert "--split" in message


def test_class_index_by_index_name_or_digits():
    labels = ["negative", "Positive"]
    assert class_index(1, labels) == 1 and class_index("negative", labels) == 0
    assert class_index(" positive ", labels) == 1 and class_index("0", labels) == 0
    assert class_index("1", ["1", "0"]) == 0  # a class name wins over an index
    for bad in ("neutral", 2, -1, "5", 1.0, True):
        with pytest.raises(DataError) as err:
            class_index(bad, labels, what="target")
        assert "0 'negative', 1 'Positive'" in str(err.value) and "target" in str(err.value)


def test_unmatched_string_labels_are_listed(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in [("a", "pos"), ("b", "Negative"), ("c", "meh"), ("d", "pos")]))
    with pytest.raises(DataError) as err:
        load_split(str(path), labels=["negative", "positive"])
    message = str(err.value)
    assert "'pos'" in message and "'meh'" in message and "'Negative'" not in message
    assert "negative" in message and "positive" in message


def test_label_indices():
    assert label_indices(["B", " a ", None, "b"], ["a", "b"]) == [1, 0, -1, 1]
    with pytest.raises(DataError, match="'c'"):
        label_indices(["a", "c"], ["a", "b"])


def test_integer_labels_outside_the_classifier_classes(tmp_path):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": ["a", "b"], "label": [0, 2]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"\[2\]"):
        load_split(str(path), labels=["negative", "positive"])


def test_missing_text_names_the_row(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"text": "a"}, {"text": "b"}, {"text": None}]))
    with pytest.raises(DataError, match="row 2 ") as err:
        load_split(str(path), label_column=None)
    assert "None" in str(err.value)


def test_non_string_text_names_the_row(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps({"text": i, "label": 0}) + "\n" for i in range(3)))
    with pytest.raises(DataError, match="row 0 .*int"):
        load_split(str(path))


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(str(tmp_path / "nope.csv"))
    (tmp_path / "data.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"\.csv"):
        load_split(str(tmp_path / "data.xlsx"))


def test_hub_failure_says_local_files_work(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as err:
        load_split("someone/some-dataset")
    message = str(err.value)
    assert "hub" in message and "unreachable" in message and "no route" in message and "polarity" in message

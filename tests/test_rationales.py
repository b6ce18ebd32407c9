"""HateXplain and ERASER rationales become plex's text / label / rationale_spans."""

import json

import pytest

from plex.data import DataError
from plex.evaluate.plausibility import gold_word_spans
from plex.evaluate.rationales import eraser_records, hatexplain_records, load_rationale_split
from plex.words import segment


def test_hatexplain_majority_label_and_half_of_the_masks(tmp_path):
    posts = {
        "p1": {"post_id": "p1", "post_tokens": ["you", "are", "vile", "trash"],
               "annotators": [{"label": "offensive"}, {"label": "offensive"}, {"label": "normal"}],
               "rationales": [[0, 0, 1, 1], [0, 0, 1, 0], [0, 1, 0, 0]]},
        "p2": {"post_id": "p2", "post_tokens": ["nice", "day"], "annotators": [{"label": "normal"}] * 3,
               "rationales": []},
    }
    (tmp_path / "dataset.json").write_text(json.dumps(posts))
    first, second = hatexplain_records(tmp_path / "dataset.json")
    assert first["text"] == "you are vile trash" and first["label"] == "offensive"
    # "vile" is marked by 2 of 3 masks; "trash" and "are" by 1 of 3: below half
    assert [first["text"][s:e] for s, e in first["rationale_spans"]] == ["vile"]
    assert second["rationale_spans"] == [] and second["label"] == "normal"
    ds = load_rationale_split(str(tmp_path / "dataset.json"), "hatexplain", ["normal", "offensive", "hatespeech"])
    assert ds["label"] == [1, 0]


def test_hatexplain_runs_of_evidence_tokens_become_one_span_each(tmp_path):
    posts = {"p1": {"post_id": "p1", "post_tokens": ["so", "vile", "and", "nasty", "trash"],
                    "annotators": [{"label": "offensive"}] * 2,
                    "rationales": [[0, 1, 0, 1, 1], [0, 1, 0, 1, 1]]}}
    (tmp_path / "dataset.json").write_text(json.dumps(posts))
    (record,) = hatexplain_records(tmp_path / "dataset.json")
    assert [record["text"][s:e] for s, e in record["rationale_spans"]] == ["vile", "nasty trash"]


def test_eraser_token_ranges_become_char_spans(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "negR_1.txt").write_text("the plot is dull\nand the acting is flat .\n")
    ann = {"annotation_id": "negR_1.txt", "classification": "NEG", "query": "?",
           "evidences": [[{"docid": "negR_1.txt", "start_token": 3, "end_token": 4, "text": "dull"}],
                         [{"docid": "negR_1.txt", "start_token": 6, "end_token": 9, "text": "acting is flat"}],
                         [{"docid": "negR_1.txt", "start_token": 3, "end_token": 4, "text": "dull"}]]}
    (tmp_path / "test.jsonl").write_text(json.dumps(ann) + "\n")
    (record,) = eraser_records(tmp_path / "test.jsonl")
    assert record["text"] == "the plot is dull and the acting is flat ."
    # The three-token evidence is one span; the repeated "dull" evidence counts once.
    assert [record["text"][s:e] for s, e in record["rationale_spans"]] == ["dull", "acting is flat"]
    assert gold_word_spans(segment(record["text"]).spans, record["rationale_spans"]) == [(3, 4), (6, 9)]
    ds = load_rationale_split(str(tmp_path / "test.jsonl"), "eraser", ["negative", "positive"])
    assert ds["label"] == [0]  # NEG abbreviates "negative"
    (tmp_path / "docs" / "negR_1.txt").unlink()
    with pytest.raises(DataError, match="negR_1.txt is not in"):
        eraser_records(tmp_path / "test.jsonl")


def test_unknown_format_names_the_choices(tmp_path):
    with pytest.raises(DataError, match="plex, hatexplain, eraser"):
        load_rationale_split(str(tmp_path / "x"), "conll", ["a", "b"])

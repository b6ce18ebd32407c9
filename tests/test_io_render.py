"""Reading texts, writing JSON lines and rendering attributions as HTML (all fast, no models)."""

from __future__ import annotations

import html
import json
import os
import re

import numpy as np
import pytest

from plex.attribution import Attribution
from plex.data import DataError
from plex.io import attribution_record, read_texts, write_jsonl
from plex.render import render_html, write_html
from plex.words import segment

# ---------------------------------------------------------------- read_texts


def test_txt_keeps_every_line_in_order(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("first text\n\n  indented  \r\nlast ü 😍\n".encode())
    assert read_texts(path) == ["first text", "", "  indented  ", "last ü 😍"]


def test_txt_without_final_newline_and_empty_file(tmp_path):
    (tmp_path / "a.txt").write_text("one\ntwo", encoding="utf-8")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert read_texts(tmp_path / "a.txt") == ["one", "two"]
    assert read_texts(str(tmp_path / "empty.txt")) == []


def test_jsonl_reads_the_text_column_and_skips_blank_lines(tmp_path):
    path = tmp_path / "texts.jsonl"
    rows = [{"text": "good film", "label": 1}, {"text": "ça « marche » 😍", "id": 2}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n", encoding="utf-8")
    assert read_texts(path) == ["good film", "ça « marche » 😍"]


def test_jsonl_custom_column(tmp_path):
    path = tmp_path / "texts.JSONL"
    path.write_text('{"review": "fine"}\n', encoding="utf-8")
    assert read_texts(path, text_column="review") == ["fine"]


def test_csv_with_quoted_newline_and_bom(tmp_path):
    path = tmp_path / "texts.csv"
    content = 'id,text\n1,"line one\nline two, with comma"\n2,"say ""hi"""\n3,\n'
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    assert read_texts(path) == ["line one\nline two, with comma", 'say "hi"', ""]


def test_tsv(tmp_path):
    path = tmp_path / "texts.tsv"
    path.write_text("review\tlabel\nnot bad, really\t1\ndull\t0\n", encoding="utf-8")
    assert read_texts(path, text_column="review") == ["not bad, really", "dull"]


def test_bom_in_jsonl_and_txt(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "x"}\n')
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfhello\n")
    assert read_texts(tmp_path / "a.jsonl") == ["x"]
    assert read_texts(tmp_path / "a.txt") == ["hello"]


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_texts(tmp_path / "nope.txt")


def test_unknown_extension_lists_supported_ones(tmp_path):
    path = tmp_path / "texts.xlsx"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_texts(path)
    for suffix in (".txt", ".jsonl", ".csv", ".tsv"):
        assert suffix in str(err.value)


@pytest.mark.parametrize(
    "name, content",
    [("t.csv", "review,label\nok,1\n"), ("t.tsv", "review\tlabel\nok\t1\n"), ("t.jsonl", '{"review": "ok"}\n')],
)
def test_missing_column_names_it_the_columns_and_the_flag(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_texts(path)
    message = str(err.value)
    assert "'text'" in message and "'review'" in message and "--text-column" in message


def test_invalid_json_line_gives_line_number(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "ok"}\n\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 .*not valid JSON"):
        read_texts(path)


def test_jsonl_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('["a list"]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1 .*not an object"):
        read_texts(path)


@pytest.mark.parametrize("value", ["3", "null", '["a"]'])
def test_non_string_text_gives_line_number(tmp_path, value):
    path = tmp_path / "t.jsonl"
    path.write_text(f'{{"text": "ok"}}\n{{"text": {value}}}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"line 2 .*not a string.*--text-column"):
        read_texts(path)


def test_csv_row_missing_the_text_field(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("label,text\n1,fine\n0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 .*not a string"):
        read_texts(path)


def test_empty_csv_asks_for_a_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="header"):
        read_texts(path)


def test_not_utf8_says_so(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        read_texts(path)


# ---------------------------------------------------------------- write_jsonl / records


def test_write_jsonl_round_trip_with_numpy_values(tmp_path):
    path = tmp_path / "out" / "explanations.jsonl"
    records = [
        {"text": "héllo 😍", "scores": np.array([0.5, -0.25], dtype=np.float32), "target": np.int64(1),
         "ok": np.bool_(True), "spans": [(0, 5), (6, 7)], "nested": {"p": np.float64(0.75)}},
        {"text": "nan", "scores": np.array([np.nan, np.inf])},
    ]
    write_jsonl(path, records)
    raw = path.read_text(encoding="utf-8")
    assert "héllo 😍" in raw  # ensure_ascii=False
    assert "NaN" not in raw and "Infinity" not in raw
    back = [json.loads(line) for line in raw.splitlines()]
    assert back[0] == {"text": "héllo 😍", "scores": [0.5, -0.25], "target": 1, "ok": True,
                       "spans": [[0, 5], [6, 7]], "nested": {"p": 0.75}}
    assert back[1]["scores"] == [None, None]
    assert [p.name for p in path.parent.iterdir()] == ["explanations.jsonl"]  # no temp file left


def test_write_jsonl_is_atomic_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n", encoding="utf-8")

    def records():
        yield {"a": 1}
        raise RuntimeError("explainer crashed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert path.read_text(encoding="utf-8") == "old\n"
    assert os.listdir(tmp_path) == ["out.jsonl"]


def make_attribution(text, scores_by_word=None, target=1, probs=(0.2, 0.8), labels=("negative", "positive"),
                     method="lime"):
    seg = segment(text)
    scores_by_word = scores_by_word or {}
    scores = [scores_by_word.get(w, 0.0) for w in seg.words]
    meta = {}
    if labels is not None:
        meta["labels"] = list(labels)
    if probs is not None:
        meta["probs"] = np.asarray(probs, dtype=np.float32)
    return Attribution(text, seg.words, seg.spans, scores, target, method, meta)


def test_attribution_record_fields():
    a = make_attribution("good, not bad", {"good": 0.5, "bad": -0.3}, target=0, probs=(0.3, 0.7))
    record = attribution_record(a)
    assert record["text"] == "good, not bad"
    assert record["words"] == ["good", ",", "not", "bad"]
    assert record["spans"] == [[0, 4], [4, 5], [6, 9], [10, 13]]
    assert record["scores"] == [0.5, 0.0, 0.0, -0.3]
    assert (record["target"], record["target_label"]) == (0, "negative")
    assert (record["predicted"], record["predicted_label"]) == (1, "positive")
    assert record["probs"] == pytest.approx([0.3, 0.7])
    assert record["method"] == "lime"
    json.dumps(record, allow_nan=False)


def test_attribution_record_without_probs_or_labels():
    record = attribution_record(make_attribution("fine", probs=None, labels=None))
    assert record["target_label"] is None
    assert record["predicted"] is None and record["predicted_label"] is None and record["probs"] is None


# ---------------------------------------------------------------- render_html


def text_blocks(page: str) -> list[str]:
    """The visible text of each rendered text: tags stripped, entities decoded."""
    blocks = re.findall(r'<div class="text"[^>]*>(.*?)</div>', page, flags=re.S)
    return [html.unescape(re.sub(r"<[^>]+>", "", b)) for b in blocks]


def word_class(page: str, word: str) -> str:
    match = re.search(r'<span class="([^"]+)"[^>]*>' + re.escape(html.escape(word)) + "</span>", page)
    assert match, f"{word!r} is not a coloured word in the page"
    return match.group(1)


def test_html_escapes_user_text_everywhere():
    nasty = 'a <script>alert(1)</script> & "quoted" \'x\' <img src=x onerror=alert(2)>'
    a = make_attribution(
        nasty, {"alert": 0.9}, probs=(0.9, 0.1), labels=["<script>neg</script>", 'pos"&'], method="<i>m</i>"
    )
    page = render_html([a], title="<script>title</script>")
    assert "<script" not in page
    assert "<title>&lt;script&gt;title&lt;/script&gt;</title>" in page
    assert "&lt;script&gt;neg&lt;/script&gt;" in page  # the predicted label
    # in the text each of "<", "script" and ">" is a word of its own, wrapped in its own span
    assert '<span class="z" title="&lt;: +0">&lt;</span>' in page
    assert "<img" not in page and "<i>m" not in page
    assert "pos&quot;&amp;" in page
    assert text_blocks(page) == [nasty]


def test_html_is_self_contained():
    page = render_html([make_attribution("see http://example.com now", {"now": 1.0})])
    lowered = page.lower()
    for forbidden in ("<script", "<link", "<img", "@import", "url(", "<iframe"):
        assert forbidden not in lowered
    # the user's own URL is text, not a link; nothing else in the page points anywhere
    assert "http://" not in page.replace("http://example.com", "")
    assert "https://" not in page
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def test_html_keeps_the_original_text():
    texts = [
        "Plain  double  spaces,\ttabs\nand new lines!",
        "Café crème — naïve 😍👍🏽 très bien",
        "   ",
        "",
        "x" * 5000 + " end",
    ]
    page = render_html([make_attribution(t, {"Café": 0.4, "end": -0.2}) for t in texts])
    assert text_blocks(page) == texts


def test_positive_and_negative_words_get_different_colours():
    a = make_attribution("great but boring plot", {"great": 2.0, "boring": -2.0, "plot": 0.0})
    page = render_html([a])
    positive, negative, neutral = word_class(page, "great"), word_class(page, "boring"), word_class(page, "plot")
    assert len({positive, negative, neutral}) == 3
    backgrounds = dict(re.findall(r"\.(\w+)\{background:([^;}]+)", page))
    assert backgrounds[positive] != backgrounds[negative]
    assert 'title="great: +2"' in page and 'title="boring: -2"' in page


def test_nan_and_zero_scores_are_neutral():
    seg = segment("a b c")
    a = Attribution("a b c", seg.words, seg.spans, [np.nan, 0.0, 0.0], 0, "shap", {})
    page = render_html([a])
    assert {word_class(page, w) for w in "abc"} == {"z"}
    assert "no score (NaN)" in page


def test_shows_prediction_probability_and_explained_class():
    same = make_attribution("good", {"good": 1.0}, target=1, probs=(0.1, 0.9))
    other = make_attribution("bad", {"bad": -1.0}, target=1, probs=(0.85, 0.15))
    page = render_html([same, other])
    first, second = page.split("<article")[1:]
    assert "predicted <b>positive</b> (p = 0.900)" in first and "explaining" not in first
    assert "predicted <b>negative</b> (p = 0.850)" in second
    assert "explaining <b>positive</b> (p = 0.150)" in second


def test_without_meta_shows_the_explained_class_index():
    page = render_html([make_attribution("ok", {"ok": 1.0}, target=0, probs=None, labels=None)])
    assert "explaining <b>class 0</b>" in page and "predicted" not in page


def test_empty_inputs_and_a_global_scale():
    assert "No texts to show" in render_html([])
    page = render_html([make_attribution("", {})])
    assert text_blocks(page) == [""]
    scaled = render_html([make_attribution("good ok", {"good": 0.5, "ok": 0.05})], scale=0.5)
    assert "<span>-0.5</span><span>-0.25</span><span>0</span><span>+0.25</span><span>+0.5</span>" in scaled
    assert word_class(scaled, "good") == "p10" and word_class(scaled, "ok") == "p1"
    with pytest.raises(ValueError, match="scale"):
        render_html([], scale=0.0)


def test_many_texts_render_quickly(tmp_path):
    attributions = [make_attribution(f"text {i} is good or bad", {"good": 0.3, "bad": -0.1}) for i in range(3000)]
    path = tmp_path / "page.html"
    write_html(path, attributions, title="many")
    page = path.read_text(encoding="utf-8")
    assert page.count("<article") == 3000
    assert "3000 texts" in page

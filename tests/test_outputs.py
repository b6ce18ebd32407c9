"""Outputs that never damage what they point at, and bad input that never turns into silent wrong output.

Covers :func:`plex.io.open_output` (``-``, symlinks, FIFOs, devices, atomic regular files),
:func:`plex.io.check_outputs`, texts without words, truncated words, unclosed CSV quotes and
``explain_file`` (with a stand-in student, so no training is needed).
"""

from __future__ import annotations

import html
import io
import json
import logging
import os
import re
import stat
import sys
import threading

import numpy as np
import pytest

from plex.attribution import Attribution
from plex.data import DataError
from plex.io import (
    OutputError,
    attribution_record,
    check_outputs,
    empty_attribution,
    is_stdout,
    open_output,
    read_texts,
    write_jsonl,
)
from plex.render import render_html, terminal_heatmap, write_html
from plex.words import segment

RECORDS = [{"text": "héllo 😍", "n": 1}, {"text": "two", "n": 2}]
EXPECTED = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS)


def attribution(text: str, scores=None, visible=None, **meta) -> Attribution:
    seg = segment(text)
    scores = np.linspace(1.0, -1.0, len(seg)) if scores is None else scores
    meta = {"probs": np.array([0.3, 0.7]), "labels": ["neg", "pos"], **meta}
    if visible is not None:
        meta["visible_words"] = visible
    return Attribution(text, seg.words, seg.spans, scores, 1, "lime", meta)


# ---------------------------------------------------------------- where outputs go


@pytest.mark.parametrize("name", ["-", "/dev/stdout"])
def test_dash_and_dev_stdout_write_to_standard_output(capsys, name):
    write_jsonl(name, RECORDS)
    assert capsys.readouterr().out == EXPECTED
    write_html(name, [attribution("good film")], title="t")
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and page.endswith("</html>\n")
    assert is_stdout(name) and not is_stdout("out.jsonl") and not is_stdout(None)


def test_dash_writes_to_the_standard_output_descriptor(capfd):
    write_jsonl("-", RECORDS)
    print("after", flush=True)  # the stream is flushed and still usable
    assert capfd.readouterr().out == EXPECTED + "after\n"


def test_standard_output_is_utf8_whatever_the_locale(monkeypatch):
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    write_jsonl("-", RECORDS)
    sys.stdout.write("still open\n")
    sys.stdout.flush()
    assert raw.getvalue().decode("utf-8") == EXPECTED + "still open\n"


def test_a_symlink_stays_a_link_and_its_target_gets_the_content(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "out.jsonl"
    target.write_text("old\n", encoding="utf-8")
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    write_jsonl(link, RECORDS)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text(encoding="utf-8") == EXPECTED
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # the replaced file keeps its permissions
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["out.jsonl"]  # no temp file left


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "page.html"
    link.symlink_to(tmp_path / "new" / "page.html")
    write_html(link, [attribution("ok")])
    assert link.is_symlink() and (tmp_path / "new" / "page.html").read_text(encoding="utf-8").startswith("<!DOCTYPE")


def test_a_failed_write_through_a_symlink_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "target.jsonl"
    target.write_text("old\n", encoding="utf-8")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)

    def records():
        yield {"a": 1}
        raise RuntimeError("explainer crashed")

    with pytest.raises(RuntimeError):
        write_jsonl(link, records())
    assert link.is_symlink() and target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "target.jsonl"]


def test_a_regular_file_is_replaced_atomically(tmp_path):
    path = tmp_path / "deep" / "er" / "out.jsonl"  # missing folders are created
    write_jsonl(path, RECORDS)
    before = path.stat().st_ino
    with pytest.raises(ValueError), open_output(path) as f:
        f.write("half")
        raise ValueError("crash mid-write")
    assert path.read_text(encoding="utf-8") == EXPECTED and path.stat().st_ino == before
    write_jsonl(path, RECORDS[:1])
    assert path.stat().st_ino != before  # a new file took the old one's place
    assert path.read_text(encoding="utf-8") == EXPECTED.splitlines(keepends=True)[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_written_in_place_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_jsonl(fifo, RECORDS)
    reader.join(timeout=10)
    assert received == [EXPECTED.encode("utf-8")]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_a_device_is_written_in_place():
    write_html("/dev/null", [attribution("ok")])
    write_jsonl("/dev/null", RECORDS)
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_a_folder_is_not_an_output(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        write_jsonl(tmp_path, RECORDS)
    with pytest.raises(OutputError, match="is a folder"):
        check_outputs([tmp_path])


# ---------------------------------------------------------------- check_outputs


def test_an_output_that_is_the_input_is_refused(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("keep me\n", encoding="utf-8")
    for output in (texts, str(texts), tmp_path / "sub" / ".." / "texts.txt"):
        with pytest.raises(OutputError, match="same file as the input"):
            check_outputs({"--output": output}, {"--input": texts})
    assert texts.read_text(encoding="utf-8") == "keep me\n"


def test_an_output_through_a_symlink_to_the_input_is_refused(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("keep me\n", encoding="utf-8")
    (tmp_path / "alias.txt").symlink_to(texts)
    (tmp_path / "folder").symlink_to(tmp_path)
    for output in (tmp_path / "alias.txt", tmp_path / "folder" / "texts.txt"):
        with pytest.raises(OutputError) as err:
            check_outputs({"--html": output}, {"--input": texts})
        assert "--html" in str(err.value) and "--input" in str(err.value) and "another output path" in str(err.value)
    with pytest.raises(OutputError, match="same file as the input"):  # and the other way round
        check_outputs([texts], [tmp_path / "alias.txt"])


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(OutputError, match=r"\(--output\) and .*\(--html\) .*same file.*own path"):
        check_outputs({"--output": out, "--html": tmp_path / "." / "out.jsonl"})  # a new file
    out.write_text("", encoding="utf-8")
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(OutputError, match="same file"):
        check_outputs([out, tmp_path / "link"])
    with pytest.raises(OutputError, match="both standard output"):
        check_outputs({"--output": "-", "--html": "/dev/stdout"})


def test_distinct_outputs_none_and_devices_are_accepted(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("x\n", encoding="utf-8")
    check_outputs({"--output": tmp_path / "a.jsonl", "--html": tmp_path / "a.html"}, {"--input": texts})
    check_outputs({"--output": "-", "--html": None}, [texts])
    check_outputs(["/dev/null", "/dev/null", "-"], [texts])  # writing a device twice loses nothing


# ---------------------------------------------------------------- texts without words, truncation


def test_record_of_an_empty_text():
    record = attribution_record(empty_attribution("   ", "plex", ["neg", "pos"]))
    assert record == {
        "text": "   ", "words": [], "spans": [], "scores": [], "target": None, "target_label": None,
        "predicted": None, "predicted_label": None, "probs": None, "method": "plex", "visible_words": 0,
        "visible": [], "empty": True,
    }
    json.dumps(record, allow_nan=False)


def test_records_flag_the_words_the_model_did_not_read():
    record = attribution_record(attribution("one two three four", visible=2))
    assert record["visible_words"] == 2 and record["visible"] == [True, True, False, False]
    assert record["empty"] is False and record["predicted"] == 1
    whole = attribution_record(attribution("one two", visible=9))
    assert whole["visible_words"] == 2 and whole["visible"] == [True, True]
    unknown = attribution_record(attribution("one two"))
    assert unknown["visible_words"] is None and unknown["visible"] is None


def test_html_greys_out_words_the_model_did_not_read():
    cut = attribution("great <b>film</b> & more", scores=np.ones(len(segment("great <b>film</b> & more"))),
                      visible=2)
    page = render_html([cut, attribution("fine", visible=1)])
    assert "grey</span>: not read by the model (truncated" in page
    assert "the model read 2 of 11 words (truncated)" in page
    assert page.count('class="t"') == 1 + 9  # the legend's word and the 9 unread words
    assert '<span class="t" title="&amp;: not read by the model (truncated)">&amp;</span>' in page
    body = re.search(r'<div class="text" dir="auto">(.*?)</div>', page, flags=re.S).group(1)
    assert "<b>" not in body and html.unescape(re.sub(r"<[^>]+>", "", body)) == cut.text
    assert "not read by the model" not in render_html([attribution("fine", visible=1)])
    styles = [span.style for span in terminal_heatmap(cut).spans]
    assert styles.count("grey50") == 9


def test_html_shows_an_empty_text_as_such():
    page = render_html([empty_attribution("  ", "plex", ["a", "b"]), empty_attribution("", "plex")])
    assert page.count("<b>empty text</b>: no words, nothing to explain") == 2
    assert '<div class="text" data-blank dir="auto">  </div>' in page
    assert "predicted" not in page and "explaining" not in page and "class -1" not in page
    assert "[data-blank]::before{content:'(empty text)'" in page


# ---------------------------------------------------------------- unclosed CSV quotes


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_an_unclosed_quote_names_the_line_where_it_opened(tmp_path, suffix, sep):
    path = tmp_path / f"texts{suffix}"
    path.write_text(f'id{sep}text\n1{sep}fine\n2{sep}"multi\nline"\n3{sep}"never closed\n4{sep}swallowed\n',
                    encoding="utf-8")
    with pytest.raises(DataError, match=r"line 5 .*never closed.*rest of the file"):
        read_texts(path)


def test_an_unclosed_quote_after_a_closed_multiline_field(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text('text,note\n"a\nb","open\nc\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 3 "):
        read_texts(path)


def test_quotes_that_close_are_fine(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text('text,n\n"say ""hi""\nthere",1\nit"s,2\n"last"', encoding="utf-8")
    assert read_texts(path) == ['say "hi"\nthere', 'it"s', "last"]


def test_an_unclosed_quote_in_a_large_file_says_so(tmp_path):
    path = tmp_path / "texts.csv"
    path.write_text('text\nok\n"open\n' + "word " * 40_000 + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 3 .*quote .*never closed"):
        read_texts(path)


# ---------------------------------------------------------------- explain_file


class FakeStudent:
    """Stands in for :class:`plex.Plex`: one score per word, the target's index as every score."""

    method = "plex"
    mode = "conditional"
    labels = ["negative", "positive"]
    calls: list = []

    @classmethod
    def load(cls, checkpoint, classifier=None, encoder=None, device=None, batch_size=64):
        cls.calls.append(("load", str(checkpoint), classifier))
        return cls()

    def explain(self, texts, batch_size=256, target=None):
        FakeStudent.calls.append(("explain", list(texts), target))
        out = []
        for text in texts:
            assert segment(text).words, "the classifier must not see texts without words"
            seg = segment(text)
            t = 1 if target is None else target
            out.append(Attribution(text, seg.words, seg.spans, np.full(len(seg), float(t)), t, "plex",
                                   {"probs": np.array([0.4, 0.6]), "labels": self.labels,
                                    "visible_words": min(len(seg), 3)}))
        return out


@pytest.fixture
def fake_student(monkeypatch):
    from plex.student.infer import Plex

    FakeStudent.calls = []
    monkeypatch.setattr(Plex, "from_pretrained", FakeStudent.load, raising=False)
    return FakeStudent


def test_explain_file_keeps_empty_texts_in_place(tmp_path, fake_student, caplog):
    from plex.student.infer import explain_file

    texts = ["good film", "", "   \t", "one two three four five"]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        result = explain_file("ckpt", tmp_path / "in.txt", tmp_path / "out.jsonl", html=tmp_path / "out.html",
                              progress=False, batch_size=1, classifier="my-clf")
    assert fake_student.calls[0] == ("load", "ckpt", "my-clf")
    assert [c[1] for c in fake_student.calls[1:]] == [["good film"], ["one two three four five"]]
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == texts and len(result) == 4
    assert [r["empty"] for r in rows] == [False, True, True, False]
    assert rows[1]["words"] == rows[1]["scores"] == [] and rows[1]["predicted"] is None and rows[1]["probs"] is None
    assert rows[0]["predicted_label"] == "positive"
    assert rows[3]["visible"] == [True, True, True, False, False] and rows[3]["visible_words"] == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "2 of 4 texts" in warnings[0].getMessage() and "#2, #3" in warnings[0].getMessage()
    page = (tmp_path / "out.html").read_text(encoding="utf-8")
    assert page.count("<b>empty text</b>") == 2 and "not read by the model" in page


@pytest.mark.parametrize("target, index", [("NEGATIVE", 0), (1, 1), ("0", 0)])
def test_explain_file_explains_the_given_target(tmp_path, fake_student, capsys, target, index):
    from plex.student.infer import explain_file

    (tmp_path / "in.jsonl").write_text('{"text": "good"}\n', encoding="utf-8")
    explain_file("ckpt", tmp_path / "in.jsonl", "-", progress=False, target=target)
    row = json.loads(capsys.readouterr().out)
    assert row["target"] == index and row["target_label"] == ["negative", "positive"][index]
    assert fake_student.calls[-1][2] == index


def test_explain_file_rejects_an_unknown_target(tmp_path, fake_student):
    from plex.student.infer import explain_file

    (tmp_path / "in.txt").write_text("good\n", encoding="utf-8")
    with pytest.raises(DataError, match="'neutral' is not a class.*0 'negative', 1 'positive'"):
        explain_file("ckpt", tmp_path / "in.txt", tmp_path / "out.jsonl", progress=False, target="neutral")
    assert not (tmp_path / "out.jsonl").exists()


def test_explain_file_refuses_to_overwrite_its_input_before_any_work(tmp_path, fake_student):
    from plex.student.infer import explain_file

    texts = tmp_path / "in.txt"
    texts.write_text("keep me\n", encoding="utf-8")
    (tmp_path / "alias.txt").symlink_to(texts)
    for output, html in ((texts, None), (tmp_path / "alias.txt", None), (tmp_path / "o.jsonl", texts),
                         (tmp_path / "o.jsonl", tmp_path / "o.jsonl")):
        with pytest.raises(OutputError):
            explain_file("ckpt", texts, output, html=html, progress=False)
    assert fake_student.calls == []  # refused before the student was loaded
    assert texts.read_text(encoding="utf-8") == "keep me\n"


def test_words_past_a_real_classifiers_length_limit_are_flagged(tiny_bert_path, tmp_path):
    from plex.classifiers import HFClassifier
    from plex.teachers import Occlusion

    classifier = HFClassifier.from_pretrained(tiny_bert_path, device="cpu", max_length=8)
    text = "one two three four five six seven eight nine ten eleven twelve"
    (a,) = Occlusion().explain(classifier, [text])
    record = attribution_record(a)
    n = record["visible_words"]
    assert 0 < n < len(record["words"]) == 12  # [CLS] + 6 words + [SEP] fit in 8 tokens
    assert record["visible"] == [True] * n + [False] * (12 - n)
    write_html(tmp_path / "page.html", [a])
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert "not read by the model (truncated" in page and f"read {n} of 12 words" in page
    assert page.count('title="twelve: not read by the model (truncated)"') == 1

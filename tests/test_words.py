import numpy as np
import pytest

from plex.words import align_tokens, join_kept, segment


def test_words_and_punctuation_with_spans():
    text = "The film isn't bad, it's cheap-looking!"
    seg = segment(text)
    assert seg.words == ["The", "film", "isn't", "bad", ",", "it's", "cheap-looking", "!"]
    assert all(text[s:e] == w for w, (s, e) in zip(seg.words, seg.spans))


def test_repeated_words_are_separate_positions():
    seg = segment("very very good, very")
    assert seg.words == ["very", "very", "good", ",", "very"]
    assert seg.spans[0] != seg.spans[1] != seg.spans[4]
    assert [seg.spans[i][0] for i in (0, 1, 4)] == [0, 5, 16]


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_and_whitespace_give_no_words(text):
    seg = segment(text)
    assert seg.words == [] and seg.spans == []


def test_unicode_accents_and_emoji():
    text = "Café crème was naïve 😍 — très bien"
    seg = segment(text)
    assert "Café" in seg.words and "crème" in seg.words and "naïve" in seg.words
    assert "😍" in seg.words and "—" in seg.words
    assert all(text[s:e] == w for w, (s, e) in zip(seg.words, seg.spans))


def test_non_string_is_rejected_with_fix():
    with pytest.raises(TypeError, match="str"):
        segment(None)


def test_join_kept_removes_words_and_keeps_the_rest():
    text = "not good , really."
    seg = segment(text)
    keep = np.array([0, 1, 1, 1, 1], dtype=bool)
    assert join_kept(text, seg.spans, keep) == "good , really."
    assert join_kept(text, seg.spans, ~keep, mask_token="[MASK]") == "not [MASK] [MASK] [MASK][MASK]"


def test_align_tokens_uses_offsets_not_strings():
    spans = segment("don't stop").spans  # "don't" [0,5), "stop" [6,10)
    offsets = [(0, 0), (0, 3), (3, 4), (4, 5), (6, 10), (0, 0)]
    assert align_tokens(offsets, spans).tolist() == [-1, 0, 0, 0, 1, -1]
    # a sentencepiece-style token that carries its leading space still maps to the word it overlaps
    assert align_tokens([(5, 10)], spans).tolist() == [1]
    assert align_tokens([(0, 0)], []).tolist() == [-1]

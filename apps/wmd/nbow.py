"""Documents as normalised bags of words (nBOW) over the rows of an embedding table.

A document's nBOW puts weight ``d_i = c_i / sum_j c_j`` on each distinct in-vocabulary word ``i``
(``c_i`` its count, optionally multiplied by the word's idf), as in Kusner et al. (2015) and
gensim's ``wmdistance``. Out-of-vocabulary tokens are dropped and counted.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from wdist_apps.wmd.embeddings import Embeddings
from wdist_apps.wmd.text import as_tokens, english_stop_words


@dataclass
class Documents:
    """A batch of nBOW documents in a ragged (CSR) layout: document ``i`` holds the embedding rows
    ``ids[indptr[i]:indptr[i + 1]]`` (distinct) with weights ``weights[...]`` (float64, summing to
    1). No padding is stored, so one long document does not inflate a million short ones.
    ``n_tokens`` / ``n_oov`` / ``n_stop``: ``[N]`` tokens after tokenisation / dropped as
    out-of-vocabulary / dropped as stop words.
    """

    ids: np.ndarray
    weights: np.ndarray
    indptr: np.ndarray
    n_tokens: np.ndarray
    n_oov: np.ndarray
    n_stop: np.ndarray

    def __len__(self) -> int:
        return int(self.indptr.shape[0] - 1)

    @property
    def lengths(self) -> np.ndarray:
        """Distinct in-vocabulary words per document: ``[N]``."""
        return np.diff(self.indptr)

    def doc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Document ``i`` as ``(ids [n_i], weights [n_i])``."""
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        return self.ids[lo:hi], self.weights[lo:hi]

    def subset(self, index: Sequence[int] | np.ndarray) -> Documents:
        """The documents ``index`` (in that order) as a new :class:`Documents`."""
        index = np.asarray(index, dtype=np.int64)
        lengths = self.lengths[index]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        take = np.repeat(self.indptr[index] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Documents(
            self.ids[take], self.weights[take], indptr, self.n_tokens[index], self.n_oov[index],
            self.n_stop[index],
        )

    def check_not_empty(self, name: str) -> None:
        """Raise ``ValueError`` naming the documents of ``name`` that have no in-vocabulary word."""
        empty = np.flatnonzero(self.lengths == 0)
        if empty.size:
            shown = ", ".join(str(i) for i in empty[:10]) + (", ..." if empty.size > 10 else "")
            stop_only = empty[(self.n_stop[empty] > 0) & (self.n_oov[empty] == 0)]
            why = (f" ({stop_only.size} of them made only of English stop words, such as index "
                   f"{stop_only[0]}: pass stop_words=False, or --keep-stop-words on the command "
                   "line, to keep them)" if stop_only.size else "")
            raise ValueError(
                f"{name}: {empty.size} document(s) have no in-vocabulary words (index {shown})"
                f"{why}; WMD is undefined for an empty document (gensim returns inf): drop them "
                "first, e.g. keep docs where WMD.transform(docs).lengths > 0"
            )


def fit_idf(
    docs: Iterable[str | Sequence[str]],
    embeddings: Embeddings,
    lowercase: bool = True,
    stop_words: bool = True,
) -> np.ndarray:
    """Smoothed inverse document frequency per embedding row, as scikit-learn's
    ``TfidfVectorizer(smooth_idf=True)``: ``idf(w) = ln((1 + N) / (1 + df(w))) + 1``.

    Returns a float64 array ``[V]`` (words never seen get the largest value, ``ln(1 + N) + 1``).
    """
    df: Counter[int] = Counter()
    n = 0
    for doc in docs:
        toks = as_tokens(doc, lowercase, stop_words)
        df.update({embeddings.index[t] for t in toks if t in embeddings.index})
        n += 1
    if n == 0:
        raise ValueError("docs: need at least one document to fit idf weights")
    idf = np.full(len(embeddings), math.log(1.0 + n) + 1.0)
    rows = np.fromiter(df.keys(), dtype=np.int64, count=len(df))
    counts = np.fromiter(df.values(), dtype=np.float64, count=len(df))
    idf[rows] = np.log((1.0 + n) / (1.0 + counts)) + 1.0
    return idf


def encode(
    docs: Iterable[str | Sequence[str]],
    embeddings: Embeddings,
    idf: np.ndarray | None = None,
    lowercase: bool = True,
    stop_words: bool = True,
) -> Documents:
    """Turn raw texts (tokenised with :func:`wdist_apps.wmd.text.tokenize`) or token lists (used as
    given) into nBOW :class:`Documents`."""
    if isinstance(docs, str):
        raise TypeError("docs must be a list of documents, got a single str")
    rows: list[np.ndarray] = []
    wts: list[np.ndarray] = []
    n_tokens: list[int] = []
    n_oov: list[int] = []
    n_stop: list[int] = []
    index = embeddings.index
    for doc in docs:
        toks = as_tokens(doc, lowercase, stop_words=False)
        if stop_words and isinstance(doc, str):  # token lists are used as given
            stop = english_stop_words()
            kept = [t for t in toks if t.lower() not in stop]
            n_stop.append(len(toks) - len(kept))
            toks = kept
        else:
            n_stop.append(0)
        counts = Counter(index[t] for t in toks if t in index)
        ids = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        c = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        if idf is not None:
            c = c * idf[ids]
        rows.append(ids)
        wts.append(c / c.sum() if c.size else c)
        n_tokens.append(len(toks))
        n_oov.append(len(toks) - int(sum(counts.values())))
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    return Documents(
        np.concatenate(rows) if rows else np.zeros(0, np.int64),
        np.concatenate(wts) if wts else np.zeros(0),
        np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        np.array(n_tokens, dtype=np.int64),
        np.array(n_oov, dtype=np.int64),
        np.array(n_stop, dtype=np.int64),
    )

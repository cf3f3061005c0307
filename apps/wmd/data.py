"""Offline corpora (the real text gensim ships in ``gensim/test/test_data``) and a word2vec model
trained on it once, cached under :func:`wdist_apps.wmd.embeddings.cache_dir`.

- ``lee_background.cor``: 300 news articles (Lee et al. 2005), one per line;
- ``lee.cor``: 50 more news articles;
- ``pang_lee_polarity.cor``: 200 movie-review sentences labelled ``__label__pos`` or
  ``__label__neg``;
- ``mini_newsgroup``: 200 20-Newsgroups posts (``alt.atheism`` / ``sci.space``, 100 each), a
  zlib-compressed pickle of a scikit-learn ``Bunch``, read with an allow-list unpickler.
"""

from __future__ import annotations

import copyreg
import hashlib
import io
import json
import pickle
import re
import zlib
from pathlib import Path

import numpy as np

from wdist_apps.runtime import progress
from wdist_apps.wmd.embeddings import Embeddings, cache_dir, load_embeddings
from wdist_apps.wmd.text import tokenize

# Word2vec settings for the cached model (kept here so that the cache key changes with them).
W2V = {
    "corpus": "lee+polarity+newsgroups",
    "vector_size": 100,
    "window": 5,
    "min_count": 2,
    "sg": 1,
    "epochs": 30,
    "seed": 0,
}


def _datapath(name: str) -> Path:
    try:
        from gensim.test.utils import datapath
    except ImportError as err:
        raise ValueError(f"the bundled corpus {name!r} ships with gensim: install gensim") from err
    return Path(datapath(name))


def lee_documents() -> list[str]:
    """The 300 Lee background news articles (raw text)."""
    text = _datapath("lee_background.cor").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def lee_sentences(min_words: int = 5) -> list[str]:
    """The Lee articles (background + ``lee.cor``) split into sentences with at least
    ``min_words`` tokens: about four thousand short documents for k-NN benchmarks."""
    docs = lee_documents() + [
        line.strip()
        for line in _datapath("lee.cor").read_text(encoding="latin-1").splitlines()
        if line.strip()
    ]
    out = []
    for doc in docs:
        for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'])", doc):
            if len(tokenize(sent, stop_words=False)) >= min_words:
                out.append(sent.strip())
    return out


def polarity() -> tuple[list[str], list[str]]:
    """The 200 labelled Pang & Lee sentences: ``(texts, labels)`` with labels "pos" / "neg"."""
    texts, labels = [], []
    for line in _datapath("pang_lee_polarity.cor").read_text(encoding="latin-1").splitlines():
        if line.strip():
            label, _, text = line.partition(" ")
            labels.append(label.removeprefix("__label__"))
            texts.append(text.strip())
    return texts, labels


class _Bunch(dict):
    def __setstate__(self, state: dict) -> None:
        self.update(state)


class _SafeUnpickler(pickle.Unpickler):
    """Only the few classes a pickled scikit-learn ``Bunch`` of strings and arrays needs."""

    ALLOWED = {
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("__builtin__", "dict"): dict,
        ("__builtin__", "object"): object,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__new__,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("sklearn.datasets.base", "Bunch"): _Bunch,
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}") from None


def mini_newsgroups() -> tuple[list[str], list[str]]:
    """200 20-Newsgroups posts, ``(texts, labels)`` with labels "alt.atheism" / "sci.space".

    The header block (which names the newsgroup) is removed from every post.
    """
    raw = zlib.decompress(_datapath("mini_newsgroup").read_bytes())
    bunch = _SafeUnpickler(io.BytesIO(raw), encoding="latin-1").load()
    names = list(bunch["target_names"])
    texts = [post.split("\n\n", 1)[-1].strip() for post in bunch["data"]]
    return texts, [names[int(t)] for t in np.asarray(bunch["target"])]


def lee_word2vec(verbose: bool = False) -> Embeddings:
    """Word2vec trained with gensim on the Lee articles, the polarity sentences and the
    newsgroup posts (labels stripped), cached as a memory-mapped :class:`Embeddings` after the
    first call, which takes about 20 s of CPU (19 s measured on one core of an AMD EPYC;
    a busy machine stretches the wall time; ``verbose`` shows a bar over its 30 epochs)."""
    key = hashlib.sha1(json.dumps(W2V, sort_keys=True).encode()).hexdigest()[:12]
    target = cache_dir() / "wmd" / f"lee-word2vec-{key}"
    if (target / "vocab.txt").is_file():
        try:
            return load_embeddings(target)
        except ValueError:  # a damaged cache (e.g. an interrupted older version): retrain it
            (target / "vocab.txt").unlink()
    try:
        from gensim.models import Word2Vec
        from gensim.models.callbacks import CallbackAny2Vec
    except ImportError as err:
        raise ValueError("training the bundled word2vec model needs gensim") from err
    sentences = [tokenize(s, stop_words=False) for s in lee_sentences(min_words=1)]
    sentences += [tokenize(t, stop_words=False) for t in polarity()[0]]
    sentences += [tokenize(t, stop_words=False) for t in mini_newsgroups()[0]]
    if verbose:
        print(f"training word2vec on {len(sentences)} sentences (once; cached in {target})")
    params = {k: v for k, v in W2V.items() if k != "corpus"}
    quiet = {} if verbose else {"disable": True}
    with progress(total=params["epochs"], desc="word2vec", unit="epoch", **quiet) as bar:

        class EpochProgress(CallbackAny2Vec):
            def on_epoch_end(self, model: Word2Vec) -> None:
                bar.update(1)

        model = Word2Vec(sentences, workers=1, callbacks=[EpochProgress()], **params)
    Embeddings.from_keyedvectors(model.wv).save(target)
    return load_embeddings(target)

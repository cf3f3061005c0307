"""Users' WMD input that is not what it looks like: binary corpora, stop-word-only documents."""

import numpy as np
import pytest

from wdist_apps.wmd import WMD
from wdist_apps.wmd.corpus import read_corpus
from wdist_apps.wmd.embeddings import Embeddings


@pytest.fixture
def emb() -> Embeddings:
    words = ["fire", "water", "city", "river", "house"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 4)).astype(np.float32)
    return Embeddings(words, vectors)


def test_binary_file_is_not_a_corpus(tmp_path):
    blob = tmp_path / "model.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=r"model\.bin: not a text file \(a NUL byte at offset 0\)"):
        read_corpus(blob)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 3)
    with pytest.raises(ValueError, match="not UTF-8"):
        read_corpus(latin)


def test_a_few_bad_bytes_are_replaced_with_a_warning(tmp_path):
    f = tmp_path / "docs.txt"
    f.write_bytes(b"a river in the city\n" * 200 + b"one bad \xff byte\n")
    with pytest.warns(UserWarning, match="1 bytes that are not UTF-8"):
        corpus = read_corpus(f)
    assert len(corpus) == 201 and "\ufffd" in corpus.texts[-1]


def test_stop_word_only_query_says_so(emb):
    # "fire" is in scikit-learn's English stop-word list (and in the vocabulary here)
    wmd = WMD(emb)
    docs = wmd.transform(["fire", "fire in the city", "zzz"])
    assert docs.n_stop.tolist() == [1, 3, 0] and docs.lengths.tolist() == [0, 1, 0]
    with pytest.raises(ValueError, match=r"1 of them made only of English stop words, such as "
                                         r"index 0: pass stop_words=False"):
        wmd.knn(["fire"], ["a river in the city", "water house"], k=1)
    kept = WMD(emb, stop_words=False)
    dist, ind = kept.knn(["fire"], ["a river in the city", "the fire"], k=1)
    assert ind.tolist() == [[1]] and dist[0, 0] < 1e-12  # "the" is out of vocabulary here

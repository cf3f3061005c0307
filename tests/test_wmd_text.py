import numpy as np
import pytest
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from wdist_apps.wmd import Embeddings, encode, fit_idf, tokenize


def _emb(words):
    rng = np.random.default_rng(0)
    return Embeddings(words, rng.normal(size=(len(words), 4)).astype(np.float32))


def test_tokenize_lowercases_drops_stop_words_and_punctuation():
    toks = tokenize("The President, Obama, speaks to the MEDIA in Illinois!")
    assert toks == ["president", "obama", "speaks", "media", "illinois"]
    assert not set(toks) & ENGLISH_STOP_WORDS
    assert tokenize("Don't x-ray it", stop_words=False) == ["don't", "x-ray", "it"]
    assert tokenize("Paris PARIS", lowercase=False, stop_words=False) == ["Paris", "PARIS"]


def test_tokenize_rejects_non_text():
    with pytest.raises(TypeError, match="text"):
        tokenize(3)


def test_encode_counts_oov_and_normalises_counts():
    emb = _emb(["cat", "dog", "sat"])
    docs = encode(["cat dog cat zebra", ["dog", "unicorn"]], emb)
    assert docs.n_tokens.tolist() == [4, 2]
    assert docs.n_oov.tolist() == [1, 1]
    ids, w = docs.doc(0)
    weights = dict(zip((emb.words[i] for i in ids), w))
    assert weights == pytest.approx({"cat": 2 / 3, "dog": 1 / 3})
    assert docs.doc(1)[1].tolist() == [1.0]
    assert docs.indptr.tolist() == [0, 2, 3]  # ragged: no padding stored
    sub = docs.subset([1, 0])
    assert sub.lengths.tolist() == [1, 2]
    assert sub.doc(1)[1].tolist() == docs.doc(0)[1].tolist()


def test_empty_document_is_a_clear_error():
    emb = _emb(["cat"])
    docs = encode(["cat", "the of and", "zebra"], emb)
    assert docs.lengths.tolist() == [1, 0, 0]
    with pytest.raises(
        ValueError, match=r"2 document\(s\) have no in-vocabulary words \(index 1, 2\)"
    ):
        docs.check_not_empty("corpus")


def test_idf_matches_scikit_learn():
    from sklearn.feature_extraction.text import TfidfVectorizer

    corpus = ["cat dog", "cat bird", "cat fish dog", "eel"]
    emb = _emb(["cat", "dog", "bird", "fish", "eel"])
    idf = fit_idf(corpus, emb)
    vec = TfidfVectorizer().fit(corpus)
    for word, i in emb.index.items():
        assert idf[i] == pytest.approx(vec.idf_[vec.vocabulary_[word]])
    docs = encode(["cat dog dog"], emb, idf=idf)
    ids, w = docs.doc(0)
    raw = np.array([1, 2]) * idf[[emb.index["cat"], emb.index["dog"]]]
    assert dict(zip(ids, w)) == pytest.approx(
        {emb.index["cat"]: raw[0] / raw.sum(), emb.index["dog"]: raw[1] / raw.sum()}
    )

import pickle

import pytest

pytest.importorskip("gensim")

from wdist_apps.wmd import data  # noqa: E402


def test_bundled_corpora_are_read_offline():
    docs = data.lee_documents()
    assert len(docs) == 300 and all(docs)
    sentences = data.lee_sentences()
    assert 2000 < len(sentences) < 4000
    texts, labels = data.polarity()
    assert len(texts) == 200 and set(labels) == {"pos", "neg"}
    posts, topics = data.mini_newsgroups()
    assert len(posts) == 200 and sorted(set(topics)) == ["alt.atheism", "sci.space"]
    assert topics.count("sci.space") == 100
    assert not any(p.startswith(("From:", "Newsgroups:", "Path:")) for p in posts)  # no headers


def test_safe_unpickler_refuses_other_classes():
    import io

    payload = pickle.dumps(pickle.Unpickler)  # a global outside the allow-list
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        data._SafeUnpickler(io.BytesIO(payload)).load()

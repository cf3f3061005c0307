import warnings

import numpy as np
import pytest
import torch

from wdist_apps.wmd import WMD, Embeddings, knn_vote


@pytest.fixture(scope="module")
def emb():
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(80)]
    return Embeddings(words, rng.normal(size=(80, 10)).astype(np.float32))


def _docs(n, seed, vocab=80, max_len=12, oov=True):
    rng = np.random.default_rng(seed)
    docs = []
    for _ in range(n):
        toks = [f"w{i}" for i in rng.integers(0, vocab, size=rng.integers(1, max_len + 1))]
        if oov and rng.random() < 0.3:
            toks.append("out-of-vocabulary")
        docs.append(toks)
    return docs


@pytest.mark.parametrize("normalize", [True, False])
def test_exact_wmd_equals_gensim_wmdistance(emb, normalize):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(emb.dim)
    kv.add_vectors(emb.words, np.asarray(emb.vectors))
    docs = _docs(30, seed=1)
    wmd = WMD(emb, normalize=normalize)
    ours = wmd.pairwise(docs)  # 435 unordered pairs
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            ref = kv.wmdistance(docs[i], docs[j], norm=normalize)
            assert ours[i, j] == pytest.approx(ref, abs=1e-6), (i, j)
    assert wmd.distance(docs[0], docs[1]) == pytest.approx(ours[0, 1], abs=1e-12)


def test_identical_documents_are_at_zero_and_word_order_does_not_matter(emb):
    wmd = WMD(emb)
    assert wmd.distance("w1 w2 w3 w2", "w2 w3 w2 w1") == 0.0
    assert wmd.distance(["w5"], ["w5", "w5"]) == 0.0
    assert wmd.distance(["w5"], ["w6"]) > 0


def test_empty_document_raises(emb):
    wmd = WMD(emb)
    with pytest.raises(ValueError, match="doc2: 1 document.*no in-vocabulary words"):
        wmd.distance("w1 w2", "zebra unicorn")
    with pytest.raises(ValueError, match="corpus"):
        wmd.knn(["w1"], [["w2"], []], k=1)


def test_bad_arguments_are_named(emb):
    with pytest.raises(TypeError, match="embeddings must be an wdist_apps.wmd.Embeddings"):
        WMD({"w1": [0.0]})
    wmd = WMD(emb)
    with pytest.raises(ValueError, match="method must be one of"):
        wmd.distance("w1", "w2", method="fast")
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 2\]"):
        wmd.knn(["w1"], [["w2"], ["w3"]], k=3)
    with pytest.raises(ValueError, match="call WMD.fit"):
        WMD(emb, idf=True).distance("w1", "w2")
    with pytest.raises(TypeError, match="batch_size must be an int, got str"):
        WMD(emb, batch_size="4")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        WMD(emb, batch_size=0)
    with pytest.raises(TypeError, match="doc1 must be a str .* got int"):
        wmd.distance(3, "w1")
    with pytest.raises(TypeError, match="doc2 must be a str .* got int"):
        wmd.flow("w1", 3)
    with pytest.raises(TypeError, match=r"docs1\[1\] must be a str .* got int"):
        wmd.paired(["w1", 5], ["w2", "w3"])
    with pytest.raises(TypeError, match="docs must be a list of documents .* got int"):
        wmd.pairwise(3)


def test_classifier_accepts_encoded_documents_with_idf(emb):
    docs = [["w1", "w2"], ["w2", "w3"], ["w40", "w41"], ["w41", "w42"]]
    y = ["a", "a", "b", "b"]
    wmd = WMD(emb, idf=True).fit(docs)
    clf = wmd.kneighbors_classifier(n_neighbors=1).fit(wmd.transform(docs), y)
    assert clf.predict([["w1", "w3"], ["w40", "w42"]]).tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="call wmd.fit"):
        unfitted = WMD(emb, idf=True)
        unfitted.kneighbors_classifier(n_neighbors=1).fit(WMD(emb).transform(docs), y)


@pytest.mark.parametrize("normalize", [True, False])
def test_wcd_and_rwmd_lower_bound_wmd_on_random_data(emb, normalize):
    wmd = WMD(emb, normalize=normalize)
    queries, corpus = _docs(8, seed=2), _docs(40, seed=3)
    exact = wmd.pairwise(queries, corpus)
    wcd, rwmd = wmd.wcd(queries, corpus), wmd.rwmd(queries, corpus)
    assert np.all(wcd <= exact + 1e-12)
    assert np.all(rwmd <= exact + 1e-12)
    assert np.mean(wcd <= rwmd) > 0.95  # RWMD is the tighter bound on almost every pair
    assert np.mean(rwmd < exact - 1e-6) > 0.5  # and still a strict bound on most pairs


def test_wcd_can_exceed_rwmd():
    # WCD <= RWMD is not a theorem: a and b sit in both documents, c is near a but far from b.
    emb = Embeddings(["a", "b", "c"], np.array([[0, 0], [10, 0], [0.1, 1]], dtype=np.float32))
    wmd = WMD(emb, normalize=False)
    doc1, doc2 = ["a", "a", "b", "c"], ["a", "b"]
    wcd, rwmd = wmd.wcd([doc1], [doc2])[0, 0], wmd.rwmd([doc1], [doc2])[0, 0]
    assert wcd == pytest.approx(0.25 * np.hypot(9.9, 1.0))  # |centroid1 - centroid2|
    assert rwmd == pytest.approx(0.25 * np.hypot(0.1, 1.0))  # c moves to its nearest word, a
    assert rwmd < wcd <= wmd.distance(doc1, doc2) + 1e-12


@pytest.mark.parametrize("k,dtype", [(1, torch.float64), (5, torch.float64), (5, torch.float32)])
def test_prefetch_and_prune_returns_brute_force_neighbours(emb, k, dtype):
    wmd = WMD(emb, dtype=dtype)
    queries = _docs(6, seed=4)
    corpus = _docs(60, seed=5) + [queries[0], queries[0]]  # exact ties at distance 0
    d_brute, i_brute = wmd.knn(queries, corpus, k=k, method="brute")
    d_prune, i_prune = wmd.knn(queries, corpus, k=k, method="prune")
    np.testing.assert_array_equal(i_prune, i_brute)
    np.testing.assert_allclose(d_prune, d_brute, atol=1e-12)
    assert wmd.search_stats_["exact"] < len(queries) * len(corpus)  # it did prune
    full = wmd.pairwise(queries, corpus)
    order = np.lexsort((np.broadcast_to(np.arange(len(corpus)), full.shape), full), axis=1)
    np.testing.assert_array_equal(i_brute, order[:, :k])


def test_batched_sinkhorn_wmd_approaches_exact(emb):
    docs = _docs(12, seed=6, oov=False)
    exact = WMD(emb).pairwise(docs)
    off = ~np.eye(len(docs), dtype=bool)
    errors = []
    for blur in (0.1, 0.01):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a fixed schedule (tol=None): no max_iter warning
            sink = WMD(emb, blur=blur, batch_size=16).pairwise(docs, method="sinkhorn")
        errors.append(np.max(np.abs(sink - exact)[off] / exact[off]))
    assert errors[1] < errors[0]
    assert errors[1] < 0.05
    one = WMD(emb, blur=0.01).distance(docs[0], docs[1], method="sinkhorn")
    assert one == pytest.approx(exact[0, 1], rel=0.05)


def test_float32_and_device_cpu(emb):
    docs = _docs(5, seed=7, oov=False)
    ref = WMD(emb).pairwise(docs)
    got = WMD(emb, dtype=torch.float32, device="cpu").wcd(docs, docs)
    assert got.dtype == np.float32 and np.all(got <= ref + 1e-5)


def test_knn_vote_majority_and_ties():
    assert knn_vote(np.array([[1, 0, 0], [0, 1, 1], [2, 1, 1]])).tolist() == [0, 1, 1]
    assert knn_vote(np.array([[1, 0], [0, 1]])).tolist() == [1, 0]  # tie: nearest neighbour wins


def test_kneighbors_classifier_on_separable_topics(emb):
    # two topics drawn from disjoint halves of the vocabulary
    rng = np.random.default_rng(8)
    docs, y = [], []
    for t in range(60):
        lo = 0 if t % 2 else 40
        docs.append([f"w{i}" for i in rng.integers(lo, lo + 40, size=8)])
        y.append("b" if t % 2 else "a")
    clf = WMD(emb).kneighbors_classifier(n_neighbors=3).fit(docs[:40], y[:40])
    assert clf.score(docs[40:], y[40:]) >= 0.9
    assert set(clf.predict(docs[40:45])) <= {"a", "b"}
    with pytest.raises(ValueError, match="n_neighbors"):
        WMD(emb).kneighbors_classifier(n_neighbors=99).fit(docs[:40], y[:40])


def test_kneighbors_classifier_follows_sklearn_conventions(emb):
    import pickle

    from sklearn.base import clone

    from wdist_apps.wmd import WMDKNeighborsClassifier

    docs = [["w1", "w2"], ["w2", "w3"], ["w40", "w41"], ["w41", "w42"]]
    y = ["a", "a", "b", "b"]
    wmd = WMD(emb, idf=True)
    with pytest.raises(TypeError):
        WMDKNeighborsClassifier(wmd, 1)  # options are keyword-only
    clf = WMDKNeighborsClassifier(wmd, n_neighbors=1).fit(docs, y)
    assert wmd.idf_ is None and clf.wmd_.idf_ is not None  # fit left the given WMD alone
    twin = clone(clf)
    assert twin.wmd is not wmd and twin.wmd.embeddings is emb  # the table is shared, not copied
    assert twin.wmd.idf and twin.get_params()["n_neighbors"] == 1
    assert not hasattr(twin, "wmd_")
    back = pickle.loads(pickle.dumps(clf))
    queries = [["w1", "w3"], ["w40", "w42"]]
    assert back.predict(queries).tolist() == clf.predict(queries).tolist() == ["a", "b"]


def test_rwmd_chunking_does_not_change_the_result(emb):
    from wdist_apps.wmd import bounds
    from wdist_apps.wmd.model import _Table

    wmd = WMD(emb)
    Q, C = wmd.transform(_docs(3, seed=9)), wmd.transform(_docs(25, seed=10, max_len=30))
    table = _Table(emb, [Q, C], True, torch.device("cpu"), torch.float64)
    q, c = table.local(Q), table.local(C)
    whole = bounds.relaxed_wmd(table.E, *q, *c)
    chunked = bounds.relaxed_wmd(table.E, *q, *c, max_elements=50)  # a few documents per chunk
    torch.testing.assert_close(chunked, whole, rtol=0, atol=0)


def test_paired_and_flow_agree_with_pairwise(emb):
    wmd = WMD(emb)
    docs = _docs(6, seed=11)
    full = wmd.pairwise(docs)
    np.testing.assert_allclose(wmd.paired(docs[:3], docs[3:]), full[[0, 1, 2], [3, 4, 5]])
    words1, words2, plan, cost = wmd.flow(docs[0], docs[1])
    assert cost == pytest.approx(full[0, 1])
    assert plan.shape == (len(words1), len(words2))
    assert plan.sum() == pytest.approx(1.0) and plan.min() >= 0
    with pytest.raises(ValueError, match="docs1 has 3 documents but docs2 has 2"):
        wmd.paired(docs[:3], docs[3:5])


def test_exact_wmd_equals_gensim_on_real_sentences():
    """Word2vec trained on gensim's Lee corpus (cached), real news sentences."""
    from gensim.models import KeyedVectors

    from wdist_apps.wmd import tokenize
    from wdist_apps.wmd.data import lee_sentences, lee_word2vec

    emb = lee_word2vec()
    kv = KeyedVectors(emb.dim)
    kv.add_vectors(emb.words, np.asarray(emb.vectors))
    docs = [t for t in (tokenize(s) for s in lee_sentences()[:300:15]) if t]
    ours = WMD(emb).pairwise(docs)
    ref = np.array([[kv.wmdistance(a, b) for b in docs] for a in docs])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_idf_weighted_wmd_matches_pot_directly(emb):
    import ot
    from scipy.spatial.distance import cdist

    corpus = _docs(20, seed=12, oov=False)
    wmd = WMD(emb, idf=True, normalize=False).fit(corpus)
    doc1, doc2 = corpus[0], corpus[1]
    weights = []
    for doc in (doc1, doc2):
        words = sorted(set(doc))
        counts = np.array([doc.count(w) for w in words], dtype=float)
        idf = np.array([wmd.idf_[emb.index[w]] for w in words])
        weights.append((words, counts * idf / (counts * idf).sum()))
    (w1, a), (w2, b) = weights
    vec = np.asarray(emb.vectors, dtype=np.float64)
    M = cdist(vec[[emb.index[w] for w in w1]], vec[[emb.index[w] for w in w2]])
    assert wmd.distance(doc1, doc2) == pytest.approx(ot.emd2(a, b, M), abs=1e-9)

"""WMD k-NN on a corpus sharded over a Dask LocalCluster of 2 worker processes."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from wdist_apps.cli import main  # noqa: E402
from wdist_apps.wmd import WMD  # noqa: E402
from wdist_apps.wmd.data import lee_sentences, lee_word2vec  # noqa: E402
from wdist_apps.wmd.distributed import ShardedCorpus, open_client  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def client():
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.ERROR, env=env,
    ) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def lee():
    """Real news sentences and the word2vec trained on them (cached): queries, corpus, model."""
    emb = lee_word2vec()
    wmd = WMD(emb)
    docs = wmd.transform(lee_sentences()[:300])
    docs = docs.subset(np.flatnonzero(docs.lengths > 0))
    queries = docs.subset(np.arange(0, 80, 10))  # 8 queries, not in the corpus ...
    rest = np.setdiff1d(np.arange(len(docs)), np.arange(0, 80, 10))
    # ... except query 0, twice, at both ends (in different partitions): a tie at distance 0
    corpus = docs.subset(np.concatenate([[0], rest, [0]]))
    return wmd, queries, corpus


def test_sharded_knn_equals_single_process(client, lee):
    import ot
    from scipy.spatial.distance import cdist

    wmd, queries, corpus = lee
    d1, i1 = wmd.knn(queries, corpus, k=5)
    single = wmd.search_stats_["exact"]
    d2, i2 = wmd.knn(queries, corpus, k=5, client=client)
    np.testing.assert_array_equal(i2, i1)
    np.testing.assert_array_equal(d2, d1)  # bit for bit: the same solver on the same vectors
    stats = wmd.search_stats_
    print(f"exact WMD solves: one process {single}, 2 partitions {stats['exact']}")
    assert stats["partitions"] == 2
    assert stats["exact"] <= 1.1 * single
    assert stats["exact"] + stats["pruned_rwmd"] + stats["skipped_wcd"] == 8 * len(corpus)
    assert list(i2[0, :2]) == [0, len(corpus) - 1] and d2[0, 1] == 0.0  # tie broken by index
    # 3 uneven partitions on 2 workers: the same neighbours and the same number of solves
    other = WMD(wmd.embeddings)
    d3, i3 = other.knn(queries, corpus, k=5, client=client, partitions=3)
    np.testing.assert_array_equal(i3, i1)
    np.testing.assert_array_equal(d3, d1)
    assert other.search_stats_["partitions"] == 3
    assert other.search_stats_["exact"] == stats["exact"]  # pruning does not weaken with P
    # independent reference for two queries: POT's exact EMD against every corpus document
    vec = np.asarray(wmd.embeddings.vectors)  # unit length in float32, as gensim (and WMD)
    vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float64)
    for q in (1, 5):
        qa, wa = queries.doc(q)
        docs = map(corpus.doc, range(len(corpus)))
        ref = np.array([ot.emd2(wa, wc, cdist(vec[qa], vec[ca])) for ca, wc in docs])
        np.testing.assert_array_equal(i2[q], np.lexsort((np.arange(len(ref)), ref))[:5])
        np.testing.assert_allclose(d2[q], np.sort(ref)[:5], rtol=0, atol=1e-6)


def test_classifier_and_cli_search_on_the_cluster(client, lee, tmp_path, capsys):
    wmd, queries, corpus = lee
    y = np.arange(len(corpus)) % 3
    local = WMD(wmd.embeddings).kneighbors_classifier(n_neighbors=3).fit(corpus, y)
    shared = WMD(wmd.embeddings)
    clf = shared.kneighbors_classifier(n_neighbors=3, client=client).fit(corpus, y)
    np.testing.assert_array_equal(clf.predict(queries), local.predict(queries))
    sharded = clf.wmd_._shards
    assert isinstance(sharded, ShardedCorpus) and sharded.bytes_sent > 0
    clf.predict(queries.subset([0, 1]))
    assert clf.wmd_._shards is sharded  # the corpus went to the workers once, not per batch

    texts = lee_sentences()[:200]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"s{i}", "text": t}) for i, t in enumerate(texts)))
    args = ["wmd", "knn", "--embeddings", "lee", "--corpus", str(path), "-k", "3",
            "--query", "bushfires near Sydney", "--query", "the Australian cricket team"]
    assert main(args) == 0
    alone = capsys.readouterr().out
    assert main([*args, "--scheduler", client.scheduler.address]) == 0
    on_dask = capsys.readouterr().out
    ranks = [line for line in alone.splitlines() if line.startswith("  ")]
    assert len(ranks) == 6 and ranks == [ln for ln in on_dask.splitlines() if ln.startswith("  ")]
    assert "'partitions': 2" in on_dask


def test_bad_arguments_are_named(client, lee, capsys):
    wmd, queries, corpus = lee
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        ShardedCorpus(wmd, corpus, "tcp://nowhere:8786")
    with pytest.raises(ValueError, match=r"partitions must be in \[1, "):
        wmd.knn(queries, corpus, k=3, client=client, partitions=0)
    with pytest.raises(ValueError, match="method must be 'prune' or 'brute' with client="):
        wmd.knn(queries, corpus, k=3, method="sinkhorn", client=client)
    with pytest.raises(ValueError, match="partitions is for a sharded search"):
        wmd.knn(queries, corpus, k=3, partitions=2)
    with pytest.raises(ValueError, match=r"k must be an int in \[1, "):
        wmd.knn(queries, corpus, k=0, client=client)
    with pytest.raises(ValueError, match="local:N needs N >= 1"):
        with open_client("local:0"):
            pass
    args = ["wmd", "knn", "--embeddings", "lee", "--corpus", "x.jsonl", "--query", "a"]
    assert main([*args, "--method", "sinkhorn", "--scheduler", "local:2"]) != 0
    assert "--method prune or brute" in capsys.readouterr().err

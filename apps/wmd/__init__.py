"""Word Mover's Distance (Kusner et al., ICML 2015) on the wdist core: exact and batched-Sinkhorn
WMD, WCD/RWMD lower bounds, prefetch-and-prune k-NN search and k-NN classification."""

from __future__ import annotations

from wdist_apps.runtime.lazy import lazy_exports

# names import on first use (PEP 562): `wdist --help` does not load torch or scikit-learn
_WHERE = {
    "Documents": "nbow",
    "Embeddings": "embeddings",
    "WMD": "model",
    "WMDKNeighborsClassifier": "classifier",
    "encode": "nbow",
    "fit_idf": "nbow",
    "knn_vote": "classifier",
    "load_embeddings": "embeddings",
    "tokenize": "text",
}
__all__ = [
    "Documents",
    "Embeddings",
    "WMD",
    "WMDKNeighborsClassifier",
    "encode",
    "fit_idf",
    "knn_vote",
    "load_embeddings",
    "tokenize",
]


__getattr__ = lazy_exports(__name__, _WHERE)

"""Word Mover's Distance (Kusner et al., ICML 2015) on the wdist core: exact and batched-Sinkhorn
WMD, WCD/RWMD lower bounds, prefetch-and-prune k-NN search and k-NN classification."""

from apps.wmd.classifier import WMDKNeighborsClassifier, knn_vote
from apps.wmd.embeddings import Embeddings, load_embeddings
from apps.wmd.model import WMD
from apps.wmd.nbow import Documents, encode, fit_idf
from apps.wmd.text import tokenize

__all__ = [
    "WMD",
    "Documents",
    "Embeddings",
    "WMDKNeighborsClassifier",
    "encode",
    "fit_idf",
    "knn_vote",
    "load_embeddings",
    "tokenize",
]

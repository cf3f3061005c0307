"""k-nearest-neighbour document classification with WMD (the paper's evaluation, section 5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from wdist_apps.wmd.model import WMD, DocLike
from wdist_apps.wmd.nbow import Documents


def knn_vote(neighbor_labels: np.ndarray) -> np.ndarray:
    """Majority vote over each row of ``neighbor_labels [Q, k]`` (integer labels, nearest first);
    a tie goes to the tied label that holds the nearest neighbour."""
    neighbor_labels = np.asarray(neighbor_labels)
    out = np.empty(neighbor_labels.shape[0], dtype=neighbor_labels.dtype)
    for q, row in enumerate(neighbor_labels):
        labels, counts = np.unique(row, return_counts=True)
        tied = set(labels[counts == counts.max()].tolist())
        out[q] = next(lab for lab in row if lab in tied)
    return out


class WMDKNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """k-NN classifier over documents with Word Mover's Distance.

    ``fit(docs, y)`` stores the training documents; ``predict(docs)`` finds each document's
    ``n_neighbors`` nearest training documents with :meth:`WMD.knn` (``method``: "prune" = exact
    neighbours via prefetch-and-prune, "brute", or "sinkhorn") and takes a majority vote.
    ``client`` (a ``distributed.Client``): the training documents are sharded over its workers
    once and every ``predict`` searches them there.

    ``fit`` leaves the given ``wmd`` as it was: it works on :attr:`wmd_`, an unfitted copy that
    shares the embedding table (``WMD.__sklearn_clone__``, which also keeps ``clone`` of this
    classifier from copying the table). Example::

        clf = WMDKNeighborsClassifier(WMD(emb), n_neighbors=3).fit(train_docs, labels)
        clf.predict(test_docs)
    """

    def __init__(
        self, wmd: WMD, *, n_neighbors: int = 5, method: str = "prune", client: object = None
    ) -> None:
        self.wmd = wmd
        self.n_neighbors = n_neighbors
        self.method = method
        self.client = client

    def fit(self, X: Sequence[DocLike] | Documents, y: Sequence) -> WMDKNeighborsClassifier:
        """Store the training documents ``X`` with labels ``y``. Raw documents also fit the
        WMD's idf weights (``idf=True``); encoded :class:`Documents` (from ``wmd.transform``) are
        used as they are, with the idf weights the WMD was already fitted with."""
        if not isinstance(self.wmd, WMD):
            raise TypeError(f"wmd must be a WMD, got {type(self.wmd).__name__}")
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} documents but y has {len(y)} labels")
        if not isinstance(self.n_neighbors, (int, np.integer)) or not (
            1 <= self.n_neighbors <= len(X)
        ):
            raise ValueError(f"n_neighbors must be an int in [1, {len(X)}], got {self.n_neighbors}")
        wmd = self.wmd.__sklearn_clone__()
        if not isinstance(X, Documents):
            wmd.fit(X)
        elif self.wmd.idf and self.wmd.idf_ is None:
            raise ValueError(
                "X is already-encoded Documents but the WMD has idf=True and no idf weights: "
                "call wmd.fit(corpus) first, or pass raw documents to fit"
            )
        else:  # encoded with the given WMD's idf weights: queries must use the same
            wmd.idf_ = self.wmd.idf_
        self.wmd_ = wmd
        self.train_ = wmd.transform(X)
        self.train_.check_not_empty("X")
        self.classes_, self.y_ = np.unique(np.asarray(y), return_inverse=True)
        return self

    def kneighbors(self, X: Sequence[DocLike]) -> tuple[np.ndarray, np.ndarray]:
        """``(distances [Q, k], indices [Q, k])`` of the nearest training documents."""
        check_is_fitted(self, "wmd_")
        return self.wmd_.knn(
            X, self.train_, self.n_neighbors, method=self.method, client=self.client
        )

    def predict(self, X: Sequence[DocLike]) -> np.ndarray:
        _, ind = self.kneighbors(X)
        return self.classes_[knn_vote(self.y_[ind])]

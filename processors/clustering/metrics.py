"""Clustering quality metrics without scikit-learn.

Examples:
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])   # identical up to renaming
    1.0
    >>> adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2])
    0.242...
    >>> adjusted_rand_index([0, 1, 2, 3], [0, 0, 0, 0])    # one cluster vs all singletons
    0.0
    >>> round(normalized_mutual_info(["a", "a", "b", "b"], [1, 1, 0, 0]), 6), purity(["a", "a", "b"], [0, 0, 0])
    (1.0, 0.666...)

References:
    Hubert & Arabie (1985), "Comparing partitions", Journal of Classification 2(1); Strehl & Ghosh
    (2002), "Cluster ensembles", JMLR 3 (NMI, arithmetic-mean normalisation as scikit-learn's default).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def contingency(labels_true: Sequence[Hashable], labels_pred: Sequence[Hashable]) -> np.ndarray:
    """Counts n_ij of items with true label i and predicted label j."""
    if len(labels_true) != len(labels_pred):
        raise ValueError("label sequences differ in length")
    _, ti = np.unique(np.asarray(labels_true, dtype=object).astype(str), return_inverse=True)
    _, pi = np.unique(np.asarray(labels_pred, dtype=object).astype(str), return_inverse=True)
    table = np.zeros((ti.max(initial=-1) + 1, pi.max(initial=-1) + 1), dtype=np.int64)
    np.add.at(table, (ti, pi), 1)
    return table


def _pairs(x: np.ndarray) -> float:
    return float((x * (x - 1) // 2).sum())


def adjusted_rand_index(labels_true: Sequence[Hashable], labels_pred: Sequence[Hashable]) -> float:
    """Adjusted Rand index: 1 = same partition (up to renaming), ~0 = chance agreement.

    Pair counting on the contingency table, corrected for the agreement expected
    by chance given both partitions' cluster sizes (Hubert & Arabie). Two
    trivial partitions that agree perfectly (e.g. both one cluster) score 1.
    """
    table = contingency(labels_true, labels_pred)
    n = int(table.sum())
    if n < 2:
        return 1.0
    index = _pairs(table)
    a = _pairs(table.sum(axis=1))
    b = _pairs(table.sum(axis=0))
    total = n * (n - 1) / 2
    expected = a * b / total
    maximum = (a + b) / 2
    if maximum == expected:
        return 1.0
    return (index - expected) / (maximum - expected)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(labels_true: Sequence[Hashable], labels_pred: Sequence[Hashable]) -> float:
    """Mutual information of two labelings over the mean of their entropies (1 = same partition).

    Two one-cluster labelings score 1 (nothing to tell apart); one against many scores 0.
    """
    table = contingency(labels_true, labels_pred).astype(float)
    n = table.sum()
    if n == 0:
        return 1.0
    p = table / n
    pi, pj = p.sum(axis=1), p.sum(axis=0)
    hi, hj = _entropy(pi), _entropy(pj)
    if hi == 0 and hj == 0:
        return 1.0
    nz = p > 0
    mi = float((p[nz] * np.log(p[nz] / np.outer(pi, pj)[nz])).sum())
    return max(0.0, mi / ((hi + hj) / 2)) if hi + hj > 0 else 0.0


def purity(labels_true: Sequence[Hashable], labels_pred: Sequence[Hashable]) -> float:
    """Share of items whose true label is their predicted cluster's most common one."""
    table = contingency(labels_true, labels_pred)
    n = int(table.sum())
    return float(table.max(axis=0).sum() / n) if n else 1.0

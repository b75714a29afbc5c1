"""Clustering quality metrics without scikit-learn.

Examples:
    >>> adjusted_rand_index([0, 0, 1, 1], [1, 1, 0, 0])   # identical up to renaming
    1.0
    >>> adjusted_rand_index([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 2, 2])
    0.242...
    >>> adjusted_rand_index([0, 1, 2, 3], [0, 0, 0, 0])    # one cluster vs all singletons
    0.0

References:
    Hubert & Arabie (1985), "Comparing partitions", Journal of Classification 2(1).
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

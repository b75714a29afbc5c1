"""Minimum-cost assignment (Hungarian / Kuhn-Munkres), small and dependency-free.

Used to give re-seeded or moved clusters the identities of the old ones: the
cost is the distance between old and new centroids, and the assignment that
minimises the total distance keeps every segment's id and name. k is small
(tens), so an O(n^3) shortest-augmenting-path version with row/column
potentials is plenty. Rectangular matrices are padded with zero-cost dummies.

Examples:
    >>> linear_sum_assignment([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    [(0, 1), (1, 0), (2, 2)]
    >>> linear_sum_assignment([[1.0, 9.0, 0.5]])          # more columns than rows
    [(0, 2)]
    >>> linear_sum_assignment([[1.0], [0.2]])             # more rows than columns
    [(1, 0)]

References:
    Kuhn (1955), "The Hungarian method for the assignment problem", Naval
    Research Logistics Quarterly 2; Munkres (1957), "Algorithms for the
    Assignment and Transportation Problems", J. SIAM 5(1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def linear_sum_assignment(cost: Sequence[Sequence[float]] | np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column) of a minimum-total-cost matching, sorted by row.

    Each row and each column is used at most once; min(rows, columns) pairs.
    """
    c = np.asarray(cost, dtype=float)
    if c.ndim != 2:
        raise ValueError("cost must be a 2-D matrix")
    rows, cols = c.shape
    if rows == 0 or cols == 0:
        return []
    if not np.all(np.isfinite(c)):
        raise ValueError("cost must be finite")
    n = max(rows, cols)
    sq = np.zeros((n, n))
    sq[:rows, :cols] = c
    inf = float("inf")
    # potentials u (rows) and v (columns), 1-based with a virtual column 0
    u = np.zeros(n + 1)
    v = np.zeros(n + 1)
    match_col = np.zeros(n + 1, dtype=np.int64)  # match_col[j] = row matched to column j (0 = none)
    way = np.zeros(n + 1, dtype=np.int64)
    for row in range(1, n + 1):
        match_col[0] = row
        j0 = 0
        min_slack = np.full(n + 1, inf)
        used = np.zeros(n + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = match_col[j0]
            # reduced costs of the row just reached, against every unused column
            reduced = sq[i0 - 1, :] - u[i0] - v[1:]
            free = ~used[1:]
            better = free & (reduced < min_slack[1:])
            min_slack[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, min_slack[1:], inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            # shift potentials so the cheapest free column becomes tight
            used_cols = np.nonzero(used)[0]
            u[match_col[used_cols]] += delta
            v[used_cols] -= delta
            min_slack[1:][free] -= delta
            j0 = j1
            if match_col[j0] == 0:
                break
        # augment along the alternating path back to the virtual column
        while j0:
            j1 = int(way[j0])
            match_col[j0] = match_col[j1]
            j0 = j1
    pairs = [(int(match_col[j]) - 1, j - 1) for j in range(1, n + 1)]
    return sorted((r, k) for r, k in pairs if r < rows and k < cols)

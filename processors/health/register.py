"""Stuck (frozen) register rule, calibrated to the measurement resolution.

Two kinds of evidence, kept apart because they are not equally strong:

* **frozen register under load** — the cumulative register does not move
  although the interval reports consumption (``register == previous register``
  while ``kwh_import > 0``). A healthy meter cannot do this at any resolution:
  its register is the running sum of its intervals. ``stuck_intervals``
  readings in a row (default 3: two consecutive non-advancing steps) are enough.
* **repeated value** — the same non-zero interval value again and again. At
  1 Wh resolution this is *weak* evidence: a household's night base load of
  12 Wh takes a handful of distinct values, so three equal values in a row
  happen several times a night (on BDEW profiles with 10 % noise, 1 219 of
  2 640 clean meters were flagged in 28 days by the run-length-only rule). The
  rule therefore asks how likely the run is *for this meter at this level*:
  each meter counts, per level band (powers of two of 1 Wh), how often a
  reading equals the previous one, ``p = (equal + w p_all) / (pairs + w)``
  where ``p_all`` is the meter's rate over all levels (itself starting from
  ``prior_equal / prior_pairs``) and ``w = prior_pairs``: a level the meter
  has rarely visited borrows its rate from the meter's other levels, not from
  the whole fleet, and ``p`` never goes below ``prior_equal / (all pairs +
  prior_pairs)``; the value evidence is used only once the meter has sent
  ``stuck_min_pairs`` pairs (its own statistics exist); a run of ``k``
  repeats (``k + 1`` equal readings) is
  evidence when ``p ** k <= stuck_run_probability``. With 10 Wh registers
  or a flat standby load ``p`` is high and the run needed grows accordingly;
  with a noisy level ``p`` is small and a short run suffices (never fewer than
  ``stuck_intervals`` readings).

A meter whose heartbeat says ``degraded`` or ``fault`` is not called stuck (it
has a different finding). Only in-order readings count; a reordered reading
neither extends nor breaks a run.

References:
    VEE practice: "stuck/frozen register — same non-zero value for 3 or more
    intervals" (see the shared README), which assumes a resolution far below
    the interval-to-interval variation; registers reporting whole Wh break
    that assumption at night.

Examples:
    >>> import numpy as np
    >>> frozen(np.array([0.5, 0.0, 0.3]), np.array([10.0, 10.0, 12.0]), np.array([10.0, 10.0, 11.7])).tolist()
    [True, False, False]
    >>> same_value(np.array([0.012, 0.0, 0.3]), np.array([0.012, 0.0, 0.2])).tolist()
    [True, False, False]
    >>> level_band(np.array([0.0004, 0.001, 0.012, 0.5, 9.0]), 12).tolist()
    [0, 0, 3, 8, 11]
    >>> # 12 equal readings after 200 pairs of which 20 were equal (p ~ 0.1): unlikely; 4 of them: not
    >>> pairs, equal = np.array([200, 200]), np.array([20, 20])
    >>> unlikely_run(np.array([11, 3]), pairs, equal, pairs, equal, 1e-8, 1.0, 4.0).tolist()
    [True, False]
    >>> # a level never visited by a meter that repeats 1 % of the time: p = 0.01
    >>> unlikely_run(np.array([5]), np.array([0]), np.array([0]), np.array([996]), np.array([9]), 1e-9, 1.0, 4.0).tolist()
    [True]
"""

from __future__ import annotations

import numpy as np

from processors.columns import BOOL, F64, I64

LEVEL_UNIT_KWH = 0.001
"""Level bands are powers of two of 1 Wh: band ``b`` holds values in ``[2**b, 2**(b+1))`` Wh."""


def frozen(kwh_import: F64, register: F64, last_register: F64) -> BOOL:
    """The register did not advance although the interval shows consumption."""
    out: BOOL = (register == last_register) & (register != 0.0) & (kwh_import > 0.0)
    return out


def same_value(kwh_import: F64, last_import: F64) -> BOOL:
    """The same non-zero interval value as the previous in-order reading."""
    out: BOOL = (kwh_import == last_import) & (kwh_import != 0.0)
    return out


def level_band(kwh_import: F64, bands: int) -> I64:
    """Level band of a value: ``floor(log2(value / 1 Wh))``, clipped to ``[0, bands)``."""
    wh = np.maximum(np.abs(kwh_import) / LEVEL_UNIT_KWH, 1.0)
    out: I64 = np.clip(np.floor(np.log2(wh)), 0, bands - 1).astype(np.int64)
    return out


def unlikely_run(
    repeats: I64,
    pairs: I64,
    equal: I64,
    pairs_all: I64,
    equal_all: I64,
    probability: float,
    prior_equal: float,
    prior_pairs: float,
) -> BOOL:
    """``repeats`` equal steps in a row are less likely than ``probability`` given the meter's equal rate
    at this level (``pairs``, ``equal``) shrunk towards its rate at all levels (``pairs_all``, ``equal_all``)."""
    p_all = (equal_all + prior_equal) / (pairs_all + prior_pairs)
    # never below "one equal pair in everything the meter sent": none in 800 pairs is not a rate of 0
    floor = prior_equal / (pairs_all + prior_pairs)
    p = np.maximum((equal + prior_pairs * p_all) / (pairs + prior_pairs), floor)
    out: BOOL = repeats * np.log(np.clip(p, 1e-12, 1.0)) <= np.log(probability)
    return out

"""Kafka's default partitioner (murmur2), vectorised over many keys at once.

We build record batches per partition ourselves (``create_batch`` /
``send_batch`` is what makes the producer fast), so we must pick the partition
exactly as Kafka's default partitioner would: otherwise a Java or librdkafka
producer keyed by the same meter id would land on another partition than ours
and per-meter ordering downstream would break. Hashing a million meter ids one
by one in pure Python takes seconds, so :func:`murmur2_fixed` hashes a whole
array of equal-length keys with numpy; :func:`partition_for` is the scalar
fallback for odd keys (imported rows, unknown meters).

Examples:
    >>> from aiokafka.partitioner import murmur2
    >>> keys = [b"M0000001", b"M0000002", b"C0000042"]
    >>> [int(h) for h in murmur2_fixed(keys)] == [murmur2(k) for k in keys]
    True
    >>> partition_for(b"M0000001", 4) == int(partitions_fixed(keys, 4)[0])
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from aiokafka.partitioner import murmur2

_SEED = 0x9747B28C
_M = np.uint64(0x5BD1E995)
_MASK = np.uint64(0xFFFFFFFF)


def _mul(a: np.ndarray, b: np.uint64) -> np.ndarray:
    """32-bit wrapping multiply on uint64 lanes (the operands are < 2**32, so no overflow)."""
    return (a * b) & _MASK


def murmur2_fixed(keys: Sequence[bytes] | np.ndarray) -> np.ndarray:
    """murmur2 of many keys of *equal length*, as uint64 values identical to aiokafka's ``murmur2``.

    A numpy ``S`` array cannot hold trailing NUL bytes, so keys given as an
    array must not end with ``b"\\0"`` (meter and customer ids never do).
    """
    if not isinstance(keys, np.ndarray) and len({len(k) for k in keys}) > 1:
        raise ValueError("murmur2_fixed needs keys of equal length; use partition_for for odd keys")
    arr = np.asarray(keys)
    if arr.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind != "S":
        raise TypeError("keys must be bytes")
    length = arr.dtype.itemsize
    raw = arr.view(np.uint8).reshape(arr.size, length)
    data = raw.astype(np.uint64)
    h = np.full(arr.size, (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint64)
    r = np.uint64(24)
    for i in range(length // 4):
        b = data[:, 4 * i : 4 * i + 4]
        k = b[:, 0] | (b[:, 1] << np.uint64(8)) | (b[:, 2] << np.uint64(16)) | (b[:, 3] << np.uint64(24))
        k = _mul(k, _M)
        k ^= k >> r
        k = _mul(k, _M)
        h = _mul(h, _M)
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[:, tail + 2] << np.uint64(16)
    if extra >= 2:
        h ^= data[:, tail + 1] << np.uint64(8)
    if extra >= 1:
        h ^= data[:, tail]
        h = _mul(h, _M)
    h ^= h >> np.uint64(13)
    h = _mul(h, _M)
    h ^= h >> np.uint64(15)
    return h


def partitions_fixed(keys: Sequence[bytes] | np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each key under Kafka's default partitioner (``(murmur2 & 0x7fffffff) % n``)."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    h = murmur2_fixed(keys)
    return ((h & np.uint64(0x7FFFFFFF)) % np.uint64(partitions)).astype(np.int32)


def partition_for(key: bytes, partitions: int) -> int:
    """Partition of one key under Kafka's default partitioner."""
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions

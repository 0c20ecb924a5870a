"""Deterministic, random-access Brownian motion for the simulator's price and volume paths.

Each coin's upstream value changes only at its *ticks*: tick ``k`` happens at
``EPOCH0_MS + phase_ms + k * period_ms``. The log price at tick ``k`` is a Brownian motion in the
tick index built with the Levy (midpoint-displacement) construction over ``[0, 2**LEVELS]``: the
value at any index is found by descending ``LEVELS`` dyadic levels, and the noise added at each
midpoint comes from a counter-based hash of ``(seed, coin, stream, midpoint)``. So any tick of any
coin can be computed directly (no history to replay), vectorised over many coins and ticks at once,
and the same seed always gives the same path — the exact Gaussian increments of a random walk, with
``Var[B(k2) - B(k1)] = |k2 - k1|``.
"""

from __future__ import annotations

import numpy as np

LEVELS = 30  # 2**30 ticks of >= 20 s each: centuries, far beyond any simulated range
SPAN = 1 << LEVELS

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SALT = np.uint64(0xD1B54A32D192ED03)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_NEG53 = 1.0 / float(1 << 53)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> _S30)) * _M1
        x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


def seed_keys(seed: int, count: int, stream: int) -> np.ndarray:
    """One uint64 key per coin for a given seed and stream (price, volume, faults...)."""
    base = np.uint64((seed * 1_000_003 + stream * 7_919) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        return mix64(np.arange(count, dtype=np.uint64) * _GOLDEN + base)


def uniform(keys: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Deterministic uniforms in (0, 1) from (key, counter) pairs."""
    with np.errstate(over="ignore"):
        h = mix64(keys ^ (counter.astype(np.uint64) * _GOLDEN))
    return ((h >> _S11).astype(np.float64) + 0.5) * _TWO_NEG53


def normal(keys: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Deterministic standard normals from (key, counter) pairs (Box-Muller on two hashes)."""
    with np.errstate(over="ignore"):
        h1 = mix64(keys ^ (counter.astype(np.uint64) * _GOLDEN))
        h2 = mix64(h1 ^ _SALT)
    u1 = ((h1 >> _S11).astype(np.float64) + 0.5) * _TWO_NEG53
    u2 = ((h2 >> _S11).astype(np.float64) + 0.5) * _TWO_NEG53
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


#: From this many indices of one key on, :func:`brownian` descends the tree once per distinct node.
SHARED_TREE_MIN = 4096


def brownian(keys: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Standard Brownian motion B(index) for each (key, index) pair; B(0) = 0.

    ``keys`` and ``index`` broadcast together; ``index`` must be integers in ``[0, 2**LEVELS]``.
    Many indices of one key (a coin's candles over months) share the tree's upper nodes: they are
    computed once each (:func:`_brownian_one_key`), with the same arithmetic, so the values are the
    same to the bit.
    """
    keys, index = np.broadcast_arrays(np.asarray(keys, dtype=np.uint64), np.asarray(index, dtype=np.int64))
    keys = keys.ravel()
    k = index.ravel()
    if k.size and (k.min() < 0 or k.max() > SPAN):
        raise ValueError("tick index out of the simulated range")
    if k.size >= SHARED_TREE_MIN and (keys == keys[0]).all():
        return _brownian_one_key(keys[0], k).reshape(index.shape)
    lo = np.zeros_like(k)
    hi = np.full_like(k, SPAN)
    b_lo = np.zeros(k.shape, dtype=np.float64)
    b_hi = np.sqrt(float(SPAN)) * normal(keys, np.full(k.shape, SPAN, dtype=np.int64))
    half = SPAN
    for _ in range(LEVELS):
        half //= 2
        mid = lo + half
        b_mid = 0.5 * (b_lo + b_hi) + np.sqrt(half / 2.0) * normal(keys, mid)
        right = k >= mid
        lo = np.where(right, mid, lo)
        hi = np.where(right, hi, mid)
        b_lo = np.where(right, b_mid, b_lo)
        b_hi = np.where(right, b_hi, b_mid)
    return np.where(k == hi, b_hi, b_lo).reshape(index.shape)


def _brownian_one_key(key: np.uint64, k: np.ndarray) -> np.ndarray:
    """:func:`brownian` for one key: the same descent, over the distinct dyadic intervals that hold
    some index while they are fewer than the indices (the upper levels, which all indices of a range
    share), then per index as in :func:`brownian` (the lowest levels)."""
    ks = k if (k[1:] >= k[:-1]).all() else np.sort(k)
    ks = ks[np.concatenate(([True], ks[1:] != ks[:-1]))]  # distinct, ascending (np.unique hashes: slower)
    lo = np.zeros(1, dtype=np.int64)
    b_lo = np.zeros(1, dtype=np.float64)
    b_hi = np.sqrt(float(SPAN)) * normal(np.full(1, key, dtype=np.uint64), np.full(1, SPAN, dtype=np.int64))
    half = SPAN
    level = 0
    while level < LEVELS and 2 * lo.size < ks.size:
        hi = lo + half
        half //= 2
        mid = lo + half
        b_mid = 0.5 * (b_lo + b_hi) + np.sqrt(half / 2.0) * normal(
            np.full(mid.shape, key, dtype=np.uint64), mid
        )
        at_lo = np.searchsorted(ks, lo, "left")
        at_mid = np.searchsorted(ks, mid, "left")
        after_hi = np.searchsorted(ks, hi, "right")
        keep = np.stack(
            [at_mid > at_lo, after_hi > at_mid], axis=1
        ).ravel()  # left [lo, mid), right [mid, hi]
        lo = np.stack([lo, mid], axis=1).ravel()[keep]
        b_lo, b_hi = (
            np.stack([b_lo, b_mid], axis=1).ravel()[keep],
            np.stack([b_mid, b_hi], axis=1).ravel()[keep],
        )
        level += 1
    # the rest of the descent per index, from the interval [lo, lo + 2 * half] holding it
    i = np.searchsorted(lo, k, "right") - 1
    lo_k, b_lo_k, b_hi_k = lo[i], b_lo[i], b_hi[i]
    hi_k = lo_k + half
    keys = np.full(k.shape, key, dtype=np.uint64)
    for _ in range(level, LEVELS):
        half //= 2
        mid = lo_k + half
        b_mid = 0.5 * (b_lo_k + b_hi_k) + np.sqrt(half / 2.0) * normal(keys, mid)
        right = k >= mid
        lo_k = np.where(right, mid, lo_k)
        hi_k = np.where(right, hi_k, mid)
        b_lo_k = np.where(right, b_mid, b_lo_k)
        b_hi_k = np.where(right, b_hi_k, b_mid)
    return np.where(k == hi_k, b_hi_k, b_lo_k)


def round_significant(values: np.ndarray, digits: int) -> np.ndarray:
    """Round to ``digits`` significant digits (vectorised; zeros stay zero)."""
    values = np.asarray(values, dtype=np.float64)
    out = np.zeros_like(values)
    nz = values != 0
    mag = np.floor(np.log10(np.abs(values[nz])))
    decimals = (digits - 1 - mag).astype(np.int64)
    scale = np.power(10.0, decimals)
    out[nz] = np.round(values[nz] * scale) / scale
    return out

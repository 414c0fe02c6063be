"""Noise that is a pure function of global voxel coordinates (counter-based hashing).

Every value depends only on ``(seed, tag, z, y, x)``, never on how a volume is cut into blocks, so
blocks generated separately join without seams and give bit-identical results to a whole volume.
All arithmetic is element-wise (no BLAS reductions whose summation order could depend on array size).
"""

from __future__ import annotations

import numpy as np

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLD = np.uint32(0x9E3779B9)
_U32 = 1.0 / 4294967296.0


def hash32(x: np.ndarray) -> np.ndarray:
    """Avalanche a uint32 array (the "lowbias32" integer hash); returns a new uint32 array."""
    x = np.asarray(x, dtype=np.uint32).copy()
    x ^= x >> np.uint32(16)
    x *= _M1
    x ^= x >> np.uint32(15)
    x *= _M2
    x ^= x >> np.uint32(16)
    return x


def _u32(v) -> np.ndarray:
    """Integers (possibly negative) to uint32 by two's complement wrap-around."""
    v = np.asarray(v)
    if v.dtype == np.uint32:
        return v
    return v.astype(np.int64).astype(np.uint32)


def seed_hash(seed: int, tag: int) -> np.uint32:
    """One uint32 key for a (seed, stream tag) pair."""
    s = hash32(np.array([int(seed) & 0xFFFFFFFF], dtype=np.uint32))
    s = hash32(s ^ (_u32([tag]) * _GOLD))
    s = hash32(s ^ _u32([int(seed) >> 32 & 0xFFFFFFFF]))
    return np.uint32(s[0])


def hash_grid(key: np.uint32, zs, ys, xs) -> np.ndarray:
    """Hashes of every (z, y, x) of the separable grid ``zs x ys x xs`` (1D integer arrays) as uint32."""
    hz = hash32(_u32(zs) * _GOLD ^ key)
    hzy = hash32(hz[:, None] ^ (_u32(ys) * _M1)[None, :])
    return hash32(hzy[:, :, None] ^ (_u32(xs) * _M2)[None, None, :])


def uniform_grid(key: np.uint32, zs, ys, xs) -> np.ndarray:
    """Uniform [0, 1) float32 values on the grid ``zs x ys x xs``."""
    return (hash_grid(key, zs, ys, xs) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)


def normal_grid(key: np.uint32, zs, ys, xs) -> np.ndarray:
    """Approximately standard normal float32 values on the grid (sum of three 10-bit uniforms)."""
    return normal_from_hash(hash_grid(key, zs, ys, xs))


def normal_from_hash(h: np.ndarray) -> np.ndarray:
    """Approximately standard normal float32 values from uint32 hashes (uses bits 0-29)."""
    m = np.uint32(1023)
    s = h & m
    s += (h >> np.uint32(10)) & m
    s += (h >> np.uint32(20)) & m
    s = s.astype(np.float32)
    # Irwin-Hall(3) on 0..1023: mean 1534.5, variance 3 * (1024**2 - 1) / 12
    s -= np.float32(1534.5)
    s *= np.float32(1.0 / np.sqrt(3 * (1024**2 - 1) / 12))
    return s


def hash_values(key: np.uint32, *ints) -> np.ndarray:
    """Uniform [0, 1) float64 values from integer arrays (broadcast together), e.g. per object ids."""
    h = np.full(np.broadcast_shapes(*[np.shape(i) for i in ints]), key, dtype=np.uint32)
    for i, v in enumerate(ints):
        h = hash32(h ^ (_u32(v) * np.uint32(0x9E3779B9 + 2 * i + 1)))
    return h.astype(np.float64) * _U32


def _axis_weights(coords: np.ndarray, spacing: float):
    """Lattice index, smoothstep weight for each coordinate along one axis."""
    q = np.asarray(coords, dtype=np.float64) / float(spacing)
    i = np.floor(q)
    t = q - i
    t = t * t * (3.0 - 2.0 * t)
    return i.astype(np.int64), t.astype(np.float32)


def value_noise(key: np.uint32, zs, ys, xs, spacing: tuple[float, float, float]) -> np.ndarray:
    """Smooth noise in [-1, 1] on the grid ``zs x ys x xs`` (global coordinates, may be fractional).

    Random values on a lattice with the given ``spacing`` (z, y, x) are interpolated with smoothstep
    weights, separably (x, then y, then z), so the result at a voxel depends only on its coordinates.
    """
    (iz, tz), (iy, ty), (ix, tx) = (_axis_weights(c, s) for c, s in zip((zs, ys, xs), spacing))
    lz = np.arange(iz.min(), iz.max() + 2)
    ly = np.arange(iy.min(), iy.max() + 2)
    lx = np.arange(ix.min(), ix.max() + 2)
    lat = hash_grid(key, lz, ly, lx).astype(np.float32) * np.float32(2.0 * _U32)
    lat -= np.float32(1.0)
    jx = ix - lx[0]
    a = lat[:, :, jx] * (1 - tx) + lat[:, :, jx + 1] * tx
    jy = iy - ly[0]
    b = a[:, jy, :] * (1 - ty)[:, None] + a[:, jy + 1, :] * ty[:, None]
    jz = iz - lz[0]
    out = np.empty((len(jz), b.shape[1], b.shape[2]), np.float32)
    tmp = np.empty(b.shape[1:], np.float32)
    for k, (j, t) in enumerate(zip(jz, tz)):  # plane by plane: no full-size gathers
        np.multiply(b[j], np.float32(1 - t), out=out[k])
        np.multiply(b[j + 1], t, out=tmp)
        out[k] += tmp
    return out


def value_noise_1d(key: np.uint32, coords, spacing: float) -> np.ndarray:
    """Smooth 1D noise in [-1, 1] at ``coords`` (e.g. section indices)."""
    i, t = _axis_weights(coords, spacing)
    lat = hash_values(key, np.arange(i.min(), i.max() + 2)) * 2.0 - 1.0
    j = i - i.min()
    return lat[j] * (1 - t) + lat[j + 1] * t

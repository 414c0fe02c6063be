"""Small lazy array adapters used by the readers.

Every reader hands :class:`~workbench.io.volume.Volume` an object with ``shape``, ``dtype`` and
numpy-style basic slicing that reads only the asked region. The adapters here are picklable by
*description* (path, offsets, keys), never by content, so a volume can be shipped to Dask workers:
each process reopens the file on first access.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

#: Exceptions a reader raises for damaged files; they become a one-line WorkbenchError.
READ_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, RuntimeError, KeyError, IndexError,
                                                TypeError, ArithmeticError, AssertionError, RecursionError,
                                                struct.error, zlib.error)
#: ... and while a header or metadata is parsed (a field of the wrong JSON type: ``None.get``)
OPEN_ERRORS: tuple[type[BaseException], ...] = (*READ_ERRORS, AttributeError, UnicodeError)


def first_line(err: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message`` of an exception, at most ``limit`` characters."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:limit]}" if text else type(err).__name__


def memory_limit() -> int:
    """The most bytes one page, chunk or block may claim: a quarter of physical memory, at most half of what
    is available now (a decoder asked for more aborts the process or starves the machine)."""
    try:
        total = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        total = 64 * 1024**3
    try:
        import psutil

        available = int(psutil.virtual_memory().available)
    except Exception:  # no psutil or no /proc: physical memory only
        available = total
    return max(256 * 1024**2, min(total // 4, available // 2))


def refuse_huge(shape, itemsize: int, what: str, source: str) -> None:
    """Raise before anything is allocated when one ``what`` (a page, chunk, block) of ``shape`` claims
    more bytes than :func:`memory_limit`: a damaged or hostile header, not a file this machine can read.

    Raises:
        WorkbenchError: the claim is too large (or not a list of sizes).
    """
    try:
        n = math.prod(int(s) for s in shape) * int(itemsize)
    except (TypeError, ValueError, OverflowError):
        raise WorkbenchError(f"{what} size {shape!r} is not a list of sizes (damaged header?)", source) from None
    limit = memory_limit()
    if n > limit:
        raise WorkbenchError(f"one {what} claims {n / 1e9:.3g} GB ({' x '.join(map(str, shape))}), more than the "
                             f"{limit / 1e9:.3g} GB one read may take here (damaged header?)", source)


class Guarded:
    """A library's array (zarr) whose reads turn damaged-data errors into one-line WorkbenchErrors."""

    def __init__(self, base: Any, source: str = ""):
        self.base, self.source = base, source
        self.shape = tuple(int(s) for s in base.shape)
        self.dtype = np.dtype(base.dtype)
        self.chunks = getattr(base, "chunks", None)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        try:
            return np.asarray(self.base[key])
        except WorkbenchError:
            raise
        except READ_ERRORS as err:
            raise WorkbenchError(f"cannot read the data (damaged or truncated file?): {first_line(err)}",
                                 self.source) from None

    def __array__(self, dtype=None, copy=None):
        a = self[...]
        return a if dtype is None else a.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]


def normalize_key(key: Any, shape: Sequence[int]) -> tuple:
    """Expand a basic numpy index (ints, slices, Ellipsis) to one entry per axis.

    Raises:
        TypeError: for fancy indexing (arrays, lists, None), which the lazy adapters do not support.
    """
    if not isinstance(key, tuple):
        key = (key,)
    n_ell = sum(k is Ellipsis for k in key)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis")
    if n_ell:
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (len(shape) - len(key) + 1) + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices for an array of shape {tuple(shape)}")
    key = key + (slice(None),) * (len(shape) - len(key))
    out = []
    for k, n in zip(key, shape):
        if isinstance(k, (int, np.integer)):
            k = int(k)
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis with size {n}")
            out.append(k % n)
        elif isinstance(k, slice):
            start, stop, step = k.indices(n)
            out.append(slice(start, None if stop < 0 else stop, step))
        else:
            raise TypeError(f"only integers, slices and ... are supported, got {type(k).__name__}")
    return tuple(out)


def sliced_shape(key: tuple, shape: Sequence[int]) -> tuple[int, ...]:
    """The shape a normalised key selects (integer entries drop their axis)."""
    return tuple(len(range(*k.indices(n))) for k, n in zip(key, shape) if isinstance(k, slice))


class LazyArray:
    """Base for the adapters: subclasses implement ``_read(key)`` with a normalised key."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None
    source: str = ""

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        a = self[...]
        return a if dtype is None else a.astype(dtype)

    def __getitem__(self, key) -> np.ndarray:
        key = normalize_key(key, self.shape)
        if any(s == 0 for s in sliced_shape(key, self.shape)):
            return np.zeros(sliced_shape(key, self.shape), self.dtype)
        refuse_huge(sliced_shape(key, self.shape), self.dtype.itemsize, "read", self.source)
        # readers get positive steps only (h5py and zarr refuse negative ones): read forwards, then flip
        flip, fwd, out_axis = [], [], 0
        for k, n in zip(key, self.shape):
            if isinstance(k, slice) and k.step < 0:
                r = range(*k.indices(n))
                k = slice(r[-1], r[0] + 1, -k.step)
                flip.append(out_axis)
            fwd.append(k)
            out_axis += isinstance(k, slice)
        try:
            data = self._read(tuple(fwd))
            return np.flip(data, axis=tuple(flip)) if flip else data
        except WorkbenchError:
            raise
        except READ_ERRORS as err:
            raise WorkbenchError(f"cannot read the data (damaged or truncated file?): {first_line(err)}",
                                 self.source) from None

    def _read(self, key: tuple) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getstate__(self):
        state = dict(self.__dict__)
        for name in ("_handle", "_lock"):
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _local(self, opener: Callable[[], Any]) -> Any:
        """The per-process open handle, created on first use (thread-safe)."""
        handle = self.__dict__.get("_handle")
        if handle is None:
            lock = self.__dict__.setdefault("_lock", threading.Lock())
            with lock:
                handle = self.__dict__.get("_handle")
                if handle is None:
                    handle = opener()
                    self.__dict__["_handle"] = handle
        return handle


class AxisView(LazyArray):
    """A z, y, x view of an n-D array: picks axes, fixes others (a channel, a size-1 axis), adds z if missing.

    Args:
        base: the n-D array-like.
        zyx: the base axes that become z, y and x (``None`` for z: a new axis of length 1).
        fixed: base axis -> index for every other axis.
    """

    def __init__(self, base: Any, zyx: tuple[int | None, int, int], fixed: dict[int, int], source: str = ""):
        self.base = base
        self.zyx = zyx
        self.fixed = dict(fixed)
        self.source = source
        bshape = tuple(int(s) for s in base.shape)
        self.shape = tuple(1 if a is None else bshape[a] for a in zyx)
        self.dtype = np.dtype(base.dtype)
        bchunks = getattr(base, "chunks", None)
        if isinstance(bchunks, tuple) and len(bchunks) == len(bshape) and all(isinstance(c, int) for c in bchunks):
            self.chunks = tuple(1 if a is None else int(bchunks[a]) for a in zyx)
        assert set(fixed) | {a for a in zyx if a is not None} == set(range(len(bshape)))

    def _read(self, key: tuple) -> np.ndarray:
        bkey: list[Any] = [None] * len(self.base.shape)
        for a, i in self.fixed.items():
            bkey[a] = i
        kept = []  # output axes order in terms of base axes
        for out_axis, a in enumerate(self.zyx):
            if a is None:
                continue
            bkey[a] = key[out_axis]
            if isinstance(key[out_axis], slice):
                kept.append(a)
        data = np.asarray(self.base[tuple(bkey)])
        # base axes still present in data, in base order
        order = sorted(kept)
        data = np.transpose(data, [order.index(a) for a in kept]) if order != kept else data
        if self.zyx[0] is None and isinstance(key[0], slice):
            data = data[np.newaxis]
        return data


class Finite(LazyArray):
    """Float data that raises :class:`WorkbenchError` when a region read contains NaN or infinity.

    The check runs on every read, so it costs one ``isfinite`` pass over what is read anyway and the
    whole volume is checked exactly when it is read (e.g. while importing, block by block).
    """

    def __init__(self, base: Any, source: str = ""):
        self.base = base
        self.source = source
        self.shape = tuple(int(s) for s in base.shape)
        self.dtype = np.dtype(base.dtype)
        self.chunks = getattr(base, "chunks", None)

    def _read(self, key: tuple) -> np.ndarray:
        data = np.asarray(self.base[key])
        if not np.isfinite(data).all():
            raise WorkbenchError(
                "float image contains NaN or infinite values; replace them (e.g. numpy.nan_to_num) first",
                self.source,
            )
        return data


class LabelCast(LazyArray):
    """Labels read as an unsigned integer type, checked on every read (negative or fractional values raise)."""

    def __init__(self, base: Any, dtype: Any, source: str = ""):
        self.base = base
        self.source = source
        self.shape = tuple(int(s) for s in base.shape)
        self.dtype = np.dtype(dtype)
        self.chunks = getattr(base, "chunks", None)

    def _read(self, key: tuple) -> np.ndarray:
        data = np.asarray(self.base[key])
        check_label_values(data, self.source)
        if data.dtype.kind == "f" and data.size and data.max() > np.iinfo(self.dtype).max:
            raise WorkbenchError(f"label values do not fit {self.dtype}", self.source)
        return data.astype(self.dtype, copy=False)


def check_label_values(data: np.ndarray, source: str) -> None:
    """Raise :class:`WorkbenchError` unless ``data`` holds non-negative integral values."""
    if data.size == 0:
        return
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise WorkbenchError("labels contain NaN or infinite values; labels must be non-negative integers", source)
        if not np.array_equal(data, np.floor(data)):
            raise WorkbenchError(
                f"labels must be integers, got fractional {data.dtype} values (is this an image, not labels?)",
                source,
            )
    elif data.dtype.kind not in "iub":
        raise WorkbenchError(f"labels must be integers, got {data.dtype}", source)
    if data.dtype.kind in "if" and data.min() < 0:
        raise WorkbenchError(f"labels must be non-negative integers, found {data.min()}", source)


class Crop(LazyArray):
    """A box (one slice per axis, step 1) of another array, read lazily."""

    def __init__(self, base: Any, box: tuple[slice, ...], source: str = ""):
        self.base, self.box, self.source = base, box, source
        self.shape = tuple(s.stop - s.start for s in box)
        self.dtype = np.dtype(base.dtype)
        base_chunks = getattr(base, "chunks", None)
        self.chunks = base_chunks if isinstance(base_chunks, tuple) and len(base_chunks) == len(box) else None

    def _read(self, key: tuple) -> np.ndarray:
        shifted = []
        for k, b in zip(key, self.box):
            if isinstance(k, slice):
                stop = b.start + (k.stop if k.stop is not None else b.stop - b.start)
                shifted.append(slice(b.start + k.start, stop, k.step))
            else:
                shifted.append(b.start + k)
        return np.asarray(self.base[tuple(shifted)])

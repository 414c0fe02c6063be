"""Turning n-D arrays with named (or guessed) axes into z, y, x volumes."""

from __future__ import annotations

import math
from typing import Any

from workbench.errors import WorkbenchError
from workbench.io.arrays import AxisView

CHANNEL_AXES = "CS"  # tifffile: C = channel, S = sample (RGB); NGFF: c


def guess_axes(shape: tuple[int, ...], src: str) -> str:
    """Axis letters for an array without axis metadata (HDF5, plain zarr, N5, MRC).

    2D is ``YX``, 3D ``ZYX``, 4D ``CZYX`` (channel first, as in NGFF) unless only the last axis is
    small (``ZYXC``), 5D ``TCZYX``.
    """
    n = len(shape)
    if n == 2:
        return "YX"
    if n == 3:
        return "ZYX"
    if n == 4:
        return "ZYXC" if shape[-1] <= 4 < shape[0] else "CZYX"
    if n == 5:
        return "TCZYX"
    raise WorkbenchError(f"cannot interpret a {n}-D array of shape {tuple(shape)} as a z, y, x volume", src)


def to_zyx(data: Any, axes: str, channel: int | None, src: str) -> Any:
    """A lazy z, y, x view of ``data`` whose axes are named by ``axes`` (e.g. ``"QYX"``, ``"ZCYX"``, ``"YXS"``).

    Size-1 axes are dropped; one channel axis needs ``channel``; any other axis of size > 1 besides
    z, y, x is an error.

    Raises:
        WorkbenchError: empty volume, several channels without ``channel``, a channel out of range,
            or more than three spatial axes.
    """
    shape = tuple(int(s) for s in data.shape)
    axes = axes.upper()
    if len(axes) != len(shape):
        raise WorkbenchError(f"axes {axes!r} do not match the array shape {shape}", src)
    if any(s < 0 for s in shape):
        raise WorkbenchError(f"damaged header: negative size in shape {shape}", src)
    if math.prod(shape) >= 2**62:  # no file holds this many voxels; libraries' index arithmetic overflows
        raise WorkbenchError(f"damaged header: shape {shape} claims more than 2^62 voxels", src)
    if any(s == 0 for s in shape):
        raise WorkbenchError(f"volume is empty (shape {shape})", src)
    if len(shape) < 2:
        raise WorkbenchError(f"expected an image or a volume, got a {len(shape)}-D array of shape {shape}", src)
    chan = [i for i, a in enumerate(axes) if a in CHANNEL_AXES]
    spatial = [i for i, a in enumerate(axes) if a not in CHANNEL_AXES]
    if "Y" in axes and "X" in axes:
        y, x = axes.index("Y"), axes.index("X")
    elif len(spatial) >= 2:
        y, x = spatial[-2], spatial[-1]
    else:
        raise WorkbenchError(f"no y and x axes in axes {axes!r} (shape {shape})", src)
    fixed: dict[int, int] = {}
    depth = [i for i in spatial if i not in (y, x)]
    big = [i for i in depth if shape[i] > 1]
    if len(big) > 1:
        desc = ", ".join(f"{axes[i]}={shape[i]}" for i in big)
        raise WorkbenchError(f"has more than one stacking axis ({desc}; axes {axes}); expected a single z, y, x volume", src)
    z = big[0] if big else None
    fixed.update({i: 0 for i in depth if i != z})
    bigc = [i for i in chan if shape[i] > 1]
    fixed.update({i: 0 for i in chan if shape[i] == 1})
    if len(bigc) > 1:
        raise WorkbenchError(f"has several channel axes (axes {axes}, shape {shape}); not supported", src)
    if bigc:
        c = bigc[0]
        n = shape[c]
        if channel is None:
            raise WorkbenchError(
                f"has {n} channels (axes {axes}, shape {shape}); choose one with --channel N "
                f"(0..{n - 1}; channel=N in Python)",
                src,
            )
        if not 0 <= int(channel) < n:
            raise WorkbenchError(f"channel {channel} does not exist: there are {n} channels (0..{n - 1})", src)
        fixed[c] = int(channel)
    elif channel not in (None, 0):
        raise WorkbenchError(f"channel {channel} does not exist: the data has a single channel", src)
    return AxisView(data, (z, y, x), fixed, source=src)

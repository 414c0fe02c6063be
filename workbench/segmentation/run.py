"""One entry point per use: :func:`segment` (in memory) and :func:`segment_prediction` (stored, blockwise)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box

METHODS = ("cc", "watershed", "affinity")


def segment(
    pred: np.ndarray,
    method: str = "cc",
    threshold: float = 0.5,
    min_size: int = 0,
    **options,
) -> np.ndarray:
    """Instances from an in-memory prediction.

    Args:
        pred: ``cc``: class probability (z, y, x), foreground ``> threshold``; ``watershed``: boundary
            probability (z, y, x), seeds where ``< threshold``; ``affinity``: (3, z, y, x) affinities,
            merged while the mean affinity ``> threshold``.
        method: one of :data:`METHODS`.
        min_size: smaller objects are removed.
        options: passed on (``connectivity``; ``seed_method``, ``min_distance``, ``mask``,
            ``merge_threshold``; ``seed_threshold``).

    Returns:
        uint32 labels (0 = background).
    """
    from workbench.segmentation.affinity import affinity_agglomeration
    from workbench.segmentation.components import connected_components
    from workbench.segmentation.watershed import seeded_watershed

    if method == "cc":
        return connected_components(pred, threshold, min_size, **options)
    if method == "watershed":
        return seeded_watershed(pred, threshold=threshold, min_size=min_size, **options)
    if method == "affinity":
        return affinity_agglomeration(pred, threshold=threshold, min_size=min_size, **options)
    raise WorkbenchError(f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")


def nearest_affinity_channels(channel_names: Sequence[str]) -> tuple[list[int], list[int]]:
    """Channels named ``affinity (dz, dy, dx)`` with a single ``-1`` offset: (channel indices, their axes)."""
    import re

    chans, axes = [], []
    for i, name in enumerate(channel_names):
        m = re.fullmatch(r"\s*affinity\s*\(\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(-?\d+)\s*\)\s*", str(name))
        if not m:
            continue
        off = [int(v) for v in m.groups()]
        if sorted(off) == [-1, 0, 0]:
            chans.append(i)
            axes.append(off.index(-1))
    order = np.argsort(axes)
    return [chans[i] for i in order], [axes[i] for i in order]


def _label_attrs(name: str, voxel_size: Sequence[float], info: dict) -> dict:
    return {
        "multiscales": [
            {
                "version": "0.4",
                "name": name,
                "axes": [{"name": a, "type": "space", "unit": "nanometer"} for a in "zyx"],
                "datasets": [
                    {"path": "0", "coordinateTransformations": [
                        {"type": "scale", "scale": [float(v) for v in voxel_size]}]}
                ],
            }
        ],
        "image-label": {"version": "0.4", "source": {"image": "../"}},
        "workbench": dict(info, kind="segmentation", complete=False),
    }


def _remove_small_blockwise(out, blocks, min_size: int) -> None:
    if min_size <= 1:
        return
    n = 0
    for _, box in blocks:
        n = max(n, int(np.asarray(out[box.slices]).max(initial=0)))
    sizes = np.zeros(n + 1, np.int64)
    for _, box in blocks:
        sizes += np.bincount(np.asarray(out[box.slices]).ravel().astype(np.int64), minlength=n + 1)
    mapping = np.arange(n + 1)
    mapping[sizes < min_size] = 0
    for _, box in blocks:
        out[box.slices] = mapping[np.asarray(out[box.slices]).astype(np.int64)].astype(out.dtype)


def segment_prediction(
    pred_path: str | Path,
    out: str | Path,
    method: str = "cc",
    channel: int = 0,
    threshold: float = 0.5,
    min_size: int = 0,
    block_shape: Sequence[int] | None = None,
    halo: Sequence[int] = (8, 32, 32),
    overwrite: bool = False,
    progress=None,
    per_section: bool = False,
    merge_threshold: float | None = None,
) -> Path:
    """Segment a stored prediction into an OME-Zarr label image (uint32 ``0`` array, z y x) at ``out``.

    Every method runs block by block (see :mod:`workbench.segmentation.blockwise`); ``affinity`` uses the
    nearest-neighbour affinity channels (named ``affinity (dz, dy, dx)`` by training; else
    ``channel .. channel+2`` as z, y, x). ``per_section``: objects never
    connect across z (each section segmented on its own, ids unique in the volume; cc and watershed).
    ``merge_threshold`` (watershed): touching objects are then merged while the mean boundary along their
    contact is below it.

    Raises:
        WorkbenchError: incomplete or missing prediction, bad channel, output exists without ``overwrite``.
    """
    import zarr

    from workbench.inference.output import open_prediction

    if method not in METHODS:
        raise WorkbenchError(f"unknown segmentation method {method!r}; choose one of {', '.join(METHODS)}")
    pred_path, out = Path(pred_path), Path(out)
    arr = open_prediction(pred_path)  # refuses incomplete predictions
    n_channels = arr.shape[0]
    need = 1
    aff_channels, aff_axes = [], []
    if method == "affinity":
        from workbench.inference.output import read_info

        aff_channels, aff_axes = nearest_affinity_channels(read_info(pred_path).get("channel_names") or [])
        if not aff_channels:  # unnamed: channels channel.. as z, y, x
            aff_channels, aff_axes = list(range(channel, channel + 3)), [0, 1, 2]
            need = 3
    if not 0 <= channel or channel + need > n_channels:
        raise WorkbenchError(
            f"channel {channel} does not exist for method {method!r}: the prediction has {n_channels} channels",
            pred_path)
    if out.exists() and not overwrite:
        raise WorkbenchError("output exists; pass --overwrite to replace it", out)
    vol = open_prediction(pred_path, channel)
    shape = vol.shape
    block = tuple(int(b) for b in (block_shape or arr.chunks[1:]))
    block = tuple(min(b, s) for b, s in zip(block, shape))
    part = out.with_name(out.name + ".partial")
    if part.exists():
        shutil.rmtree(part)
    root = zarr.open_group(str(part), mode="w", zarr_format=2)
    labels = root.create_array("0", shape=shape, chunks=block, dtype="uint32", fill_value=0,
                               chunk_key_encoding={"name": "v2", "separator": "/"})
    if per_section and method == "affinity":
        raise WorkbenchError("per-section segmentation is for cc and watershed; affinities carry their own z edges")
    if merge_threshold is not None and method != "watershed":
        raise WorkbenchError(f"a merge threshold is for the watershed method, not {method!r}")
    if merge_threshold is not None and not 0.0 <= merge_threshold <= 1.0:
        raise WorkbenchError(f"the merge threshold must be in [0, 1], got {merge_threshold}")
    info = {"prediction": str(pred_path), "method": method, "channel": channel, "threshold": threshold,
            "min_size": min_size, "per_section": bool(per_section), "merge_threshold": merge_threshold}
    root.attrs.update(_label_attrs(out.stem, vol.voxel_size, info))
    blocks = list(Box.from_shape(shape).blocks(block))
    if method == "cc":
        from workbench.segmentation.blockwise import label_blockwise

        label_blockwise(lambda b: vol[b.slices] > threshold, shape, labels, block, min_size, progress,
                        per_section=per_section)
    elif method == "watershed":
        from workbench.segmentation.blockwise import watershed_blockwise

        seeds = root.create_array("_seeds", shape=shape, chunks=block, dtype="uint32", fill_value=0)
        watershed_blockwise(lambda b: vol[b.slices], shape, labels, seeds, block, threshold, halo,
                            progress=progress, per_section=per_section, merge_threshold=merge_threshold)
        del root["_seeds"]
        _remove_small_blockwise(labels, blocks, min_size)
    else:
        from workbench.inference.output import from_storage
        from workbench.segmentation.blockwise import agglomerate_blockwise

        def read_affs(box):
            return from_storage(np.stack([np.asarray(arr[(c, *box.slices)]) for c in aff_channels]))

        fragments = root.create_array("_fragments", shape=shape, chunks=block, dtype="uint32", fill_value=0)
        agglomerate_blockwise(read_affs, shape, labels, fragments, block, axes=aff_axes, threshold=threshold,
                              halo=halo, progress=progress)
        del root["_fragments"]
        _remove_small_blockwise(labels, blocks, min_size)
    attrs = dict(root.attrs["workbench"])
    attrs["complete"] = True
    root.attrs["workbench"] = attrs
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    return out

"""One entry point per use: :func:`segment` (in memory) and :func:`segment_prediction` (stored, blockwise)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from workbench.errors import WorkbenchError
from workbench.geometry import Box
from workbench.inference.output import from_storage, open_prediction, read_info
from workbench.segmentation.affinity import affinity_agglomeration
from workbench.segmentation.blockwise import (
    AgglomerateBlockParams,
    BlockJob,
    WatershedBlockParams,
    agglomerate_blockwise,
    label_blockwise,
    remove_small_blockwise,
    watershed_blockwise,
)
from workbench.segmentation.components import connected_components
from workbench.segmentation.options import METHODS, SegmentMethod, SegmentOptions
from workbench.segmentation.watershed import WatershedParams, seeded_watershed

__all__ = ["METHODS", "nearest_affinity_channels", "segment", "segment_prediction"]


def segment(
    pred: np.ndarray,
    method: SegmentMethod | str = SegmentMethod.CC,
    threshold: float = 0.5,
    min_size: int = 0,
    **options,
) -> np.ndarray:
    """Instances from an in-memory prediction.

    Args:
        pred: ``cc``: class probability (z, y, x), foreground ``> threshold``; ``watershed``: boundary
            probability (z, y, x), seeds where ``< threshold``; ``affinity``: (3, z, y, x) affinities,
            merged while the mean affinity ``> threshold``.
        method: a :class:`SegmentMethod` (or its name).
        min_size: smaller objects are removed.
        options: passed on: ``cc``: ``connectivity``; ``watershed``: ``seeds``, ``mask`` and the other
            :class:`~workbench.segmentation.watershed.WatershedParams` fields (``seed_method``,
            ``min_distance``, ``merge_threshold``, ...); ``affinity``: ``seed_threshold``, ``mask``, ``axes``.

    Returns:
        uint32 labels (0 = background).

    Raises:
        WorkbenchError: unknown method.
    """
    method = SegmentMethod.parse(method)
    if method == SegmentMethod.CC:
        return connected_components(pred, threshold, min_size, **options)
    if method == SegmentMethod.WATERSHED:
        seeds, mask = options.pop("seeds", None), options.pop("mask", None)
        params = WatershedParams(threshold=threshold, min_size=min_size, **options)
        return seeded_watershed(pred, seeds, params, mask=mask)
    return affinity_agglomeration(pred, threshold=threshold, min_size=min_size, **options)


def nearest_affinity_channels(channel_names: Sequence[str]) -> tuple[list[int], list[int]]:
    """Channels named ``affinity (dz, dy, dx)`` with a single ``-1`` offset: (channel indices, their axes)."""
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


class _AffinityReader:
    """``box -> (len(axes), *box.shape)`` float affinities of a stored prediction (the affinity method);
    ``needed``: how many channels from the options' ``channel`` on the method reads."""

    def __init__(self, arr, channels: list[int], axes: list[int], needed: int = 1):
        self.arr, self.channels, self.axes, self.needed = arr, channels, tuple(axes), needed

    def __call__(self, box: Box) -> np.ndarray:
        return from_storage(np.stack([np.asarray(self.arr[(c, *box.slices)]) for c in self.channels]))


def _affinity_reader(pred_path: Path, arr, options: SegmentOptions) -> _AffinityReader:
    """The nearest-neighbour affinity channels (named ``affinity (dz, dy, dx)``; unnamed: ``channel`` ..
    ``channel + 2`` as z, y, x)."""
    if options.method != SegmentMethod.AFFINITY:
        return _AffinityReader(arr, [], [])
    chans, axes = nearest_affinity_channels(read_info(pred_path).get("channel_names") or [])
    if chans:
        return _AffinityReader(arr, chans, axes)
    c = options.channel
    return _AffinityReader(arr, list(range(c, c + 3)), [0, 1, 2], needed=3)


def _run_method(root, labels, job: BlockJob, options: SegmentOptions, read: Callable[[Box], np.ndarray],
                read_affs: Callable[[Box], np.ndarray]) -> None:
    """Write the instances of ``options.method`` into ``labels`` (scratch arrays go in ``root``); ``read``
    gives the channel, ``read_affs`` the affinities."""
    o = options
    if o.method == SegmentMethod.CC:
        label_blockwise(lambda b: read(b) > o.threshold, labels, job, min_size=o.min_size,
                        per_section=o.per_section)
        return
    scratch = "_seeds" if o.method == SegmentMethod.WATERSHED else "_fragments"
    tmp = root.create_array(scratch, shape=job.shape, chunks=job.block_shape, dtype="uint32", fill_value=0)
    if o.method == SegmentMethod.WATERSHED:
        watershed_blockwise(read, labels, tmp, job, WatershedBlockParams(
            threshold=o.threshold, halo=o.halo, per_section=o.per_section, merge_threshold=o.merge_threshold))
    else:
        agglomerate_blockwise(read_affs, labels, tmp, job, AgglomerateBlockParams(
            axes=read_affs.axes, threshold=o.threshold, halo=o.halo))
    del root[scratch]
    remove_small_blockwise(labels, job, o.min_size)


def segment_prediction(
    pred_zarr: str | Path,
    out: str | Path,
    options: SegmentOptions | None = None,
    *,
    progress=None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Segment a stored prediction into an OME-Zarr label image (uint32 ``0`` array, z y x) at ``out``.

    Every method runs block by block (see :mod:`workbench.segmentation.blockwise`); ``affinity`` uses the
    nearest-neighbour affinity channels (named ``affinity (dz, dy, dx)`` by training; else
    ``channel .. channel+2`` as z, y, x). ``options.per_section``: objects never connect across z (each
    section segmented on its own, ids unique in the volume; cc and watershed). ``options.merge_threshold``
    (watershed): touching objects are then merged while the mean boundary along their contact is below it.
    The output is written as ``OUT.partial`` and renamed when complete.

    Args:
        pred_zarr: a complete prediction of :func:`workbench.inference.predict_volume`.
        out: the label image to write.
        options: method and settings (:class:`SegmentOptions`; default: connected components of channel 0).
        progress: None, a tqdm-like object or ``callable(done, total)`` over the blocks of every pass.
        should_stop: polled before every block; True stops and removes the partial output.

    Raises:
        WorkbenchError: incomplete or missing prediction, bad channel, output exists without ``overwrite``,
            stopped.
    """
    import zarr

    o = options or SegmentOptions()
    pred_path, out = Path(pred_zarr), Path(out)
    arr = open_prediction(pred_path)  # refuses incomplete predictions
    n_channels = arr.shape[0]
    read_affs = _affinity_reader(pred_path, arr, o)
    if o.channel + read_affs.needed > n_channels:
        raise WorkbenchError(f"channel {o.channel} does not exist for method {str(o.method)!r}: the prediction "
                             f"has {n_channels} channels", pred_path)
    if out.exists() and not o.overwrite:
        raise WorkbenchError("output exists; pass --overwrite to replace it", out)
    vol = open_prediction(pred_path, o.channel)
    block = tuple(min(int(b), s) for b, s in zip(o.block_shape or arr.chunks[1:], vol.shape))
    part = out.with_name(out.name + ".partial")
    if part.exists():
        shutil.rmtree(part)
    root = zarr.open_group(str(part), mode="w", zarr_format=2)
    try:
        labels = root.create_array("0", shape=vol.shape, chunks=block, dtype="uint32", fill_value=0,
                                   chunk_key_encoding={"name": "v2", "separator": "/"})
        root.attrs.update(_label_attrs(out.stem, vol.voxel_size, dict(prediction=str(pred_path), **o.info())))
        job = BlockJob(vol.shape, block, progress=progress, should_stop=should_stop, where=out)
        _run_method(root, labels, job, o, lambda b: vol[b.slices], read_affs)
        root.attrs["workbench"] = dict(root.attrs["workbench"], complete=True)
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(part, out)
    return out

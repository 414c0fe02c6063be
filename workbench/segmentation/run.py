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
from workbench.segmentation.fragments import FragmentParams
from workbench.segmentation.offsets import prediction_offsets, split_offsets
from workbench.segmentation.options import GRAPH_METHODS, METHODS, SegmentMethod, SegmentOptions
from workbench.segmentation.stitching import (
    AffinityStats,
    BoundaryStats,
    FragmentTask,
    MutexTask,
    graph_solve_blockwise,
    mutex_watershed_blockwise,
)
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
            merged while the mean affinity ``> threshold``; ``mutex-watershed``: (C, z, y, x) affinities at
            ``offsets``; ``multicut``/``gasp``: boundary probability (z, y, x), or (C, z, y, x) affinities at
            ``offsets``, fragments joined where the mean boundary is below ``threshold``.
        method: a :class:`SegmentMethod` (or its name).
        min_size: smaller objects are removed.
        options: passed on: ``cc``: ``connectivity``; ``watershed``: ``seeds``, ``mask`` and the other
            :class:`~workbench.segmentation.watershed.WatershedParams` fields (``seed_method``,
            ``min_distance``, ``merge_threshold``, ...); ``affinity``: ``seed_threshold``, ``mask``, ``axes``;
            graph methods: ``offsets`` (one (dz, dy, dx) per channel), ``block_shape`` and ``halo`` (solved
            block by block and stitched, :mod:`workbench.segmentation.stitching`), ``per_section``,
            ``scheduler`` (threads or Dask).

    Returns:
        uint32 labels (0 = background).

    Raises:
        WorkbenchError: unknown method, bad offsets, a boundary map given to the mutex watershed.
    """
    method = SegmentMethod.parse(method)
    if method in GRAPH_METHODS:
        return _segment_graph(np.asarray(pred, np.float32), method, threshold, min_size, **options)
    if method == SegmentMethod.CC:
        return connected_components(pred, threshold, min_size, **options)
    if method == SegmentMethod.WATERSHED:
        seeds, mask = options.pop("seeds", None), options.pop("mask", None)
        params = WatershedParams(threshold=threshold, min_size=min_size, **options)
        return seeded_watershed(pred, seeds, params, mask=mask)
    return affinity_agglomeration(pred, threshold=threshold, min_size=min_size, **options)


def _segment_graph(pred: np.ndarray, method: SegmentMethod, threshold: float, min_size: int,
                   offsets=None, block_shape=None, halo=(8, 32, 32), per_section: bool = False,
                   scheduler=None) -> np.ndarray:
    """:func:`segment` for the graph methods: the blockwise code on in-memory arrays."""
    is_affinity = pred.ndim == 4
    if not is_affinity and pred.ndim != 3:
        raise WorkbenchError(f"expected a (z, y, x) boundary map or (C, z, y, x) affinities, got shape {pred.shape}")
    info = {"offsets": offsets, "target": "affinities" if is_affinity else "boundaries"}
    n_channels = pred.shape[0] if is_affinity else 1
    shape = pred.shape[-3:]
    job = BlockJob(shape, tuple(block_shape or shape))
    out = np.zeros(shape, np.uint32)
    plan = _GraphPlan.make(method, info, n_channels, None, per_section)
    array = pred if is_affinity else pred[None]
    _solve_graph(plan, _ArrayReader(array), out, np.zeros(shape, np.uint64), job, threshold, min_size,
                 tuple(halo), scheduler)
    return out


class _ArrayReader:
    """``box -> channels`` of an in-memory (C, z, y, x) array (``channels`` None: all)."""

    def __init__(self, array: np.ndarray, channels: Sequence[int] | None = None):
        self.array, self.channels = array, None if channels is None else list(channels)

    def __call__(self, box: Box) -> np.ndarray:
        data = self.array[(slice(None), *box.slices)]
        return data if self.channels is None else data[self.channels]

    def only(self, channels: Sequence[int]) -> _ArrayReader:
        return _ArrayReader(self.array, channels)

    def channel(self, c: int):
        return lambda box: self.array[(c, *box.slices)]


class _GraphPlan:
    """What a graph method reads from a prediction: the offsets, the nearest-neighbour channels and their
    axes, the boundary channel (boundary predictions), whether sections stay apart."""

    def __init__(self, method, offsets, near, near_axes, boundary_channel, per_section):
        self.method, self.offsets, self.near, self.near_axes = method, offsets, near, near_axes
        self.boundary_channel, self.per_section = boundary_channel, per_section

    @classmethod
    def make(cls, method: SegmentMethod, info: dict, n_channels: int, where, per_section: bool = False,
             channel: int = 0) -> _GraphPlan:
        """Raises WorkbenchError: a boundary prediction for the mutex watershed, offsets that do not match the
        channels, no long-range offsets for the mutex watershed."""
        target = str(info.get("target") or "")
        is_affinity = target == "affinities" or bool(info.get("offsets")) or method == SegmentMethod.MUTEX_WATERSHED
        if not is_affinity:
            names = [str(n).lower() for n in info.get("channel_names") or []]
            named = [i for i, n in enumerate(names) if n in ("boundary", "boundaries", "membrane")]
            return cls(method, None, [], (), named[0] if named else channel, per_section)
        offsets = prediction_offsets(info, n_channels, where, str(method))
        near, far = split_offsets(offsets)
        near = [c for c in near if sum(offsets[c]) == -1]  # the region graph's convention: v and v - e_a
        axes = tuple(next(a for a in range(3) if offsets[c][a]) for c in near)
        if method == SegmentMethod.MUTEX_WATERSHED and not far:
            raise WorkbenchError("mutex-watershed needs long-range affinity offsets (repulsive edges); this "
                                 f"prediction has only {offsets}", where)
        if not near:
            raise WorkbenchError(f"no nearest-neighbour affinity offsets (-1 along an axis) among {offsets}", where)
        order = np.argsort(axes)
        return cls(method, offsets, [near[i] for i in order], tuple(axes[i] for i in order), None,
                   per_section or 0 not in axes)


def _solve_graph(plan: _GraphPlan, reader, out, scratch, job: BlockJob, threshold: float, min_size: int,
                 halo, scheduler) -> int:
    """Run a graph method (mutex watershed, multicut, GASP) blockwise into ``out`` (``reader``: all channels,
    with ``only(channels)`` and ``channel(c)``)."""
    shape = job.shape
    if plan.method == SegmentMethod.MUTEX_WATERSHED:
        task = MutexTask(reader, scratch, shape, halo, tuple(tuple(o) for o in plan.offsets))
        return mutex_watershed_blockwise(task, reader.only(plan.near), plan.near_axes, out, job, min_size, scheduler)
    params = FragmentParams(per_section=plan.per_section)
    if plan.offsets is None:  # a boundary map
        read_boundary = reader.channel(plan.boundary_channel)
        task = FragmentTask(read_boundary, scratch, shape, halo, params)
        stats = BoundaryStats(read_boundary, (1, 2) if plan.per_section else (0, 1, 2))
    else:
        task = FragmentTask(reader.only(plan.near), scratch, shape, halo, params, plan.near_axes)
        stats = AffinityStats(reader, tuple(tuple(o) for o in plan.offsets), tuple(plan.near))
    return graph_solve_blockwise(task, stats, out, job, str(plan.method), threshold, min_size, scheduler)


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
        #: the graph methods' reading plan (set by :func:`segment_prediction`)
        self.plan: _GraphPlan | None = None

    def __call__(self, box: Box) -> np.ndarray:
        return from_storage(np.stack([np.asarray(self.arr[(c, *box.slices)]) for c in self.channels]))

    def only(self, channels: Sequence[int]) -> _AffinityReader:
        return _AffinityReader(self.arr, list(channels), [])

    def channel(self, c: int) -> _StoredChannel:
        return _StoredChannel(self.arr, c)


class _StoredChannel:
    """``box -> float`` one channel of a stored prediction (picklable, for Dask workers)."""

    def __init__(self, arr, channel: int):
        self.arr, self.c = arr, channel

    def __call__(self, box: Box) -> np.ndarray:
        return from_storage(np.asarray(self.arr[(self.c, *box.slices)]))


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
    if o.method in GRAPH_METHODS:
        plan, arr = read_affs.plan, read_affs.arr
        scratch = root.create_array("_pieces", shape=job.shape, chunks=job.block_shape, dtype="uint64",
                                    fill_value=0)
        reader = _AffinityReader(arr, list(range(arr.shape[0])), [])
        _solve_graph(plan, reader, labels, scratch, job, o.threshold, o.min_size, o.halo, o.scheduler)
        del root["_pieces"]
        return
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
    if o.method in GRAPH_METHODS:  # checks the offsets against the channels before anything is written
        read_affs.plan = _GraphPlan.make(o.method, read_info(pred_path), n_channels, pred_path, o.per_section,
                                         o.channel)
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
    if out.exists():  # moved aside, not deleted in place: a kill never leaves half of the old one under OUT
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(part, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(part, out)
    return out

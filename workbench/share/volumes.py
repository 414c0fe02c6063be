"""The share's volumes (OME-Zarr that Neuroglancer reads over plain HTTP) and its slice pictures (JPEG).

Layers: ``raw`` (uint8, a pyramid), ``truth`` (the class ground truth), per run ``<run>/prediction`` (the most
likely class, uint8) and ``<run>/instances`` (uint32). Every layer is read slab by slab, cropped and
downsampled (mean for the raw image, nearest for labels) to the plan's grid. Pictures are the raw slice
with the layer drawn over it in the class colours (instances in random colours).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.share.budget import LayerSize, SharePlan, picture_grid

RAW, TRUTH = "raw", "truth"


@dataclass(frozen=True)
class LayerSource:
    """A layer the share can hold: its size for the budget and how to read a z slice of it.

    Attributes:
        size: the :class:`LayerSize` (name, bytes per voxel, drop rank).
        kind: ``image``, ``classes`` (class ids with the project's colours) or ``instances``.
        read: ``read(z, ys, xs) -> 2D array`` at full resolution.
        dtype: the written dtype.
        run: the run it belongs to, or None.
    """

    size: LayerSize
    kind: str
    read: Callable[[int, slice, slice], np.ndarray]
    dtype: str
    run: str | None = None

    @property
    def name(self) -> str:
        return self.size.name


def layer_sources(project, run_ids: list[str]) -> list[LayerSource]:
    """The raw image, the ground truth and each run's prediction and instances, when they exist.

    Drop ranks: instances of the oldest run are dropped first, then the other runs' instances, the ground
    truth, and the predictions (oldest run first).
    """
    from workbench.inference import prediction_class_map
    from workbench.io import open_volume
    from workbench.viewer.state import contrast_window

    raw = project.raw
    lo, hi = contrast_window(raw)
    scale = 255.0 / max(hi - lo, 1e-9)

    def read_raw(z, ys, xs):
        a = np.asarray(raw[z:z + 1, ys, xs][0], dtype=np.float32)
        return np.clip((a - lo) * scale, 0, 255).astype(np.uint8)

    out = [LayerSource(LayerSize(RAW, 1, pyramid=True, drop_rank=0), "image", read_raw, "uint8")]
    n = len(run_ids)
    truth = project.truth
    if truth is not None:
        out.append(LayerSource(LayerSize(TRUTH, 1, drop_rank=n + 1), "classes",
                               lambda z, ys, xs: np.asarray(truth[z:z + 1, ys, xs][0]).astype(np.uint8), "uint8"))
    for i, rid in enumerate(run_ids):
        cmap = _finished_prediction(project, rid, prediction_class_map)
        if cmap is not None:
            out.append(LayerSource(LayerSize(f"{rid}/prediction", 1, drop_rank=n - i), "classes",
                                   lambda z, ys, xs, c=cmap: np.asarray(c[z, ys, xs].compute()), "uint8", rid))
        seg = project.segmentation_path(rid)
        if seg.exists():
            segv = open_volume(str(seg))
            out.append(LayerSource(LayerSize(f"{rid}/instances", 4, drop_rank=2 * n + 2 - i), "instances",
                                   lambda z, ys, xs, s=segv: np.asarray(s[z:z + 1, ys, xs][0]).astype(np.uint32),
                                   "uint32", rid))
    return out


def _finished_prediction(project, run_id: str, opener):
    """``opener(path)`` of the run's prediction, or None when there is none or it is unfinished (interrupted)."""
    from workbench.errors import WorkbenchError

    path = project.prediction_path(run_id)
    if not path.exists():
        return None
    try:
        return opener(path)
    except WorkbenchError:
        return None


def read_layer(src: LayerSource, plan: SharePlan) -> np.ndarray:
    """The layer on the plan's grid (crop, then y-x downsampling), read one z slice at a time."""
    (z0, z1), (y0, y1), (x0, x1) = plan.crop
    f = plan.factor
    out = np.zeros(plan.shape, dtype=src.dtype)
    for i, z in enumerate(range(z0, z1)):
        a = src.read(z, slice(y0, y1), slice(x0, x1))
        out[i] = _downsample(a, f, mean=src.kind == "image")
    return out


def _downsample(a: np.ndarray, f: int, mean: bool) -> np.ndarray:
    if f == 1:
        return a
    if not mean:
        return a[::f, ::f]
    from skimage.transform import downscale_local_mean

    return np.clip(np.rint(downscale_local_mean(a.astype(np.float32), (f, f))), 0, 255).astype(np.uint8)


def write_layer(data: np.ndarray, out: Path, voxel_size, src: LayerSource) -> Path:
    """Write one layer as OME-Zarr (images with a pyramid; labels as one level, as label values must not be
    averaged)."""
    from workbench.io.omezarr import WriteOptions, write_ome_zarr
    from workbench.io.volume import Volume

    vol = Volume(data, voxel_size=tuple(voxel_size), name=src.name.replace("/", "-"), source="")
    options = WriteOptions(name=vol.name, voxel_size=tuple(voxel_size), levels=None if src.size.pyramid else 1)
    return write_ome_zarr(vol, out, options)


def picture_slices(plan: SharePlan, max_slices: int, max_side: int) -> tuple[list[int], int]:
    """The z indices (on the plan's grid) that get pictures, and the picture's y-x step."""
    n, _, _ = picture_grid(plan.shape, max_slices, max_side)
    z = plan.shape[0]
    zs = sorted({int(round(v)) for v in np.linspace(0, z - 1, n)}) if n < z else list(range(z))
    step = max(1, math.ceil(max(plan.shape[1:]) / max_side))
    return zs, step


def overlay_rgb(raw: np.ndarray, layer: np.ndarray | None, kind: str, colors: dict[int, str]) -> np.ndarray:
    """The raw slice (grey) with ``layer`` drawn over it: classes in ``colors``, instances in random colours."""
    from workbench.classes import instance_rgba, label_rgba

    grey = np.repeat(raw[..., None].astype(np.float32), 3, axis=-1)
    if layer is None or kind == "image":
        return grey.astype(np.uint8)
    rgba = instance_rgba(layer, 150) if kind == "instances" else label_rgba(layer, colors, 150)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.clip(grey * (1 - alpha) + rgba[..., :3].astype(np.float32) * alpha, 0, 255).astype(np.uint8)


def write_pictures(raw: np.ndarray, layer: np.ndarray, src: LayerSource, folder: Path, zs: list[int], step: int,
                   colors: dict[int, str]) -> int:
    """JPEG pictures ``folder/<i>.jpg`` of the slices ``zs`` (numbered 0..n-1); returns the bytes written."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    total = 0
    for i, z in enumerate(zs):
        rgb = overlay_rgb(raw[z, ::step, ::step], layer[z, ::step, ::step], src.kind, colors)
        path = folder / f"{i}.jpg"
        Image.fromarray(rgb).save(path, quality=85)
        total += path.stat().st_size
    return total


def uncertainty_summary(project, run_id: str, plan: SharePlan) -> dict | None:
    """How sure the prediction is on the share's grid: mean normalised entropy, mean top probability and the
    fraction of voxels whose top probability is below 0.6 (None without a prediction)."""
    from workbench.inference import open_prediction
    from workbench.inference.output import from_storage

    arr = _finished_prediction(project, run_id, open_prediction)
    if arr is None:
        return None
    (z0, z1), (y0, y1), (x0, x1) = plan.crop
    f = plan.factor
    ent, top, low, n = 0.0, 0.0, 0, 0
    for z in range(z0, z1):
        p = np.asarray(from_storage(np.asarray(arr[:, z, y0:y1:f, x0:x1:f])), dtype=np.float64)
        p = p / np.maximum(p.sum(axis=0, keepdims=True), 1e-12)
        c = p.shape[0]
        e = -(p * np.log(np.maximum(p, 1e-12))).sum(axis=0) / (np.log(c) if c > 1 else 1.0)
        m = p.max(axis=0)
        ent += float(e.sum())
        top += float(m.sum())
        low += int((m < 0.6).sum())
        n += m.size
    if n == 0:
        return None
    return {"mean_entropy": ent / n, "mean_top_probability": top / n, "uncertain_fraction": low / n,
            "uncertain_below": 0.6}

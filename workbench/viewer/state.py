"""Pure functions that build Neuroglancer viewer states for the workbench's layers.

Nothing here touches a live server: every function takes a ``neuroglancer.ViewerState`` (or returns
one) and can be tested on :func:`state_to_json`. Data sources are ``neuroglancer.LocalVolume`` objects
(see :mod:`workbench.viewer.sources`) or any Neuroglancer source URL string.

Conventions: arrays are ``(z, y, x)``; the coordinate space is named ``z, y, x`` in nanometres from the
volume's voxel size; the panels show ``x, y, z`` (``display_dimensions``) so the "xy" panel is a z slice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from workbench.classes import LabelClass, hex_to_rgb, normalize_classes

#: Axis names of every coordinate space the workbench builds.
AXES = ("z", "y", "x")
#: What the panels show: x to the right, y down, z through the screen.
DISPLAY_DIMENSIONS = ["x", "y", "z"]
#: Prefix of the per-class annotation (drawing) layers: ``"draw: membrane"``.
DRAW_LAYER_PREFIX = "draw: "

RAW_SHADER = """#uicontrol invlerp normalized(range=[{lo}, {hi}], window=[{wlo}, {whi}])
void main() {{
  emitGrayscale(normalized());
}}
"""

PROBABILITY_SHADER = """#uicontrol vec3 color color(default="{color}")
#uicontrol invlerp prob(range=[{lo}, {hi}], clamp=true)
void main() {{
  float p = prob();
  emitRGB(color * p);
}}
"""

UNCERTAINTY_SHADER = """#uicontrol invlerp level(range=[{lo}, {hi}], clamp=true)
#uicontrol float strength slider(min=0, max=1, default=0.7)
void main() {{
  float u = level();
  vec3 c = colormapJet(u);
  emitRGBA(vec4(c, u * strength));
}}
"""


def coordinate_space(voxel_size: Sequence[float]):
    """The Neuroglancer coordinate space for a ``(z, y, x)`` voxel size in nanometres."""
    import neuroglancer

    vs = [float(v) for v in voxel_size]
    if len(vs) != 3 or not all(v > 0 for v in vs):
        raise ValueError(f"voxel size must be three positive numbers (z, y, x nm), got {voxel_size}")
    return neuroglancer.CoordinateSpace(names=list(AXES), units="nm", scales=vs)


def sample_slices(shape: Sequence[int], n: int = 8) -> list[int]:
    """Up to ``n`` z indices spread evenly through a volume of ``shape`` (z first)."""
    z = int(shape[0])
    if z <= n:
        return list(range(z))
    return sorted({int(round(v)) for v in np.linspace(0, z - 1, n)})


def contrast_window(data: Any, n_slices: int = 8, percentiles=(0.5, 99.5), max_side: int = 1024) -> tuple[float, float]:
    """A display window for raw data from percentiles of a few z slices.

    Args:
        data: any ``(z, y, x)`` array-like (numpy, zarr, dask, h5py, Volume).
        n_slices: how many evenly spaced slices to sample (each read once).
        percentiles: low and high percentile of the window.
        max_side: of larger slices only a central ``max_side`` x ``max_side`` crop is read.
    Returns:
        ``(lo, hi)`` with ``hi > lo``.
    """
    shape = tuple(int(s) for s in data.shape)
    # a central crop of at most max_side^2 per slice: reads few storage chunks even on huge slices
    y0, x0 = max(0, (shape[1] - max_side) // 2), max(0, (shape[2] - max_side) // 2)
    crop = (slice(y0, y0 + max_side), slice(x0, x0 + max_side))
    parts = [np.asarray(data[(z, *crop)], dtype=np.float64).ravel() for z in sample_slices(shape, n_slices)]
    values = np.concatenate(parts) if parts else np.zeros(1)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def dtype_range(dtype) -> tuple[float, float]:
    """The full value range of an integer dtype, ``(0, 1)`` for floats."""
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        info = np.iinfo(dt)
        return float(info.min), float(info.max)
    return 0.0, 1.0


def _fmt(v: float) -> str:
    return f"{float(v):.6g}"


def raw_shader(lo: float, hi: float, dtype="uint8") -> str:
    """Grayscale shader with an adjustable window ``[lo, hi]`` (the slider spans the dtype's range)."""
    wlo, whi = dtype_range(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else (lo, hi)
    return RAW_SHADER.format(lo=_fmt(lo), hi=_fmt(hi), wlo=_fmt(min(wlo, lo)), whi=_fmt(max(whi, hi)))


def probability_shader(color: str, dtype="float32") -> str:
    """Shader drawing a probability channel in ``color`` (brightness = probability; for additive blending)."""
    hex_to_rgb(color)  # validates
    lo, hi = (0.0, 1.0) if not np.issubdtype(np.dtype(dtype), np.integer) else (0.0, dtype_range(dtype)[1])
    return PROBABILITY_SHADER.format(color=color, lo=_fmt(lo), hi=_fmt(hi))


def uncertainty_shader(lo: float = 0.0, hi: float = 1.0) -> str:
    """Jet colour map shader for an uncertainty map (transparent where certain)."""
    return UNCERTAINTY_SHADER.format(lo=_fmt(lo), hi=_fmt(hi))


def new_state(voxel_size: Sequence[float], shape: Sequence[int] | None = None, layout: str | None = None):
    """An empty viewer state: coordinate space, display dimensions, position at the centre, layout.

    Args:
        voxel_size: ``(z, y, x)`` nm.
        shape: ``(z, y, x)`` of the data; sets the position to the centre voxel.
        layout: ``"xy"``, ``"4panel"``, ...; default ``"xy"`` for a single slice, else ``"4panel"``.
    """
    import neuroglancer

    state = neuroglancer.ViewerState()
    state.dimensions = coordinate_space(voxel_size)
    state.display_dimensions = list(DISPLAY_DIMENSIONS)
    if shape is not None:
        state.position = [int(s) // 2 + 0.5 for s in shape]
        state.cross_section_scale = fit_scale(shape, voxel_size)
        if layout is None:
            layout = "xy" if int(shape[0]) == 1 else "4panel"
    state.layout = layout or "4panel"
    return state


def fit_scale(shape: Sequence[int], voxel_size: Sequence[float], panel_pixels: int = 500) -> float:
    """``cross_section_scale`` showing the whole y-x extent of ``shape`` in about ``panel_pixels`` pixels.

    Neuroglancer measures the scale in units of the smallest voxel dimension per screen pixel.
    """
    vs = [float(v) for v in voxel_size]
    extent_nm = max(int(shape[1]) * vs[1], int(shape[2]) * vs[2])
    return max(extent_nm / min(vs) / float(panel_pixels), 1e-3)


def set_layout(state, layout: str) -> None:
    """Set the panel layout (``"xy"``, ``"xz"``, ``"yz"``, ``"3d"``, ``"4panel"``, ``"xy-3d"``, ...)."""
    state.layout = layout


def add_image_layer(state, name: str, source, window: tuple[float, float], dtype="uint8", visible: bool = True):
    """Add the raw EM image as a grayscale layer with contrast ``window`` (see :func:`contrast_window`)."""
    import neuroglancer

    state.layers[name] = neuroglancer.ImageLayer(source=source, shader=raw_shader(*window, dtype=dtype), opacity=1.0)
    state.layers[name].visible = visible
    return state.layers[name]


def add_labels_layer(state, name: str, source, classes=None, alpha: float = 0.6, visible: bool = True):
    """Add sparse class labels (``0`` = unlabelled) as a segmentation layer, one colour per class.

    Args:
        classes: the project's classes (anything :func:`normalize_classes` accepts).
        alpha: opacity of the labels in the 2D panels.
    """
    import neuroglancer

    infos = normalize_classes(classes)
    layer = neuroglancer.SegmentationLayer(
        source=source,
        segments=[c.id for c in infos],
        segment_colors={c.id: c.color for c in infos},
        selected_alpha=float(alpha),
        not_selected_alpha=0.0,
        hide_segment_zero=True,
        hover_highlight=False,
    )
    state.layers[name] = layer
    state.layers[name].visible = visible
    return state.layers[name]


@dataclass(frozen=True)
class ProbabilityStyle:
    """How :func:`add_probability_layers` draws probability channels.

    Attributes:
        dtype: the stored dtype of the channels (``uint8`` is rescaled from 0..255 in the shader).
        prefix: put before each class name to make the layer name.
        opacity: of each layer, in [0, 1].

    Raises:
        ValueError: opacity outside [0, 1].
    """

    dtype: Any = "float32"
    prefix: str = "prob: "
    opacity: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise ValueError(f"opacity must be in [0, 1], got {self.opacity}")


def add_probability_layers(
    state,
    sources: Sequence,
    names: Sequence[str],
    colors: Sequence[str],
    style: ProbabilityStyle | None = None,
) -> list[str]:
    """Add one image layer per class probability channel, each tinted with its class colour.

    Layers blend additively, so overlapping classes mix their colours. ``style``: dtype, layer-name
    prefix and opacity (:class:`ProbabilityStyle`). Returns the layer names.
    """
    import neuroglancer

    if not (len(sources) == len(names) == len(colors)):
        raise ValueError("sources, names and colors must have the same length")
    style = style or ProbabilityStyle()
    out = []
    for source, nm, color in zip(sources, names, colors):
        layer_name = f"{style.prefix}{nm}"
        state.layers[layer_name] = neuroglancer.ImageLayer(
            source=source, shader=probability_shader(color, dtype=style.dtype), blend="additive",
            opacity=style.opacity,
        )
        out.append(layer_name)
    return out


def add_instance_layer(state, name: str, source, alpha: float = 0.4, visible: bool = True):
    """Add an instance segmentation (``0`` = background, other ids = objects), random colour per id."""
    import neuroglancer

    state.layers[name] = neuroglancer.SegmentationLayer(source=source, selected_alpha=float(alpha), hide_segment_zero=True)
    state.layers[name].visible = visible
    return state.layers[name]


def add_uncertainty_layer(state, name: str, source, window: tuple[float, float] = (0.0, 1.0), visible: bool = True):
    """Add an uncertainty map (high = uncertain) as a jet-coloured, mostly transparent overlay."""
    import neuroglancer

    state.layers[name] = neuroglancer.ImageLayer(source=source, shader=uncertainty_shader(*window), opacity=1.0)
    state.layers[name].visible = visible
    return state.layers[name]


#: Colour of the suggestion boxes (the yellow of the app's suggestion box).
SUGGESTION_COLOR = "#ffe119"


def add_suggestion_layer(state, name: str, suggestions: Sequence, voxel_size: Sequence[float],
                         color: str = SUGGESTION_COLOR) -> list[str]:
    """Add ranked suggestions (:class:`workbench.suggestions.Suggestion`, best first) as box annotations.

    Each box spans its half-open voxel box ``[z0, y0, x0, z1, y1, x1]`` (corners ``(z0, y0, x0)`` and
    ``(z1, y1, x1)`` in the layer's z, y, x voxel coordinates); its description is ``#rank score S``, and
    ``rank`` and ``score`` are annotation properties (shown in Neuroglancer's annotation list).

    Returns:
        the annotation ids (``suggestion-1``, ...), in rank order.
    """
    import neuroglancer

    hex_to_rgb(color)  # validates
    properties = [neuroglancer.AnnotationPropertySpec(id="rank", type="uint32"),
                  neuroglancer.AnnotationPropertySpec(id="score", type="float32")]
    annotations, ids = [], []
    for rank, sug in enumerate(suggestions, start=1):
        z0, y0, x0, z1, y1, x1 = (int(v) for v in sug.box)
        ids.append(f"suggestion-{rank}")
        annotations.append(neuroglancer.AxisAlignedBoundingBoxAnnotation(
            id=ids[-1], point_a=[z0, y0, x0], point_b=[z1, y1, x1],
            description=f"#{rank} score {float(sug.score):.3f}", props=[rank, float(sug.score)]))
    state.layers[name] = neuroglancer.LocalAnnotationLayer(
        dimensions=coordinate_space(voxel_size), annotation_color=color, annotation_properties=properties,
        annotations=annotations)
    return ids


def draw_layer_name(info: LabelClass) -> str:
    """The name of the annotation layer where the user draws strokes of class ``info``."""
    return f"{DRAW_LAYER_PREFIX}{info.name}"


def add_draw_layers(state, voxel_size: Sequence[float], classes=None) -> dict[str, int]:
    """Add one Neuroglancer annotation layer per class (colour = class colour) to draw strokes in.

    Returns:
        ``{layer name: class id}``.
    """
    import neuroglancer

    dims = coordinate_space(voxel_size)
    mapping = {}
    for info in normalize_classes(classes):
        layer_name = draw_layer_name(info)
        state.layers[layer_name] = neuroglancer.LocalAnnotationLayer(dimensions=dims, annotation_color=info.color)
        mapping[layer_name] = info.id
    return mapping


def _json_default(obj):
    from neuroglancer.local_volume import LocalVolume

    if isinstance(obj, LocalVolume):
        return {"localVolume": {"shape": [int(s) for s in obj.shape], "dtype": obj.data_type, "volumeType": obj.volume_type}}
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def state_to_json(state) -> dict:
    """The state as plain JSON (local volumes shown as ``{"localVolume": {shape, dtype, volumeType}}``)."""
    return json.loads(json.dumps(state.to_json(), default=_json_default))

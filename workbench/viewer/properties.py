"""Neuroglancer segment properties for segmentation layers: names, sizes, volumes, boxes, tags.

Neuroglancer reads segment properties from a ``precomputed`` source whose ``info`` is a
``neuroglancer_segment_properties`` JSON; the segment list then shows each id's label and lets the user
search by name, tag (``#mito``) and number (``voxels>1000``). The python-served volumes (``LocalVolume``)
carry no properties, so the workbench serves the JSON itself, from the same Neuroglancer server (a route
added to its web application): ``{server root}workbench/segment_properties/<key>/info``, where the
server root is the address the browser reaches the server at (direct, or through jupyter-server-proxy).
A segmentation layer's source is then ``[local volume, "precomputed://<that URL without /info>"]``.

The JSON builders (:func:`instance_properties`, :func:`class_properties`) are pure; the JSON of an
instance layer is computed on the first request (one blockwise pass over the labels), in the server's
worker threads.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Sequence

import numpy as np

from workbench.classes import normalize_classes
from workbench.objects import ObjectTable

#: The route (below the server root) the segment properties are served at.
ROUTE_PREFIX = "workbench/segment_properties"
PROPERTIES_TYPE = "neuroglancer_segment_properties"
#: Tag of objects whose bounding box touches the volume's border (cut off: their size is a lower bound).
BORDER_TAG = "border"

_lock = threading.Lock()
_registry: dict[str, Callable[[], dict]] = {}
_cache: dict[str, dict] = {}
_installed: set[int] = set()


def instance_properties(table: ObjectTable, shape: Sequence[int] | None = None) -> dict:
    """The segment properties JSON of an instance segmentation's object table.

    Per object: ``label`` (``"<class> <id>"``), ``description`` (size and volume), ``class`` and ``bbox``
    strings (``"z0:z1, y0:y1, x0:x1"``), numbers ``voxels``, ``volume_um3``, ``centroid_z/y/x``,
    ``mean_probability`` (when known), and tags: the class, and :data:`BORDER_TAG` for objects touching the
    border of a volume of ``shape``.
    """
    c = table.columns
    n = len(table)
    ids = [str(int(i)) for i in c["id"]]
    classes = [str(k) for k in c["class"]]
    tags = sorted(set(classes))
    tag_index = {t: i for i, t in enumerate(tags)}
    border = np.zeros(n, bool)
    if shape is not None and n:
        lo = np.stack([c["bbox_z0"], c["bbox_y0"], c["bbox_x0"]], axis=1)
        hi = np.stack([c["bbox_z1"], c["bbox_y1"], c["bbox_x1"]], axis=1)
        dims = np.asarray([int(s) for s in shape])
        # a single-slice axis (2D data) does not count as border
        border = np.any(((lo == 0) | (hi == dims)) & (dims > 1), axis=1)
    all_tags = tags + ([BORDER_TAG] if border.any() else [])
    border_index = len(tags)
    tag_values = [[tag_index[k]] + ([border_index] if b else []) for k, b in zip(classes, border)]
    boxes = [f"{a}:{d}, {b}:{e}, {cc}:{f}" for a, b, cc, d, e, f in zip(
        c["bbox_z0"].tolist(), c["bbox_y0"].tolist(), c["bbox_x0"].tolist(),
        c["bbox_z1"].tolist(), c["bbox_y1"].tolist(), c["bbox_x1"].tolist())]
    vox = c["voxels"].tolist()
    vol = c["volume_um3"].tolist()
    props = [
        {"id": "label", "type": "label", "values": [f"{k} {i}" for k, i in zip(classes, ids)]},
        {"id": "description", "type": "description",
         "values": [f"{v} voxels, {u:.4g} um^3" for v, u in zip(vox, vol)]},
        {"id": "class", "type": "string", "values": classes},
        {"id": "bbox", "type": "string", "description": "bounding box z0:z1, y0:y1, x0:x1 (voxels)",
         "values": boxes},
        {"id": "tags", "type": "tags", "tags": all_tags,
         "tag_descriptions": [f"class {t}" for t in tags]
         + (["touches the volume border"] if border.any() else []),
         "values": tag_values},
        {"id": "voxels", "type": "number", "data_type": "uint32", "values": [min(int(v), 2**32 - 1) for v in vox]},
        {"id": "volume_um3", "type": "number", "data_type": "float32", "values": [float(u) for u in vol]},
    ]
    for axis in "zyx":
        props.append({"id": f"centroid_{axis}", "type": "number", "data_type": "float32",
                      "values": [round(float(v), 2) for v in c[f"centroid_{axis}"]]})
    prob = c["mean_probability"]
    if n and np.all(np.isfinite(prob)):
        props.append({"id": "mean_probability", "type": "number", "data_type": "float32",
                      "values": [round(float(v), 4) for v in prob]})
    return {"@type": PROPERTIES_TYPE, "inline": {"ids": ids, "properties": props}}


def class_properties(classes) -> dict:
    """The segment properties JSON of a class map (sparse labels, semantic predictions): id -> class name."""
    infos = normalize_classes(classes)
    return {"@type": PROPERTIES_TYPE, "inline": {
        "ids": [str(i.id) for i in infos],
        "properties": [
            {"id": "label", "type": "label", "values": [i.name for i in infos]},
            {"id": "tags", "type": "tags", "tags": [i.name for i in infos],
             "values": [[k] for k in range(len(infos))]},
        ]}}


def register(make_info: Callable[[], dict]) -> str:
    """Serve ``make_info()`` (called once, on the first request) under a new random key; returns the key."""
    key = secrets.token_hex(12)
    with _lock:
        _registry[key] = make_info
    return key


def unregister(key: str) -> None:
    """Stop serving ``key``."""
    with _lock:
        _registry.pop(key, None)
        _cache.pop(key, None)


def info_for(key: str) -> dict | None:
    """The JSON served for ``key`` (computed on first use), or None for an unknown key."""
    with _lock:
        if key in _cache:
            return _cache[key]
        make = _registry.get(key)
    if make is None:
        return None
    info = make()
    with _lock:
        if key in _registry:
            _cache[key] = info
    return info


def source_url(root: str, key: str) -> str:
    """The Neuroglancer source URL of ``key`` for a server reached at ``root`` (ending in ``/``)."""
    root = root if root.endswith("/") else root + "/"
    return f"precomputed://{root}{ROUTE_PREFIX}/{key}"


def install(server) -> None:
    """Add the segment-properties route to a running ``neuroglancer.server.Server`` (once per server)."""
    import asyncio

    from neuroglancer.server import BaseRequestHandler  # Neuroglancer's own handler base (its tornado app)

    with _lock:
        if id(server) in _installed:
            return
        _installed.add(id(server))

    class SegmentPropertiesHandler(BaseRequestHandler):
        async def get(self, key):
            try:
                info = await asyncio.wrap_future(self.server.executor.submit(info_for, key))
            except Exception as err:  # an unreadable segmentation: say so instead of hanging the client
                self.send_error(500, reason=" ".join(str(err).split())[:200])
                return
            if info is None:
                self.send_error(404)
                return
            self.set_header("Content-type", "application/json")
            self.finish(json.dumps(info).encode())

    server.app.add_handlers(r".*", [(rf"^/{ROUTE_PREFIX}/(?P<key>[0-9a-f]+)/info$", SegmentPropertiesHandler,
                                     {"server": server})])

"""``WorkbenchViewer``: the one object that owns a live Neuroglancer server and its viewer state.

The server is Neuroglancer's own (tornado, in a background thread), bound to 127.0.0.1 on a free port
by default. Each viewer's URL holds Neuroglancer's random token (``/v/<token>/``), so only someone given
the URL can open it. Behind a Jupyter server the same viewer is reached through jupyter-server-proxy at
``{base_url}proxy/{port}/v/{token}/`` (one port for everything).

Segmentation layers carry meshes (served from the python source, see :mod:`workbench.viewer.sources`)
and segment properties (served by a route on the same server, see :mod:`workbench.viewer.properties`);
the properties' URL must be absolute, so the viewer keeps the server root as the browser reaches it
(:meth:`WorkbenchViewer.set_page_url`; default: the direct address).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from workbench.classes import default_color, normalize_classes
from workbench.errors import WorkbenchError
from workbench.ports import port_is_free, register_proxy_port
from workbench.viewer import properties as props
from workbench.viewer import state as st
from workbench.viewer.sources import CallbackReader, local_volume
from workbench.viewer.strokes import Stroke, strokes_from_state

log = logging.getLogger(__name__)

#: Layer names the workbench uses.
RAW, LABELS, SEGMENTATION, UNCERTAINTY, CLASS_MAP = "raw", "annotations", "segmentation", "uncertainty", "classes"
#: The annotation layer of the ranked "scribble here next" boxes.
SUGGESTIONS = "suggestions"
#: Key bindings added to the viewer: commit drawn strokes to the label store, undo the last one.
COMMIT_KEY, UNDO_KEY = "alt+keyc", "alt+keyz"

_server_lock = threading.Lock()


def start_server(bind: str = "127.0.0.1", port: int = 0) -> str:
    """Start this process's Neuroglancer server (once) and return its base URL.

    Raises:
        WorkbenchError: ``port`` is in use.
    """
    import neuroglancer
    from neuroglancer import server as ng_server

    with _server_lock:
        if not neuroglancer.server.is_server_running():
            if not port_is_free(bind, port):
                raise WorkbenchError(f"port {port} on {bind} is already in use")
            neuroglancer.set_server_bind_address(bind, bind_port=int(port))
            neuroglancer.server.start()
        else:
            running = ng_server.global_server_args.get("bind_address")
            if running != bind or (port and server_port() != int(port)):
                log.warning("Neuroglancer server already running at %s; keeping it", ng_server.get_server_url())
        register_proxy_port(server_port())  # lets `workbench app`'s proxy reach it (no-op elsewhere)
        props.install(ng_server.global_server)
        return ng_server.get_server_url()


def server_port() -> int:
    """The port of this process's running Neuroglancer server."""
    from neuroglancer import server as ng_server

    return int(ng_server.global_server.port)


class WorkbenchViewer:
    """A Neuroglancer viewer showing workbench volumes, with strokes read back into a label store.

    Args:
        voxel_size: ``(z, y, x)`` nm of every layer (default: the first volume's).
        classes: the project's annotation classes (``[{id, name, color}]``, names, ...).
        bind: address the server listens on (``127.0.0.1``: this machine only).
        port: 0 picks a free port.
        layout: ``"xy"``, ``"4panel"``, ...; default from the raw volume's shape.
    """

    def __init__(
        self,
        voxel_size: Sequence[float] | None = None,
        classes=None,
        bind: str = "127.0.0.1",
        port: int = 0,
        layout: str | None = None,
    ):
        import neuroglancer

        start_server(bind, port)
        self.bind = bind
        # without the project's classes: ten generic ones, so label ids 1..10 show in the palette colours
        self.classes = normalize_classes(classes, n_default=10)
        self.voxel_size = tuple(float(v) for v in voxel_size) if voxel_size is not None else None
        self.shape: tuple[int, int, int] | None = None
        self.layout = layout
        self.viewer = neuroglancer.Viewer()
        self.draw_layers: dict[str, int] = {}
        self._sources: dict[str, Any] = {}
        self._property_keys: dict[str, str] = {}  # layer name -> segment properties key
        self._meshes: dict[str, Any] = {}  # layer name -> ObjectMeshes
        self.public_root: str | None = None  # server root as the browser reaches it (None: direct)
        self._committed: list[tuple[str, str]] = []  # (annotation id, layer) in commit order
        self._synced_ids: set[str] = set()
        self._clients = 0
        self._client_event = threading.Event()
        self._lock = threading.RLock()
        self._watch_clients()

    # ---------------------------------------------------------------- addresses
    @property
    def token(self) -> str:
        return self.viewer.token

    @property
    def port(self) -> int:
        return server_port()

    def url(self, proxy_base: str | None = None) -> str:
        """The viewer's URL: direct (``http://127.0.0.1:PORT/v/TOKEN/``), or through jupyter-server-proxy.

        Args:
            proxy_base: the Jupyter server's base URL (``/``, ``/user/NAME/``, or a full ``http://...``
                prefix); gives ``{proxy_base}proxy/{port}/v/{token}/``.
        """
        direct = self.viewer.get_viewer_url()
        if proxy_base is None:
            return direct
        base = proxy_base if proxy_base.endswith("/") else proxy_base + "/"
        path = re.sub(r"^https?://[^/]+", "", direct)
        return f"{base}proxy/{self.port}{path}"

    def __repr__(self) -> str:
        return f"WorkbenchViewer({self.url()})"

    def server_root(self) -> str:
        """The Neuroglancer server's root URL as the browser reaches it (ends in ``/``)."""
        if self.public_root:
            return self.public_root
        return re.sub(r"/v/[^/]+/?$", "/", self.viewer.get_viewer_url())

    def set_page_url(self, url: str, origin: str | None = None) -> None:
        """Tell the viewer the URL the browser loads it from (e.g. the iframe's proxied URL), so absolute
        URLs it puts in the state (segment properties) reach this server the same way.

        Args:
            url: ``http://host/.../v/<token>/`` or a path ``/.../v/<token>/`` (then ``origin`` is needed).
            origin: ``scheme://host[:port]`` of the page, for a path-only ``url``; without it a path-only
                URL keeps the direct address (right when the browser runs on this machine).
        """
        root = re.sub(r"/v/[^/]+/?$", "/", url)
        if not re.match(r"^https?://", root):
            if not origin:
                log.info("no page origin for %s: segment properties use the direct server address", url)
                return
            root = origin.rstrip("/") + "/" + root.lstrip("/")
        if root == self.public_root:
            return
        self.public_root = root
        with self._lock, self.viewer.txn() as s:
            for name in self._property_keys:
                if name in s.layers:
                    s.layers[name].source = self._layer_sources(name)

    # ---------------------------------------------------------------- clients
    def _watch_clients(self) -> None:
        """Count browsers connected to this viewer (each keeps one event stream open), and restore the
        display dimensions if a newly loaded client dropped them (Neuroglancer drops display dimensions
        it cannot resolve while loading; the workbench always sets the global dimensions first)."""
        cs = self.viewer.config_state
        add, remove = cs.add_changed_callback, cs.remove_changed_callback

        def is_stream(cb) -> bool:
            # the callback each event stream registers (neuroglancer.server.EventStreamHandler)
            return "EventStreamHandler" in getattr(cb, "__qualname__", "")

        def add_cb(cb):
            add(cb)
            if is_stream(cb):
                with self._lock:
                    self._clients += 1
                self._client_event.set()

        def remove_cb(cb):
            remove(cb)
            if is_stream(cb):
                with self._lock:
                    self._clients = max(0, self._clients - 1)
                    if self._clients == 0:
                        self._client_event.clear()

        cs.add_changed_callback = add_cb
        cs.remove_changed_callback = remove_cb
        self._checked_clients: set[str] = set()
        self.viewer.shared_state.add_changed_callback(self._on_state_changed)

    def _on_state_changed(self) -> None:
        """First state a browser client sends: put back x, y, z display dimensions if it lost them."""
        shared = self.viewer.shared_state
        generation = shared.state_generation
        if "/" not in generation or self.shape is None:
            return
        client = generation.split("/", 1)[0]
        if client in self._checked_clients:
            return
        self._checked_clients.add(client)
        if list(shared.raw_state.get("displayDimensions") or []) != st.DISPLAY_DIMENSIONS:
            threading.Thread(target=self.apply_display_dimensions, daemon=True).start()

    @property
    def client_count(self) -> int:
        """How many browser tabs show this viewer now."""
        return self._clients

    def wait_for_client(self, timeout: float = 30.0) -> bool:
        """Wait until a browser shows the viewer; True if one does within ``timeout`` seconds."""
        return self._client_event.wait(timeout)

    def apply_display_dimensions(self) -> None:
        """Show x right, y down, z through the screen."""
        with self.viewer.txn() as s:
            s.display_dimensions = list(st.DISPLAY_DIMENSIONS)

    # ---------------------------------------------------------------- layers
    def _base(self, data) -> None:
        vs = getattr(data, "voxel_size", None)
        if self.voxel_size is None:
            self.voxel_size = tuple(float(v) for v in vs) if vs is not None else (1.0, 1.0, 1.0)
        shape = tuple(int(s) for s in data.shape[-3:])
        if self.shape is None:
            self.shape = shape
            with self.viewer.txn() as s:
                fresh = st.new_state(self.voxel_size, shape, self.layout)
                s.dimensions = fresh.dimensions
                s.display_dimensions = list(st.DISPLAY_DIMENSIONS)
                s.position = [float(v) for v in fresh.position]
                s.cross_section_scale = fresh.cross_section_scale
                s.layout = fresh.layout
        elif shape != self.shape:
            raise WorkbenchError(
                f"layer shape {shape} differs from the viewer's shape {self.shape}", getattr(data, "source", None) or None
            )

    def set_layer(self, name: str, data, kind: str = "image", **options) -> None:
        """Add or replace layer ``name`` without reloading the page (the view position is kept).

        Args:
            data: ``(z, y, x)`` Volume/array, or ``(c, z, y, x)`` for ``kind="probability"``.
            kind: ``image`` (raw), ``labels`` (sparse classes), ``probability`` (one layer per channel),
                ``segmentation`` (instances) or ``uncertainty``.
            options: ``window=(lo, hi)`` (image), ``classes`` (labels), ``names``/``colors``
                (probability), ``visible``.
        Raises:
            WorkbenchError: the shape differs from the layers already shown, or ``kind`` is unknown.
        """
        if kind == "probability":
            self.set_probabilities(data, names=options.get("names"), colors=options.get("colors"), prefix=f"{name}: ")
            return
        self._base(data)
        visible = options.get("visible", True)
        with self._lock, self.viewer.txn() as s:
            if kind == "image":
                window = options.get("window") or st.contrast_window(_coarsest_level(data))
                src = local_volume(data, self.voxel_size, volume_type="image")
                st.add_image_layer(s, name, src, window, dtype=np.dtype(data.dtype), visible=visible)
            elif kind == "labels":
                src = local_volume(data, self.voxel_size, volume_type="segmentation")
                classes = options.get("classes")
                if classes is not None:
                    self.classes = normalize_classes(classes)
                self._sources[name] = src
                self._set_properties(name, lambda infos=self.classes: props.class_properties(infos))
                st.add_labels_layer(s, name, self._layer_sources(name), self.classes, visible=visible)
            elif kind == "segmentation":
                meshes = self._object_meshes(data) if options.get("meshes", True) else None
                src = local_volume(data, self.voxel_size, volume_type="segmentation", meshes=meshes)
                self._sources[name] = src
                self._meshes[name] = meshes
                self._set_properties(name, self._instance_info(data, options.get("prediction"),
                                                               options.get("channel_names")))
                st.add_instance_layer(s, name, self._layer_sources(name), visible=visible)
            elif kind == "uncertainty":
                src = local_volume(data, self.voxel_size, volume_type="image")
                window = options.get("window") or st.dtype_range(data.dtype)  # uint8: round(255 u)
                st.add_uncertainty_layer(s, name, src, window, visible=visible)
            else:
                raise WorkbenchError(f"unknown layer kind {kind!r}; use image, labels, probability, segmentation or uncertainty")
            self._sources[name] = src

    def set_raw(self, volume, window: tuple[float, float] | None = None) -> None:
        """Show the raw EM volume (contrast from percentiles of a few slices unless ``window`` is given)."""
        self.set_layer(RAW, volume, "image", window=window)

    def set_labels(self, volume, classes=None) -> None:
        """Show sparse class labels (``0`` = unlabelled) in the class colours."""
        self.set_layer(LABELS, volume, "labels", classes=classes)

    def set_segmentation(self, volume, prediction=None, channel_names: Sequence[str] | None = None,
                         meshes: bool = True) -> None:
        """Show an instance segmentation, with meshes in the 3D panel and segment properties.

        Args:
            volume: the ``(z, y, x)`` labels (a Volume from a ``SEG.zarr`` caches meshes in ``SEG.zarr/meshes``).
            prediction: ``(c, z, y, x)`` probabilities it came from: classes and mean probabilities.
            channel_names: the prediction's channel names.
            meshes: serve meshes (default True).
        """
        self.set_layer(SEGMENTATION, volume, "segmentation", prediction=prediction, channel_names=channel_names,
                       meshes=meshes)

    def set_class_map(self, data, names: Sequence[str], colors: Sequence[str] | None = None, name: str = CLASS_MAP,
                      visible: bool = False) -> None:
        """Show a semantic prediction's class map (class id = channel + 1, e.g.
        :func:`workbench.inference.prediction_class_map`) with the class names as segment properties.

        Args:
            names: the prediction's channel names; colors: their colours (default: the palette).
            visible: shown at once (default hidden: the probability layers show the same).
        """
        infos = normalize_classes([dict(id=i + 1, name=str(n), **({"color": colors[i]} if colors else {}))
                                   for i, n in enumerate(names)])
        self._base(data)
        with self._lock, self.viewer.txn() as s:
            self._sources[name] = local_volume(data, self.voxel_size, volume_type="segmentation")
            self._set_properties(name, lambda: props.class_properties(infos))
            st.add_labels_layer(s, name, self._layer_sources(name), infos, visible=visible)

    # ---------------------------------------------------------------- meshes and segment properties
    def _object_meshes(self, data):
        """An ObjectMeshes for ``data``, cached in ``SEG.zarr/meshes`` when it was read from a zarr store."""
        from pathlib import Path

        from workbench.meshes import ObjectMeshes, mesh_dir_for, store_root

        cache = None
        source = str(getattr(data, "source", "") or "")
        if source and "[" not in source and Path(source).is_dir():  # not for a region of a store
            cache = mesh_dir_for(store_root(Path(source)))
        return ObjectMeshes(data, self.voxel_size, cache=cache)

    def _instance_info(self, data, prediction, channel_names):
        """A function computing the segment properties JSON of an instance layer (run on first request)."""
        shape = tuple(int(s) for s in data.shape)
        voxel_size = self.voxel_size

        def make() -> dict:
            from workbench.objects import object_table

            table = object_table(data, prediction=prediction, voxel_size=voxel_size, channel_names=channel_names)
            return props.instance_properties(table, shape)

        return make

    def _set_properties(self, name: str, make_info) -> None:
        old = self._property_keys.pop(name, None)
        if old is not None:
            props.unregister(old)
        self._property_keys[name] = props.register(make_info)

    def _layer_sources(self, name: str) -> list:
        """``[local volume, segment properties URL]`` of layer ``name``."""
        sources = [self._sources[name]]
        key = self._property_keys.get(name)
        if key is not None:
            sources.append(props.source_url(self.server_root(), key))
        return sources

    def segment_properties(self, name: str = SEGMENTATION) -> dict:
        """The segment properties JSON served for layer ``name`` (computed now if it was not yet)."""
        key = self._property_keys.get(name)
        if key is None:
            raise WorkbenchError(f"layer {name!r} has no segment properties; layers: {sorted(self._property_keys)}")
        return props.info_for(key)

    def object_mesh(self, object_id: int, name: str = SEGMENTATION):
        """The mesh the viewer serves for ``object_id`` of layer ``name`` (a :class:`workbench.meshes.Mesh`).

        Raises:
            WorkbenchError: no such layer with meshes, or no such object.
        """
        meshes = self._meshes.get(name)
        if meshes is None:
            raise WorkbenchError(f"layer {name!r} serves no meshes")
        return meshes.get(int(object_id))

    def select_object(self, object_id: int, position: Sequence[float] | None = None, name: str = SEGMENTATION,
                      show_only: bool = True) -> None:
        """Select object ``object_id`` in layer ``name`` (its mesh shows in the 3D panel) and centre the
        view on ``position`` (``(z, y, x)`` voxels, e.g. the centroid).

        Args:
            show_only: the object becomes the only selected one (else it is added to the selection).
        """
        if name not in self._sources:
            raise WorkbenchError(f"no layer named {name!r}; layers: {sorted(self._sources)}")
        with self._lock, self.viewer.txn() as s:
            layer = s.layers[name]
            ids = {int(object_id)} if show_only else {int(i) for i in layer.segments} | {int(object_id)}
            layer.segments = ids
            if position is not None:
                s.position = [float(v) + 0.5 for v in position]

    def set_uncertainty(self, volume, visible: bool = True) -> None:
        """Show an uncertainty map (values in 0..1, or 0..255 when uint8; high = uncertain) as a heat map."""
        self.set_layer(UNCERTAINTY, volume, "uncertainty", visible=visible)

    def set_prediction_uncertainty(self, path, visible: bool = False) -> str | None:
        """Add the uncertainty stored with the prediction at ``path`` (hidden by default: tick it in the
        layer list); returns its measure, or None (and adds nothing) when the prediction has none."""
        from workbench.inference.output import has_uncertainty, open_uncertainty

        measure = has_uncertainty(path)
        if measure is not None:
            self.set_uncertainty(open_uncertainty(path, stored=True), visible=visible)
        return measure

    def set_suggestions(self, suggestions: Sequence, name: str = SUGGESTIONS) -> list[str]:
        """Show ranked suggestions (:class:`workbench.suggestions.Suggestion`, best first) as box annotations
        (replacing the previous ones); returns their annotation ids.

        Raises:
            WorkbenchError: no volume shown yet.
        """
        if self.voxel_size is None:
            raise WorkbenchError("show a volume before adding suggestions")
        with self._lock, self.viewer.txn() as s:
            return st.add_suggestion_layer(s, name, list(suggestions), self.voxel_size)

    def go_to(self, position: Sequence[float]) -> None:
        """Centre the view on ``position`` (``(z, y, x)`` voxels)."""
        with self.viewer.txn() as s:
            s.position = [float(v) + 0.5 for v in position]

    def set_probabilities(self, data, names: Sequence[str] | None = None, colors: Sequence[str] | None = None, prefix: str = "prob: ") -> list[str]:
        """Show class probabilities: one additive, class-coloured layer per channel.

        Args:
            data: ``(c, z, y, x)`` array-like, or a list of ``(z, y, x)`` Volumes/arrays (one per class).
            names: channel names (default: the class names, else ``channel i``).
            colors: channel colours (default: the class colours).
        Returns:
            the layer names.
        """
        if isinstance(data, (list, tuple)):
            channels = list(data)
            n = len(channels)
        else:
            if len(data.shape) != 4:
                raise WorkbenchError(f"probabilities must be (c, z, y, x), got shape {tuple(data.shape)}")
            n = int(data.shape[0])
            channels = None
        by_id = {c.id: c for c in self.classes}
        names = list(names) if names is not None else [by_id[i + 1].name if i + 1 in by_id else f"channel {i}" for i in range(n)]
        colors = list(colors) if colors is not None else [by_id[i + 1].color if i + 1 in by_id else default_color(i + 1) for i in range(n)]
        first = channels[0] if channels else _Channel(data, 0)
        self._base(first)
        sources = []
        for i in range(n):
            ch = channels[i] if channels else None
            sources.append(
                local_volume(ch, self.voxel_size, volume_type="image")
                if ch is not None
                else local_volume(data, self.voxel_size, volume_type="image", channel=i)
            )
        with self._lock, self.viewer.txn() as s:
            layer_names = st.add_probability_layers(
                s, sources, names, colors, st.ProbabilityStyle(dtype=np.dtype(first.dtype), prefix=prefix))
        self._sources.update(dict(zip(layer_names, sources)))
        return layer_names

    def update_layer(self, name: str, data=None) -> None:
        """Refresh layer ``name``: re-read its data (``data=None``, e.g. after labels were written in
        place) or replace it with ``data`` of the same shape. The page is not reloaded and the user's
        position, zoom and layer settings stay.
        """
        with self._lock:
            if name not in self._sources:
                raise WorkbenchError(f"no layer named {name!r}; layers: {sorted(self._sources)}")
            if data is None:
                self._sources[name].invalidate()
                return
            self._base(data)
            old = self._sources[name]
            meshes = self._object_meshes(data) if self._meshes.get(name) is not None else None
            src = local_volume(data, self.voxel_size, volume_type=old.volume_type, meshes=meshes)
            self._sources[name] = src
            if name in self._meshes:  # an instance layer: new meshes and properties for the new labels
                self._meshes[name] = meshes
                self._set_properties(name, self._instance_info(data, None, None))
            with self.viewer.txn() as s:
                s.layers[name].source = self._layer_sources(name)

    def layer_names(self) -> list[str]:
        """Names of the layers in the viewer, in order."""
        return [layer.name for layer in self.viewer.state.layers]

    # ---------------------------------------------------------------- annotation round trip
    def add_draw_layers(self, classes=None) -> dict[str, int]:
        """One annotation layer per class for drawing strokes; returns ``{layer name: class id}``."""
        if classes is not None:
            self.classes = normalize_classes(classes)
        if self.voxel_size is None:
            raise WorkbenchError("show a volume before adding annotation layers")
        with self._lock, self.viewer.txn() as s:
            self.draw_layers = st.add_draw_layers(s, self.voxel_size, self.classes)
        return dict(self.draw_layers)

    def show_label_store(self, store, classes=None) -> None:
        """Show a :class:`LabelStore`'s labels as the ``annotations`` layer (read region by region)."""
        shape = tuple(int(s) for s in getattr(store, "shape", None) or self.shape)
        dtype = np.dtype(getattr(store, "dtype", np.uint8))
        reader = CallbackReader(lambda region: store.read(region), shape, dtype)
        reader.voxel_size = self.voxel_size
        self.set_layer(LABELS, reader, "labels", classes=classes)

    def select_draw_tool(self, class_id: int, tool: str = "annotateLine") -> str:
        """Select the drawing layer of class ``class_id`` with ``tool`` (``annotatePoint``,
        ``annotateLine``, ``annotatePolyline``); a ctrl+click on the slice then draws."""
        for layer_name, cid in self.draw_layers.items():
            if cid == int(class_id):
                with self.viewer.txn() as s:
                    s.selected_layer.layer = layer_name
                    s.selected_layer.visible = False
                    s.layers[layer_name].tool = tool
                return layer_name
        raise WorkbenchError(f"no drawing layer for class {class_id}; classes: {sorted(self.draw_layers.values())}")

    def read_annotations(self, require_client: bool = True, timeout: float = 5.0) -> list[Stroke]:
        """The strokes in the drawing layers, as the browser last sent them.

        Args:
            require_client: raise instead of returning possibly stale strokes when no browser shows the
                viewer within ``timeout`` seconds.
        Raises:
            WorkbenchError: no browser connected (with ``require_client``), or no drawing layers.
        """
        if not self.draw_layers:
            raise WorkbenchError("the viewer has no drawing layers; call add_draw_layers() first")
        if require_client and not self.wait_for_client(timeout):
            raise WorkbenchError(f"no browser is showing the viewer (waited {timeout:g} s); open {self.url()}")
        return strokes_from_state(self.viewer.state, self.draw_layers)

    def mark_synced(self, stroke: Stroke) -> None:
        """Remember that ``stroke`` is in the label store (see :func:`sync_annotations_to_store`)."""
        with self._lock:
            self._synced_ids.add(stroke.id)
            self._committed.append((stroke.id, stroke.layer))

    def new_strokes(self, require_client: bool = True, timeout: float = 5.0) -> list[Stroke]:
        """Strokes not yet written to the label store."""
        return [s for s in self.read_annotations(require_client, timeout) if s.id not in self._synced_ids]

    def remove_annotation(self, annotation_id: str, layer: str) -> None:
        """Delete one annotation from a drawing layer."""
        with self.viewer.txn() as s:
            if layer in s.layers:
                anns = s.layers[layer].annotations
                s.layers[layer].annotations = [a for a in anns if str(a.id) != annotation_id]

    def pop_committed(self) -> tuple[str, str] | None:
        """Forget and return the last committed ``(annotation id, layer)`` (it counts as new again if redrawn)."""
        with self._lock:
            if not self._committed:
                return None
            annotation_id, layer = self._committed.pop()
            self._synced_ids.discard(annotation_id)
            return annotation_id, layer

    @property
    def lock(self) -> threading.RLock:
        """Held while layers or the synced-stroke bookkeeping change."""
        return self._lock

    def has_layer(self, name: str) -> bool:
        """True when the viewer serves a data layer ``name`` (see :meth:`update_layer`)."""
        return name in self._sources

    def bind_key(self, key: str, name: str, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` (in a worker thread) when ``key`` (e.g. ``"alt+keyc"``) is pressed in the viewer."""

        def handler(_action_state):
            threading.Thread(target=_log_errors(callback), daemon=True, name=f"ng-{name}").start()

        self.viewer.actions.add(name, handler)
        with self.viewer.config_state.txn() as cs:
            cs.input_event_bindings.viewer[key] = name

    # ---------------------------------------------------------------- screenshots, shutdown
    def screenshot(self, timeout: float = 30.0) -> bytes:
        """A PNG of what the connected browser shows, once all visible chunks have loaded.

        Raises:
            WorkbenchError: no browser connected, or none answered within ``timeout`` seconds.
        """
        if not self.wait_for_client(min(timeout, 5.0)):
            raise WorkbenchError(f"no browser is showing the viewer; open {self.url()} to take a screenshot")
        done = threading.Event()
        result: list = []

        def handler(s):
            result.append(s)
            done.set()

        self.viewer.async_screenshot(handler)
        if not done.wait(timeout):
            with self.viewer.config_state.txn() as cs:
                cs.screenshot = None
            raise WorkbenchError(f"the browser did not deliver a screenshot within {timeout:g} s")
        return result[0].screenshot.image

    def close(self) -> None:
        """Stop showing data (the process-wide server keeps running for other viewers)."""
        from neuroglancer import server as ng_server

        with self.viewer.txn() as s:
            s.layers.clear()
        for key in self._property_keys.values():
            props.unregister(key)
        self._property_keys.clear()
        if ng_server.global_server is not None:
            ng_server.global_server.viewers.pop(self.token, None)


def _coarsest_level(data):
    """The smallest pyramid level of an OME-Zarr image (cheap to sample for a contrast window), else ``data``."""
    from workbench.viewer.sources import ome_zarr_levels

    levels = ome_zarr_levels(data)
    return levels[-1][1] if levels else data


class _Channel:
    """Shape and dtype of one channel of a ``(c, z, y, x)`` array (for checks only)."""

    def __init__(self, data, c: int):
        self.shape = tuple(int(s) for s in data.shape[1:])
        self.dtype = data.dtype
        self.voxel_size = getattr(data, "voxel_size", None)
        self.source = getattr(data, "source", None)


def _log_errors(fn):
    def run():
        try:
            fn()
        except Exception:
            log.exception("viewer key action failed")

    return run

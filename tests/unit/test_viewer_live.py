"""The live viewer without a browser: layers, updates keeping the position, the annotation round trip
through ``viewer.state``, clear errors instead of hangs, and pyramid-backed chunk serving."""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.viewer import WorkbenchViewer
from workbench.viewer.sources import local_volume, ome_zarr_levels
from workbench.viewer.strokes import strokes_from_state
from workbench.viewer.sync import enable_drawing, sync_annotations_to_store, undo_last_stroke

SHAPE = (4, 32, 48)
CLASSES = [{"id": 1, "name": "membrane", "color": "#ff0000"}, {"id": 2, "name": "mito", "color": "#00ff00"}]


@pytest.fixture
def viewer(rng):
    v = WorkbenchViewer(voxel_size=(40, 8, 8), classes=CLASSES)
    v.set_raw(rng.integers(0, 255, SHAPE).astype(np.uint8))
    yield v
    v.close()


@pytest.fixture
def store(tmp_path):
    from workbench.annotations.store import LabelStore

    return LabelStore.create(tmp_path / "data.zarr" / "labels" / "annotations", tmp_path / "annotations.jsonl",
                             shape=SHAPE, voxel_size=(40, 8, 8))


def test_urls_direct_and_proxied(viewer):
    direct = viewer.url()
    assert direct.startswith("http://127.0.0.1:") and direct.endswith(f"/v/{viewer.token}/")
    assert len(viewer.token) >= 20
    assert viewer.url("/") == f"/proxy/{viewer.port}/v/{viewer.token}/"
    assert viewer.url("/user/ana") == f"/user/ana/proxy/{viewer.port}/v/{viewer.token}/"


def test_layers_and_shape_checks(viewer, rng):
    viewer.set_labels(np.zeros(SHAPE, np.uint8))
    names = viewer.set_probabilities(rng.random((2, *SHAPE)).astype(np.float32))
    viewer.set_segmentation(np.zeros(SHAPE, np.uint32))
    viewer.set_uncertainty(np.zeros(SHAPE, np.float32))
    assert names == ["prob: membrane", "prob: mito"]
    assert viewer.layer_names() == ["raw", "annotations", *names, "segmentation", "uncertainty"]
    state = viewer.viewer.state
    assert list(state.display_dimensions) == ["x", "y", "z"]
    assert [float(v) for v in state.position] == [2.5, 16.5, 24.5]
    with pytest.raises(WorkbenchError, match=r"\(4, 32, 40\).*\(4, 32, 48\)"):
        viewer.set_labels(np.zeros((4, 32, 40), np.uint8))
    with pytest.raises(WorkbenchError, match="unknown layer kind"):
        viewer.set_layer("x", np.zeros(SHAPE, np.uint8), kind="nope")


def test_update_layer_keeps_position_and_settings(viewer):
    labels = np.zeros(SHAPE, np.uint8)
    viewer.set_labels(labels)
    with viewer.viewer.txn() as s:
        s.position = [1.5, 3.5, 7.5]
        s.cross_section_scale = 0.25
        s.layers["annotations"].selected_alpha = 0.9
    before = viewer._sources["annotations"]
    generation = before.change_count
    viewer.update_layer("annotations")  # re-read in place
    assert before.change_count == generation + 1
    viewer.update_layer("annotations", np.ones(SHAPE, np.uint8))  # new data, same shape
    s = viewer.viewer.state
    assert [float(v) for v in s.position] == [1.5, 3.5, 7.5]
    assert s.cross_section_scale == pytest.approx(0.25)
    assert s.layers["annotations"].selected_alpha == pytest.approx(0.9)
    assert viewer._sources["annotations"] is not before
    with pytest.raises(WorkbenchError, match="no layer named"):
        viewer.update_layer("nothing")


def test_no_browser_gives_errors_not_hangs(viewer):
    viewer.add_draw_layers()
    t = time.monotonic()
    with pytest.raises(WorkbenchError, match="no browser"):
        viewer.read_annotations(timeout=0.2)
    with pytest.raises(WorkbenchError, match="no browser"):
        viewer.screenshot(timeout=0.2)
    assert time.monotonic() - t < 5
    assert viewer.client_count == 0


def test_read_annotations_needs_draw_layers(viewer):
    with pytest.raises(WorkbenchError, match="drawing layers"):
        viewer.read_annotations(require_client=False)


def _draw(viewer, layer, ann):
    with viewer.viewer.txn() as s:
        s.layers[layer].annotations.append(ann)


def test_strokes_to_label_store_and_undo(viewer, store):
    import neuroglancer

    enable_drawing(viewer, store, width=1, classes=CLASSES)
    assert set(viewer.draw_layers) == {"draw: membrane", "draw: mito"}
    assert viewer.layer_names()[:2] == ["raw", "annotations"]
    # a horizontal line in slice z=2, voxel centres (ng coordinates i + 0.5)
    _draw(viewer, "draw: mito", neuroglancer.LineAnnotation(id="l1", point_a=[2.5, 10.5, 5.5], point_b=[2.5, 10.5, 20.5]))
    _draw(viewer, "draw: membrane", neuroglancer.PointAnnotation(id="p1", point=[1.5, 4.5, 4.5]))
    strokes = viewer.read_annotations(require_client=False)
    assert [(s.id, s.label, s.kind) for s in strokes] == [("p1", 1, "point"), ("l1", 2, "line")]
    assert sync_annotations_to_store(viewer, store, width=1, require_client=False) == 2
    labels = store.read()
    assert np.all(labels[2, 10, 5:21] == 2) and labels[2].sum() == 2 * 16
    assert labels[1, 4, 4] == 1
    # a second sync writes nothing new
    assert sync_annotations_to_store(viewer, store, require_client=False) == 0
    # undo: the line (last synced) leaves the store and the annotation layer
    assert undo_last_stroke(viewer, store)
    assert store.read()[2].sum() == 0
    assert [s.id for s in viewer.read_annotations(require_client=False)] == ["p1"]
    assert undo_last_stroke(viewer, store)
    assert not undo_last_stroke(viewer, store)
    assert store.counts().get(1, 0) == 0


def test_key_bindings_registered(viewer, store):
    enable_drawing(viewer, store, classes=CLASSES)
    bindings = viewer.viewer.config_state.state.input_event_bindings.viewer
    assert bindings["alt+keyc"] == "workbench-commit" and bindings["alt+keyz"] == "workbench-undo"


def test_select_draw_tool(viewer, store):
    enable_drawing(viewer, store, classes=CLASSES)
    assert viewer.select_draw_tool(2, "annotatePoint") == "draw: mito"
    assert viewer.viewer.state.layers["draw: mito"].tool.type == "annotatePoint"
    with pytest.raises(WorkbenchError, match="no drawing layer"):
        viewer.select_draw_tool(7)


def test_strokes_ignore_other_annotation_types():
    import neuroglancer

    s = neuroglancer.ViewerState()
    dims = neuroglancer.CoordinateSpace(names=["z", "y", "x"], units="nm", scales=[1, 1, 1])
    s.layers["draw: a"] = neuroglancer.LocalAnnotationLayer(dimensions=dims, annotations=[
        neuroglancer.AxisAlignedBoundingBoxAnnotation(id="b", point_a=[0, 0, 0], point_b=[1, 1, 1]),
        neuroglancer.PolyLineAnnotation(id="pl", points=[[0.5, 1.5, 1.5], [0.5, 2.5, 3.5], [0.5, 5.5, 3.5]]),
    ])
    (stroke,) = strokes_from_state(s, {"draw: a": 3, "missing": 1})
    assert stroke.kind == "polyline" and stroke.label == 3
    np.testing.assert_allclose(stroke.index_points(), [[0, 1, 1], [0, 2, 3], [0, 5, 3]])


def test_pyramid_levels_answer_downsampled_requests(tmp_path, rng):
    from workbench.io import WriteOptions, open_volume, write_ome_zarr

    data = rng.integers(0, 255, (8, 64, 64)).astype(np.uint8)
    out = write_ome_zarr(data, tmp_path / "img.zarr", WriteOptions(voxel_size=(8, 8, 8), chunks=(8, 32, 32), levels=3))
    vol = open_volume(out)
    levels = ome_zarr_levels(vol)
    assert len(levels) == 3 and levels[0][0] == (1, 1, 1)
    lv = local_volume(vol)
    assert type(lv).__name__ == "PyramidVolume"
    for factor, level in levels[1:]:
        key = ",".join(str(f) for f in factor)
        shape = level.shape
        raw, _ = lv.get_encoded_subvolume("raw", np.zeros(3, int), np.asarray(shape), key)
        got = np.frombuffer(raw, np.uint8).reshape(shape)
        np.testing.assert_array_equal(got, np.asarray(level[...]))
    # a factor between levels: read the finer level, downsample the rest
    f1 = levels[1][0]
    twice = tuple(2 * f for f in f1)
    if all(np.asarray(twice) <= 64):
        shape = tuple(int(np.ceil(s / f)) for s, f in zip(data.shape, twice))
        raw, _ = lv.get_encoded_subvolume("raw", np.zeros(3, int), np.asarray(shape), ",".join(map(str, twice)))
        assert np.frombuffer(raw, np.uint8).size == int(np.prod(shape))
    with pytest.raises(ValueError):
        lv.get_encoded_subvolume("raw", np.zeros(3, int), np.asarray((9, 1, 1)), "1,1,1")


def test_plain_arrays_have_no_pyramid(tiny_volume):
    assert ome_zarr_levels(tiny_volume) == []
    lv = local_volume(tiny_volume, (1, 1, 1))
    assert type(lv).__name__ == "LocalVolume"
    blob, _ = lv.get_encoded_subvolume("npz", np.zeros(3, int), np.asarray((2, 16, 16)), "1,1,1")
    got = np.load(io.BytesIO(zlib.decompress(blob)))
    np.testing.assert_array_equal(got, tiny_volume[:2])


def test_client_that_drops_display_dimensions_gets_them_back(viewer):
    shared = viewer.viewer.shared_state
    state = dict(shared.raw_state)
    state.pop("displayDimensions", None)
    shared.set_state(state, generation="someclient/1")  # what a browser posting its state looks like
    t = time.monotonic()
    while time.monotonic() - t < 5 and list(viewer.viewer.state.display_dimensions or []) != ["x", "y", "z"]:
        time.sleep(0.05)
    assert list(viewer.viewer.state.display_dimensions) == ["x", "y", "z"]
    # only the first state of each client is corrected: later choices of the user stay
    with viewer.viewer.txn() as s:
        s.display_dimensions = ["x", "z", "y"]
    shared.set_state(dict(shared.raw_state), generation="someclient/2")
    time.sleep(0.3)
    assert list(viewer.viewer.state.display_dimensions) == ["x", "z", "y"]


def test_sync_without_browser_is_a_clear_error(viewer, store):
    enable_drawing(viewer, store, classes=CLASSES)
    with pytest.raises(WorkbenchError, match="no browser"):
        sync_annotations_to_store(viewer, store, timeout=0.1)

"""Meshes: the legacy precomputed files parse, vertices lie on the object's bounding box in nm, each object is
read from a bounded region, smoothing and simplification act, ``workbench mesh`` and its one-line errors,
and the live viewer serving meshes and segment properties (state JSON and HTTP)."""

from __future__ import annotations

import json
import struct
import urllib.error
import urllib.request

import numpy as np
import pytest
import zarr

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.io.omezarr import WriteOptions, write_ome_zarr
from workbench.meshes import Mesh, MeshOptions, MeshStore, ObjectMeshes, mesh_objects, write_meshes
from workbench.objects import object_stats

VOXEL = (40.0, 4.0, 4.0)


def blobs(shape=(8, 40, 40)) -> np.ndarray:
    seg = np.zeros(shape, np.uint32)
    seg[2:6, 4:12, 4:12] = 3           # inside
    seg[0:8, 20:40, 20:40] = 7         # touches the volume border on five sides
    seg[1:3, 30:34, 2:5] = 11
    return seg


def write_seg(path, seg):
    return write_ome_zarr(seg, path, WriteOptions(voxel_size=VOXEL, levels=1, chunks=(4, 20, 20)))


def _bbox_nm(seg, oid):
    idx = np.argwhere(seg == oid)
    return idx.min(0) * VOXEL, (idx.max(0) + 1) * VOXEL


def test_vertices_lie_on_the_object_bounding_box_in_nm():
    seg = blobs()
    meshes = dict(mesh_objects(seg, VOXEL))
    assert sorted(meshes) == [3, 7, 11]
    for oid, m in meshes.items():
        lo, hi = _bbox_nm(seg, oid)
        np.testing.assert_allclose(m.vertices.min(0), lo, atol=1e-3)
        np.testing.assert_allclose(m.vertices.max(0), hi, atol=1e-3)
        assert m.faces.max() < len(m.vertices) and m.faces.dtype == np.uint32
    # closed surfaces: every edge is shared by exactly two triangles (also where object 7 meets the border)
    f = meshes[7].faces.astype(np.int64)
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    assert np.all(counts == 2)


def test_smoothing_moves_vertices_inside_and_simplify_removes_faces():
    seg = blobs()
    plain = dict(mesh_objects(seg, VOXEL))[7]
    smooth = dict(mesh_objects(seg, VOXEL, ids=[7], options=MeshOptions(smooth=5)))[7]
    simple = dict(mesh_objects(seg, VOXEL, ids=[7], options=MeshOptions(simplify=0.6)))[7]
    assert len(smooth.faces) == len(plain.faces) and not np.allclose(smooth.vertices, plain.vertices)
    lo, hi = _bbox_nm(seg, 7)
    assert np.all(smooth.vertices >= lo - 1e-3) and np.all(smooth.vertices <= hi + 1e-3)
    assert len(simple.faces) < 0.6 * len(plain.faces)
    with pytest.raises(ValueError, match="simplify"):
        MeshOptions(simplify=1.0)


class RecordingArray:
    """An array that records the size of every region read from it."""

    def __init__(self, data):
        self.data_, self.shape, self.dtype, self.reads = data, data.shape, data.dtype, []

    def __getitem__(self, key):
        out = self.data_[key]
        self.reads.append(out.size)
        return out


def test_each_object_is_meshed_from_a_bounded_read():
    seg = np.zeros((4, 128, 128), np.uint32)
    for k, (y, x) in enumerate([(y, x) for y in range(2, 128, 16) for x in range(2, 128, 16)]):
        seg[:, y:y + 8, x:x + 8] = k + 1  # 64 small objects on a grid
    arr = RecordingArray(seg)
    stats = object_stats(seg, block_shape=(4, 32, 32))  # the bounding boxes: blockwise too
    out = dict(mesh_objects(arr, VOXEL, options=MeshOptions(tile=32, workers=1), stats=stats))
    assert len(out) == 64
    mesh_reads = arr.reads
    biggest_region = 4 * (32 + 8 + 2) ** 2  # a tile plus an object's extent plus the one-voxel border
    assert mesh_reads and max(mesh_reads) <= biggest_region < seg.size / 4


def test_store_files_are_legacy_precomputed(tmp_path):
    seg = write_seg(tmp_path / "seg.zarr", blobs())
    report = write_meshes(seg, options=MeshOptions(smooth=1))
    d = tmp_path / "seg.zarr" / "meshes"
    assert report.path == d and report.objects == 3
    info = json.loads((d / "info").read_text())
    assert info["@type"] == "neuroglancer_legacy_mesh" and info["workbench"]["smooth"] == 1
    manifest = json.loads((d / "3:0").read_text())
    raw = (d / manifest["fragments"][0]).read_bytes()
    (n,) = struct.unpack_from("<I", raw)
    xyz = np.frombuffer(raw, "<f4", 3 * n, 4).reshape(n, 3)
    idx = np.frombuffer(raw, "<u4", offset=4 + 12 * n)
    assert idx.size % 3 == 0 and idx.max() < n
    lo, hi = _bbox_nm(blobs(), 3)
    assert np.all(xyz[:, ::-1] >= lo - 1) and np.all(xyz[:, ::-1] <= hi + 1)  # stored x, y, z
    assert MeshStore(d).ids() == [3, 7, 11]
    assert zarr.open_group(str(tmp_path / "seg.zarr"), mode="r")["0"].shape == blobs().shape  # zarr still reads


def test_cli_mesh_and_unknown_id(tmp_path, capsys):
    seg = write_seg(tmp_path / "seg.zarr", blobs())
    assert main(["mesh", str(seg), "--ids", "3", "11", "--simplify", "0.3", "--no-progress"]) == 0
    assert "wrote 2 meshes" in capsys.readouterr().out
    assert MeshStore(tmp_path / "seg.zarr" / "meshes").ids() == [3, 11]
    assert main(["mesh", str(seg), "--ids", "3", "99", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no object with id 99" in err and "seg.zarr" in err
    assert main(["mesh", str(seg), "--smooth", "-1"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["mesh", str(tmp_path / "float.zarr")]) == 2


def test_object_meshes_on_demand_cache_and_unknown_id(tmp_path):
    seg = blobs()
    om = ObjectMeshes(seg, VOXEL, cache=tmp_path / "meshes")
    m = om.get(11)
    assert MeshStore(tmp_path / "meshes").ids() == [11]
    again = ObjectMeshes(seg, VOXEL, cache=tmp_path / "meshes").get(11)  # from the cache
    np.testing.assert_allclose(again.vertices, m.vertices, atol=1e-3)
    with pytest.raises(WorkbenchError, match="no object with id 5"):
        om.get(5)
    write_meshes(write_seg(tmp_path / "seg.zarr", seg), ids=[3], options=MeshOptions(smooth=2))
    assert ObjectMeshes(seg, VOXEL, cache=tmp_path / "seg.zarr" / "meshes").options.smooth == 2  # as cached


@pytest.fixture
def viewer():
    from workbench.viewer import WorkbenchViewer

    v = WorkbenchViewer(voxel_size=VOXEL, classes=[{"id": 1, "name": "membrane"}, {"id": 2, "name": "mito"}])
    yield v
    v.close()


def test_viewer_serves_meshes_and_segment_properties(viewer):
    from workbench.viewer.state import state_to_json

    seg = blobs()
    viewer.set_segmentation(seg)
    labels = (seg > 0).astype(np.uint8)
    viewer.set_labels(labels)
    layers = {layer["name"]: layer for layer in state_to_json(viewer.viewer.state)["layers"]}
    src = layers["segmentation"]["source"]
    assert src[0]["url"].startswith("python://volume/")
    url = src[1]["url"]
    assert url.startswith("precomputed://" + viewer.server_root()) and "/workbench/segment_properties/" in url
    info = json.loads(urllib.request.urlopen(url[len("precomputed://"):] + "/info", timeout=10).read())
    assert info["@type"] == "neuroglancer_segment_properties"
    inline = info["inline"]
    assert inline["ids"] == ["3", "7", "11"]
    props = {p["id"]: p for p in inline["properties"]}
    assert props["label"]["values"][0] == "object 3"
    assert props["voxels"]["values"] == [4 * 8 * 8, 8 * 20 * 20, 2 * 4 * 3]
    assert props["volume_um3"]["values"][0] == pytest.approx(256 * 640 / 1e9)
    assert props["bbox"]["values"][0] == "2:6, 4:12, 4:12"
    tags = props["tags"]
    assert tags["tags"] == ["object", "border"] and tags["values"] == [[0], [0, 1], [0]]
    # the labels layer carries the class names
    lab = json.loads(urllib.request.urlopen(layers["annotations"]["source"][1]["url"][14:] + "/info", timeout=10).read())
    assert lab["inline"]["ids"][:2] == ["1", "2"] and lab["inline"]["properties"][0]["values"][:2] == ["membrane", "mito"]
    # meshes through Neuroglancer's python mesh route: z, y, x vertices in metres (vertex / scale = voxel)
    vol = viewer._sources["segmentation"]
    base = f"{viewer.server_root()}neuroglancer/mesh/{viewer.token}.{vol.token}/"
    data = urllib.request.urlopen(base + "3", timeout=10).read()
    m = Mesh.decode(data, order="zyx")
    voxels = m.vertices / np.asarray(vol.dimensions.scales)
    np.testing.assert_allclose(voxels.min(0), [2, 4, 4], atol=1e-3)
    np.testing.assert_allclose(voxels.max(0), [6, 12, 12], atol=1e-3)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(base + "99", timeout=10)
    assert err.value.code == 404
    assert len(viewer.object_mesh(7).faces) > 0


def test_viewer_properties_follow_the_page_url_and_select_object(viewer):
    from workbench.viewer.state import state_to_json

    viewer.set_segmentation(blobs())
    viewer.set_page_url("/user/ann/proxy/4242/v/tok/", origin="https://hub.example.org")
    url = state_to_json(viewer.viewer.state)["layers"][0]["source"][1]["url"]
    assert url.startswith("precomputed://https://hub.example.org/user/ann/proxy/4242/workbench/segment_properties/")
    viewer.select_object(7, (3.5, 29.5, 29.5))
    s = state_to_json(viewer.viewer.state)
    assert s["layers"][0]["segments"] == ["7"] and s["position"] == [4.0, 30.0, 30.0]
    with pytest.raises(WorkbenchError, match="no layer"):
        viewer.select_object(7, name="nope")


def test_semantic_class_map_carries_class_names(viewer):
    from workbench.viewer.state import state_to_json

    classes = (blobs() > 0).astype(np.uint8) + 1  # 1 = background channel, 2 = cell channel
    viewer.set_class_map(classes, ["background", "cell"], ["#000000", "#ff00ff"])
    layer = state_to_json(viewer.viewer.state)["layers"][0]
    assert layer["name"] == "classes" and layer["visible"] is False and layer["segmentColors"]["2"] == "#ff00ff"
    info = viewer.segment_properties("classes")["inline"]
    assert info["ids"] == ["1", "2"] and info["properties"][0]["values"] == ["background", "cell"]


def test_numpy_smoothing_matches_bioimage_cpp():
    bic = pytest.importorskip("bioimage_cpp.mesh", reason="bioimage-cpp is a dependency; the fallback is compared to it")
    from workbench.meshes import _laplacian

    m = dict(mesh_objects(blobs(), VOXEL, ids=[7]))[7]
    ours = _laplacian(m.vertices, m.faces.astype(np.int64), 3)
    theirs, _ = bic.smooth_mesh(m.vertices, m.vertices.copy(), m.faces.astype(np.int64), 3, n_threads=1)
    np.testing.assert_allclose(ours, theirs, atol=1e-3)

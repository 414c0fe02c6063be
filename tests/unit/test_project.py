"""Project folder: create / open round trips, classes, state, runs, annotations on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.io.volume import Volume
from workbench.project import SCHEMA_VERSION, LabelClass, Project, ProjectOptions


@pytest.fixture
def raw(tiny_volume) -> Volume:
    return Volume(tiny_volume, voxel_size=(30.0, 4.0, 4.0), name="tiny")


@pytest.fixture
def project(tmp_path, raw) -> Project:
    return Project.create(tmp_path / "proj", raw=raw, options=ProjectOptions(name="Tiny"))


def test_create_open_round_trip(project, raw, tmp_path):
    root = tmp_path / "proj"
    meta = json.loads((root / "project.json").read_text())
    assert meta["schema"] == SCHEMA_VERSION and meta["name"] == "Tiny"
    assert (root / "data.zarr").is_dir() and (root / "annotations.jsonl").exists()
    again = Project.open(root)
    assert again.name == "Tiny" and again.shape == raw.shape and again.voxel_size == raw.voxel_size
    np.testing.assert_array_equal(again.raw.read(), raw.read())
    assert again.truth is None
    assert [c.name for c in again.classes] == ["membrane", "interior"]
    assert again.annotations.shape == raw.shape
    assert Project.open_or_create(root).name == "Tiny"


def test_create_refuses_existing_or_nonempty(project, tmp_path, raw):
    with pytest.raises(WorkbenchError, match="already a project"):
        Project.create(project.root, raw=raw)
    other = tmp_path / "full"
    other.mkdir()
    (other / "x.txt").write_text("hi")
    with pytest.raises(WorkbenchError, match="not empty"):
        Project.create(other, raw=raw)


def test_failed_create_leaves_nothing(tmp_path):
    with pytest.raises(WorkbenchError):
        Project.create(tmp_path / "p", raw=tmp_path / "missing.tif")
    assert not (tmp_path / "p").exists()


def test_open_errors(tmp_path, project):
    with pytest.raises(WorkbenchError, match="not an EM Workbench project"):
        Project.open(tmp_path)
    with pytest.raises(WorkbenchError, match="no such"):
        Project.open(tmp_path / "absent")
    (project.root / "project.json").write_text("{not json")
    with pytest.raises(WorkbenchError, match="corrupt"):
        Project.open(project.root)
    (project.root / "project.json").write_text(json.dumps({"schema": SCHEMA_VERSION + 1, "raw": {}}))
    with pytest.raises(WorkbenchError, match="newer"):
        Project.open(project.root)
    (project.root / "project.json").write_text(json.dumps({"schema": 1, "raw": {"source": "x"}, "classes": [1]}))
    with pytest.raises(WorkbenchError, match="corrupt"):
        Project.open(project.root)


def test_class_editing_is_persisted(project):
    new = project.add_class("mitochondrion", "#00f")
    assert new == LabelClass(3, "mitochondrion", "#0000ff")
    project.rename_class(1, "boundary")
    project.recolor_class(2, (0, 128, 255))
    with pytest.raises(WorkbenchError):
        project.add_class("Boundary")
    with pytest.raises(WorkbenchError):
        project.recolor_class(1, "red-ish")
    project.remove_class(3)
    again = Project.open(project.root)
    assert again.classes == [LabelClass(1, "boundary", "#e6194b"), LabelClass(2, "interior", "#0080ff")]
    assert again.add_class("vesicle").id == 3


def test_remove_class_with_labels(project):
    project.annotations.add_stroke([[0, 5, 5]], 2)
    with pytest.raises(WorkbenchError, match="still labels"):
        project.remove_class(2)
    project.remove_class(2, erase_labels=True)
    assert project.annotations.counts() == {} and [c.id for c in project.classes] == [1]


def test_custom_classes(tmp_path, raw):
    p = Project.create(tmp_path / "p", raw=raw, options=ProjectOptions(classes=["a", ("b", "#123456")]))
    assert p.classes == [LabelClass(1, "a", "#e6194b"), LabelClass(2, "b", "#123456")]


def test_state_persisted_on_every_set(project):
    project.state["step"] = "annotate"
    project.state.update(brush_width=5, arch="unet2d")
    assert json.loads(project.json_path.read_text())["state"]["brush_width"] == 5
    again = Project.open(project.root)
    assert dict(again.state) == {"step": "annotate", "brush_width": 5, "arch": "unet2d"}
    del again.state["arch"]
    assert "arch" not in Project.open(project.root).state
    with pytest.raises(TypeError):
        project.state["bad"] = object()
    assert "bad" not in Project.open(project.root).state
    assert not list(project.root.glob("*.tmp"))


def test_annotations_persist_across_reopen(project):
    project.annotations.add_stroke([[3, 2, 2], [3, 2, 12]], 1, width=3)
    lab = project.annotations.read()
    again = Project.open(project.root)
    np.testing.assert_array_equal(again.annotations.read(), lab)
    assert again.annotations.counts() == {1: int((lab == 1).sum())}


def test_runs(project):
    a = project.new_run_dir("unet2d")
    b = project.new_run_dir("unet2d")
    assert a != b and a.parent == project.root / "runs" and a.name.startswith("unet2d-")
    (a / "config.json").write_text(json.dumps({"arch": "unet2d"}))
    (a / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step"')
    (a / "checkpoint.pt").write_bytes(b"x")
    runs = {r.id: r for r in project.runs()}
    assert runs[a.name].config == {"arch": "unet2d"} and runs[a.name].last_metrics == {"step": 2, "loss": 0.4}
    assert runs[a.name].checkpoint == a / "checkpoint.pt"
    assert runs[b.name].config is None and runs[b.name].metrics == []
    assert project.prediction_path(a.name) == project.root / "data.zarr" / "predictions" / a.name
    assert project.segmentation_path("ws 1").name == "ws-1"


def test_link_external_zarr_and_copy(tmp_path, raw):
    from workbench.io.omezarr import WriteOptions, write_ome_zarr

    src = tmp_path / "ext.zarr"
    write_ome_zarr(raw, src, WriteOptions(name="raw", voxel_size=raw.voxel_size))
    linked = Project.create(tmp_path / "linked", raw=str(src))
    info = json.loads(linked.json_path.read_text())["raw"]
    assert info["linked"] and info["source"] == str(src.resolve())
    assert not (linked.data_path / ".zattrs").exists() or "multiscales" not in (linked.data_path / ".zattrs").read_text()
    np.testing.assert_array_equal(linked.raw.read(), raw.read())
    copied = Project.create(tmp_path / "copied", raw=str(src),
                            options=ProjectOptions(copy_raw=True, voxel_size=(50, 5, 5)))
    assert not json.loads(copied.json_path.read_text())["raw"]["linked"]
    assert copied.voxel_size == (50.0, 5.0, 5.0)
    np.testing.assert_array_equal(copied.raw.read(), raw.read())


def test_import_tiff_with_truth(tmp_path, raw):
    import tifffile

    tifffile.imwrite(tmp_path / "raw.tif", raw.read())
    truth = (raw.read() > 200).astype(np.uint8) + 1
    p = Project.create(tmp_path / "p", raw=tmp_path / "raw.tif", options=ProjectOptions(voxel_size=(30, 4, 4)),
                       truth=truth)
    np.testing.assert_array_equal(p.raw.read(), raw.read())
    np.testing.assert_array_equal(p.truth.read(), truth)
    with pytest.raises(WorkbenchError, match="shape"):
        Project.create(tmp_path / "q", raw=raw, truth=truth[:, :4])


def test_synthetic_sample_project(tmp_path):
    p = Project.create(tmp_path / "sample", options=ProjectOptions(sample_shape=(4, 64, 64), seed=1))
    raw = p.raw
    assert raw.shape == (4, 64, 64)
    truth = p.truth.read()
    assert truth.shape == raw.shape and set(np.unique(truth)) == {1, 2}
    assert p.annotations.counts() == {}


def test_state_from_two_threads_and_two_instances(project):
    import threading

    other = Project.open(project.root)

    def put(p, prefix):
        for i in range(20):
            p.state[f"{prefix}{i}"] = i

    threads = [threading.Thread(target=put, args=(project, "a")), threading.Thread(target=put, args=(other, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Project.open(project.root).state) == 40

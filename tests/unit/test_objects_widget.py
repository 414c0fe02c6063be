"""The object table panel without a browser: list, sort, pick a row (the viewer is centred and selects the
object), export CSV, and the one-line error before a segmentation exists."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from workbench.io.omezarr import WriteOptions, write_ome_zarr

VOXEL = (40.0, 4.0, 4.0)


class FakeViewer:
    def __init__(self):
        self.calls = []

    def select_object(self, object_id, position=None, name="segmentation", show_only=True):
        self.calls.append((object_id, tuple(position)))


def write_seg(path) -> np.ndarray:
    seg = np.zeros((4, 20, 20), np.uint32)
    seg[0:2, 0:4, 0:4] = 1   # 32 voxels
    seg[1:4, 10:20, 10:20] = 4  # 300 voxels
    seg[3, 5:7, 5:6] = 9  # 2 voxels
    write_ome_zarr(seg, path, WriteOptions(voxel_size=VOXEL, levels=1))
    return seg


@pytest.fixture
def panel(tmp_path):
    from widgets.objects import ObjectsPanel

    seg_path = tmp_path / "seg.zarr"
    viewer = FakeViewer()
    p = ObjectsPanel(seg_path=lambda: seg_path, pred_path=lambda: None, viewer=lambda: viewer,
                     export_dir=lambda: tmp_path / "exports")
    p.fake_viewer, p.seg_file = viewer, seg_path
    return p


def test_list_sort_pick_and_export(panel, tmp_path):
    write_seg(panel.seg_file)
    panel.list_btn.click()
    assert panel.status.level == "ok", panel.status.text
    assert "<span class='wb-objects-count'>3</span> objects" in panel.summary.value
    assert [r["id"] for r in panel.shown] == [4, 1, 9]  # largest first
    assert panel.table_data["voxels"] == [300, 32, 2]
    counts = panel.hist_data[1]
    assert counts.sum() == 3
    assert panel.table_widget in panel.plots.children
    panel.descending.value = False
    assert [r["id"] for r in panel.shown] == [9, 1, 4]
    panel.sort_by.value = "id"
    assert [r["id"] for r in panel.shown] == [1, 4, 9]
    # a row click in the table (the Bokeh selection) centres the viewer on that object and selects it
    panel.selection.event(index=[1])
    assert panel.fake_viewer.calls == [(4, (2.0, 14.5, 14.5))]
    assert "object 4" in panel.picked.value and "300 voxels" in panel.picked.value
    panel.csv_btn.click()
    out = tmp_path / "exports" / "seg-objects.csv"
    rows = list(csv.DictReader(out.open()))
    assert [r["id"] for r in rows] == ["1", "4", "9"] and rows[1]["voxels"] == "300"
    panel.clear()
    assert panel.table is None and panel.summary.value == ""


def test_errors_are_one_line_in_the_status(panel):
    panel.list_btn.click()
    assert panel.status.level == "error" and "segment instances first" in panel.status.text
    write_seg(panel.seg_file)
    panel.refresh()
    panel.pick(9)
    panel.selection.event(index=[])  # a cleared selection does nothing
    assert len(panel.fake_viewer.calls) == 1
    from workbench.errors import WorkbenchError

    with pytest.raises(WorkbenchError, match="no object with id 5"):
        panel.pick(5)


def test_results_panel_holds_the_object_table(tmp_path):
    from widgets.context import AppContext
    from widgets.results import ResultsPanel
    from workbench.project import Project, ProjectOptions

    raw = np.random.default_rng(0).integers(0, 255, (2, 16, 16)).astype(np.uint8)
    project = Project.create(tmp_path / "ws" / "p", raw=raw, options=ProjectOptions(voxel_size=VOXEL))
    ctx = AppContext(project, workspace=tmp_path / "ws", data_root=tmp_path)
    try:
        results = ResultsPanel(ctx)
        assert results.objects.widget in results.widget.children
        results.objects.list_btn.click()  # no trained run yet: one line, no traceback
        assert results.objects.status.level == "error"
    finally:
        ctx.shutdown()

"""The object table of a segmentation in the Results step: sortable rows, a size histogram, a row click
centres Neuroglancer on the object and selects it, CSV export.

A thin view of :func:`workbench.objects.object_table`. The table is a HoloViews ``Table`` (a Bokeh
DataTable: click a header to sort the rows shown, click a row to pick the object); the ``sort by`` menu
chooses which :data:`MAX_ROWS` objects are shown when there are more (largest first by default).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W
import numpy as np

from widgets._common import StatusLine, action_button, styled
from workbench.errors import WorkbenchError
from workbench.objects import ObjectTable, object_table

#: Columns shown in the table (all columns go to the CSV).
SHOWN = ("id", "class", "voxels", "volume_um3", "centroid_z", "centroid_y", "centroid_x", "mean_probability")
#: At most this many rows are sent to the browser.
MAX_ROWS = 2000
SORT_CHOICES = (("size", "voxels"), ("id", "id"), ("class", "class"), ("mean probability", "mean_probability"),
                ("z", "centroid_z"))


def sorted_rows(table: ObjectTable, by: str = "voxels", descending: bool = True, limit: int | None = MAX_ROWS) -> list[dict]:
    """The table's rows sorted by column ``by`` (ties by id), at most ``limit`` of them."""
    cols = table.columns
    keys = cols[by]
    if keys.dtype == object:
        keys = np.asarray([str(k) for k in keys])
    order = np.lexsort((cols["id"], keys))
    if descending:
        order = order[::-1]
    rows = table.rows()
    return [rows[i] for i in order[:limit]]


class ObjectsPanel:
    """Objects of the current segmentation: table, size histogram, pick in Neuroglancer, CSV.

    Args:
        seg_path: returns the segmentation to list (``SEG.zarr``).
        pred_path: returns its prediction (``PRED.zarr``, for classes and mean probabilities) or None.
        viewer: returns the live :class:`~workbench.viewer.WorkbenchViewer` showing the segmentation
            (called on a row click).
        export_dir: returns the folder CSV files are written to.
    """

    def __init__(self, seg_path: Callable[[], Path], pred_path: Callable[[], Path | None],
                 viewer: Callable[[], object], export_dir: Callable[[], Path]):
        self._seg_path, self._pred_path, self._viewer, self._export_dir = seg_path, pred_path, viewer, export_dir
        self.status = StatusLine("objects")
        self.table: ObjectTable | None = None
        self.shown: list[dict] = []
        self.list_btn = action_button("list-objects", "List objects", icon="list")
        self.list_btn.on_click(self.status.guard(lambda _: self.refresh()))
        self.sort_by = styled(W.Dropdown(options=SORT_CHOICES, value="voxels", description="sort by",
                                         layout=W.Layout(width="220px")), "wb-objects-sort")
        self.descending = styled(W.Checkbox(value=True, description="descending", indent=False), "wb-objects-desc")
        for w in (self.sort_by, self.descending):
            w.observe(lambda _: self.status.guard(self._show)(), "value")
        self.csv_btn = action_button("export-objects", "CSV", icon="save")
        self.csv_btn.on_click(self.status.guard(lambda _: self.export_csv()))
        self.summary = styled(W.HTML(), "wb-objects-summary")
        self.picked = styled(W.HTML(), "wb-objects-picked")

        self.table_data: dict = self._frame([])
        self.hist_data: tuple = (np.zeros(2), np.zeros(1))
        self.selection = None
        self.table_widget = self.hist_widget = None
        self.plots = styled(W.HBox(), "wb-objects-plots")
        self._render()
        self.widget = styled(W.VBox([
            W.HTML("<b>Objects</b> <small>click a row to show the object in Neuroglancer</small>"),
            W.HBox([self.list_btn, self.sort_by, self.descending, self.csv_btn]),
            self.summary, self.plots, self.picked, self.status.widget]),
            "wb-objects")

    def _render(self) -> None:
        """New table and histogram plots of ``table_data`` / ``hist_data`` (plots are rebuilt, not streamed:
        data streamed to a plot before the page drew it was lost)."""
        from holoviews import streams

        from widgets._hv import as_widget, setup

        hv = setup()
        table = hv.Table(self.table_data, kdims=[], vdims=list(SHOWN)).opts(
            width=760, height=300, selectable=True, sortable=True, index_position=None)
        self.selection = streams.Selection1D(source=table)
        self.selection.add_subscriber(lambda index: self.status.guard(self._on_selection)(index))
        hist = hv.Histogram(self.hist_data, kdims=["log10 voxels"], vdims=["objects"]).opts(
            width=360, height=300, tools=["hover"], color="#4c78a8")
        self.table_widget = styled(as_widget(table, 760, 300), "wb-objects-table")
        self.hist_widget = styled(as_widget(hist, 360, 300), "wb-objects-histogram")
        self.plots.children = [self.table_widget, self.hist_widget]

    @staticmethod
    def _frame(rows: list[dict]) -> dict:
        return {c: [r[c] for r in rows] for c in SHOWN}

    def clear(self) -> None:
        """Forget the table (another project or run)."""
        self.table, self.shown = None, []
        self.table_data, self.hist_data = self._frame([]), (np.zeros(2), np.zeros(1))
        self._render()
        self.summary.value = self.picked.value = ""

    def refresh(self) -> ObjectTable:
        """Compute the object table of the current segmentation and show it.

        Raises:
            WorkbenchError: no segmentation yet.
        """
        seg = self._seg_path()
        if seg is None or not Path(seg).exists():
            raise WorkbenchError("segment instances first", seg)
        pred = self._pred_path()
        self.table = object_table(seg, prediction=pred if pred is not None and Path(pred).exists() else None)
        vox = self.table.columns["voxels"]
        counts, edges = np.histogram(np.log10(np.maximum(vox, 1)), bins=30) if len(vox) else (np.zeros(1), np.zeros(2))
        self.hist_data = (edges, counts)
        self._show()
        self.status.set(f"{len(self.table)} objects", "ok")
        return self.table

    def _show(self) -> None:
        if self.table is None:
            return
        self.shown = sorted_rows(self.table, self.sort_by.value, self.descending.value)
        self.table_data = self._frame(self.shown)
        self._render()
        n = len(self.table)
        vol = float(np.sum(self.table.columns["volume_um3"]))
        more = f" (showing {len(self.shown)})" if len(self.shown) < n else ""
        self.summary.value = (f"<span class='wb-objects-count'>{n}</span> objects{more}, "
                              f"{vol:.4g} um<sup>3</sup> in total")

    def _on_selection(self, index) -> None:
        if index:
            self.pick(int(self.shown[int(index[0])]["id"]))

    def pick(self, object_id: int) -> dict:
        """Centre Neuroglancer on object ``object_id`` and select it (its mesh shows in the 3D panel).

        Raises:
            WorkbenchError: no table yet, or no such object.
        """
        if self.table is None:
            raise WorkbenchError("list the objects first")
        row = self.table.row(object_id)
        viewer = self._viewer()
        viewer.select_object(object_id, (row["centroid_z"], row["centroid_y"], row["centroid_x"]))
        self.picked.value = (f"<span class='wb-objects-picked-id'>{html.escape(str(row['class']))} {object_id}</span>: "
                             f"{row['voxels']} voxels at z {row['centroid_z']:.0f}, y {row['centroid_y']:.0f}, "
                             f"x {row['centroid_x']:.0f}")
        return row

    def export_csv(self) -> Path:
        """Write the whole table (every column) as CSV into the export folder; returns the path."""
        if self.table is None:
            self.refresh()
        out_dir = Path(self._export_dir())
        out_dir.mkdir(parents=True, exist_ok=True)
        path = self.table.to_csv(out_dir / f"{Path(self._seg_path()).stem}-objects.csv")
        self.status.set(f"exported {path.name}", "ok")
        self.picked.value = f"<small>exported <code class='wb-export-path'>{html.escape(str(path))}</code></small>"
        return path

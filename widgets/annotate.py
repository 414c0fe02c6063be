"""Step 3, annotate: scribble a few strokes per class on slices; every stroke is saved as drawn."""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from widgets._common import StatusLine, action_button, styled
from widgets.context import AppContext
from workbench.errors import WorkbenchError

ERASER = 0


class AnnotatePanel:
    """Classes, a slice view to draw on, brush width, slice, undo and clear; labels live in the project."""

    step = "annotate"

    def __init__(self, ctx: AppContext, size: int = 560):
        self.ctx = ctx
        self.size = size
        self.status = StatusLine(self.step)
        self.view = None
        self._clear_armed = False

        self.label_select = styled(W.ToggleButtons(options=[], description="draw"), "wb-class-select")
        self.label_select.observe(lambda _: self._update_pen(), "value")
        self.brush = styled(W.IntSlider(value=int(ctx.project.state.get("brush", 5)), min=1, max=31,
                                        description="brush", continuous_update=False), "wb-brush")
        self.brush.observe(lambda _: self._brush_changed(), "value")
        self.z = styled(W.IntSlider(description="slice z", continuous_update=False), "wb-slice")
        self.z.observe(lambda ch: self.set_slice(ch["new"]), "value")
        self.undo_btn = action_button("undo", "Undo", icon="undo")
        self.undo_btn.on_click(self.status.guard(lambda _: self.undo()))
        self.clear_btn = action_button("clear", "Clear all", "warning", icon="trash")
        self.clear_btn.on_click(self.status.guard(lambda _: self.clear()))
        self.ng_btn = action_button("neuroglancer", "Show in Neuroglancer", icon="cube")
        self.ng_btn.on_click(self.status.guard(lambda _: self.show_neuroglancer()))
        self.counts = styled(W.HTML(), "wb-label-counts")
        from widgets.assist import AssistPanel

        self.assist = AssistPanel(ctx, self.status, current_slice=lambda: int(self.z.value),
                                  go_to_slice=self.set_slice, redraw=self._redraw)

        # class editing
        self.class_rows = W.VBox()
        self.new_name = styled(W.Text(placeholder="new class name", layout=W.Layout(width="200px")), "wb-class-new")
        self.add_btn = action_button("add-class", "Add class", icon="plus")
        self.add_btn.on_click(self.status.guard(lambda _: self.add_class(self.new_name.value)))
        editor = W.VBox([self.class_rows, W.HBox([self.new_name, self.add_btn])])
        self.class_editor = styled(W.Accordion(children=[editor]), "wb-class-editor")
        self.class_editor.set_title(0, "Classes: add, rename, colour")
        self.class_editor.selected_index = None

        self.view_box = W.VBox()
        self.ng_box = W.VBox()
        help_text = W.HTML(
            "<h3>3 · Annotate</h3><p>Pick a class and drag on the image to scribble over a few examples of it "
            "(a few strokes per class on a few slices are enough to start). Unlabelled pixels are ignored "
            "in training. Strokes are saved as you draw; <b>Undo</b> takes back the last one.</p>")
        controls = W.VBox([self.label_select, self.brush, self.z, W.HBox([self.undo_btn, self.clear_btn]),
                           self.counts, self.class_editor, self.ng_btn, self.assist.widget],
                          layout=W.Layout(width="430px"))
        self.widget = styled(W.VBox([help_text, W.HBox([self.view_box, controls]), self.ng_box,
                                     self.status.widget]), "wb-step", f"wb-step-{self.step}")
        ctx.on("project", lambda **_: self.rebuild())
        ctx.on("classes", lambda **_: self._refresh_classes())
        self.rebuild()

    # ---- building
    @property
    def store(self):
        return self.ctx.project.annotations

    def rebuild(self) -> None:
        """(Re)build the view for the current project."""
        from widgets.slice_view import SliceView

        p = self.ctx.project
        raw = p.raw
        self.view = SliceView(raw, overlay=self._overlay, draw=True, on_stroke=self._on_stroke, size=self.size)
        self.z.max = raw.shape[0] - 1
        z = int(p.state.get("annotate_z", self.view.z))
        self.view.set_slice(z)
        self.z.value = self.view.z
        self.view_box.children = [styled(self.view.widget, "wb-annotate-view")]
        self.ng_box.children = []
        self._refresh_classes()

    def _refresh_classes(self) -> None:
        classes = self.ctx.project.classes
        current = self.label_select.value
        self.label_select.options = [(c.name, c.id) for c in classes] + [("eraser", ERASER)]
        self.label_select.style.button_width = "110px"
        ids = [c.id for c in classes]
        saved = self.ctx.project.state.get("annotate_class")
        self.label_select.value = current if current in ids + [ERASER] else (saved if saved in ids else ids[0])
        rows = []
        for c in classes:
            name = W.Text(value=c.name, layout=W.Layout(width="180px"), continuous_update=False)
            name.add_class(f"wb-class-name-{c.id}")
            name.observe(lambda ch, cid=c.id: self.status.guard(self.rename_class)(cid, ch["new"]), "value")
            color = W.ColorPicker(value=c.color, concise=True, layout=W.Layout(width="40px"))
            color.add_class(f"wb-class-color-{c.id}")
            color.observe(lambda ch, cid=c.id: self.status.guard(self.recolor_class)(cid, ch["new"]), "value")
            rows.append(W.HBox([W.HTML(f"<code>{c.id}</code>"), color, name]))
        self.class_rows.children = rows
        self._update_pen()
        self._update_counts()
        if self.view is not None:
            self.view.refresh()

    # ---- drawing
    def _overlay(self, z: int) -> np.ndarray:
        from workbench.classes import class_colors, label_rgba

        labels = self.store.read((slice(z, z + 1), slice(None), slice(None)))[0]
        return self.assist.overlay(z, label_rgba(labels, class_colors(self.ctx.project.classes)))

    def _redraw(self) -> None:
        if self.view is not None:
            self.view.refresh()

    def _pen_color(self) -> str:
        if self.label_select.value == ERASER:
            return "#ffffff"
        try:
            return self.ctx.project.get_class(self.label_select.value).color
        except WorkbenchError:
            return "#ff0000"

    def _update_pen(self) -> None:
        if self.view is not None:
            self.view.set_pen(self.brush.value, self._pen_color())
        if self.label_select.value is not None:
            self.ctx.project.state["annotate_class"] = int(self.label_select.value)

    def _brush_changed(self) -> None:
        self.ctx.project.state["brush"] = int(self.brush.value)
        self._update_pen()

    def _on_stroke(self, points_zyx: np.ndarray) -> None:
        try:
            self.add_stroke(points_zyx)
        except Exception as exc:  # drawing must never break silently
            self.status.error(exc)

    def add_stroke(self, points_zyx, label: int | None = None, width: float | None = None) -> None:
        """Save one stroke (voxel coordinates z, y, x) with the chosen class and brush, and show it."""
        label = self.label_select.value if label is None else label
        width = self.brush.value if width is None else width
        pts = np.asarray(points_zyx, float)
        if len(pts) == 0:
            return
        self._check_stroke(pts, label)
        if label == ERASER:
            edit = self.store.erase_stroke(pts, width=width)
        else:
            edit = self.store.add_stroke(pts, int(label), width=width)
        self._after_edit(f"stroke saved ({getattr(edit, 'changed', '?')} voxels)")

    def _check_stroke(self, pts: np.ndarray, label) -> None:
        """Refuse, before anything is written, a stroke wholly outside the volume or of a deleted class."""
        shape = np.asarray(self.ctx.project.shape, float)
        if pts.ndim != 2 or pts.shape[1] != 3 or not np.all(np.isfinite(pts)):
            raise WorkbenchError("a stroke needs finite (z, y, x) points: nothing written")
        if not np.any(np.all((pts >= -0.5) & (pts < shape - 0.5), axis=1)):
            raise WorkbenchError(f"the stroke lies outside the volume {tuple(int(v) for v in shape)}: nothing written")
        if label != ERASER and label not in {c.id for c in self.ctx.project.classes}:
            raise WorkbenchError(f"class {label} no longer exists (it was deleted): pick another class; nothing written")

    def _after_edit(self, message: str) -> None:
        self._clear_armed = False
        self.clear_btn.description = "Clear all"
        if self.view is not None:
            self.view.refresh()
        self._update_counts()
        if self.ctx.has_viewer:
            try:
                self.ctx.viewer().update_layer("annotations")
            except Exception:  # the viewer may not show annotations yet
                pass
        self.ctx.emit("labels")
        self.status.set(message, "ok")

    def set_slice(self, z: int) -> None:
        if self.view is None:
            return
        self.view.set_slice(z)
        self.ctx.project.state["annotate_z"] = int(self.view.z)
        if self.z.value != self.view.z:
            self.z.value = self.view.z

    def undo(self) -> None:
        edit = self.store.undo()
        if edit is None:
            self.status.set("nothing to undo", "info")
            return
        self._after_edit("undone")

    def clear(self) -> None:
        """Clear every label; asks for a second click first."""
        if not self._clear_armed:
            self._clear_armed = True
            self.clear_btn.description = "Click again to clear"
            self.status.set("click 'Clear all' again to remove every label (Undo brings them back)", "busy")
            return
        self._clear_armed = False
        self.clear_btn.description = "Clear all"
        self.store.clear()
        self._after_edit("all labels cleared")

    def _update_counts(self) -> None:
        counts = self.store.counts()
        parts = []
        for c in self.ctx.project.classes:
            n = counts.get(c.id, 0)
            parts.append(f"<span style='color:{c.color}'>■</span> {html.escape(c.name)}: "
                         f"<span class='wb-count-{c.id}'>{n}</span>")
        hint = "" if len([n for n in counts.values() if n]) >= 2 else "<br><i>label at least two classes to train</i>"
        self.counts.value = "<small>labelled voxels: " + " · ".join(parts) + hint + "</small>"

    # ---- classes
    def add_class(self, name: str) -> None:
        cls = self.ctx.project.add_class(name)
        self.new_name.value = ""
        self.ctx.emit("classes")
        self.label_select.value = cls.id
        self.status.set(f"class {cls.name} added", "ok")

    def rename_class(self, class_id: int, name: str) -> None:
        if self.ctx.project.get_class(class_id).name == name.strip():
            return
        self.ctx.project.rename_class(class_id, name)
        self.ctx.emit("classes")
        self.status.set(f"class {class_id} renamed to {name.strip()}", "ok")

    def recolor_class(self, class_id: int, color: str) -> None:
        if self.ctx.project.get_class(class_id).color == color:
            return
        self.ctx.project.recolor_class(class_id, color)
        self.ctx.emit("classes")
        self.status.set(f"class {class_id} colour changed", "ok")

    # ---- Neuroglancer
    def show_neuroglancer(self) -> None:
        from widgets.neuroglancer import NeuroglancerFrame

        viewer = self.ctx.viewer()
        p = self.ctx.project
        viewer.show_label_store(self.store, classes=p.classes)
        self.assist.show_in_viewer()
        self.ng_box.children = [NeuroglancerFrame(viewer, height=480).widget]
        self.status.set("the same labels in Neuroglancer (3D view: switch the layout in its top bar)", "ok")

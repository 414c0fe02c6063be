"""The annotate step's help from the model: its prediction and uncertainty under the strokes, ranked
suggestions of where to scribble next, and accepting the prediction inside a box as labels."""

from __future__ import annotations

import html
from collections.abc import Callable

import ipywidgets as W
import numpy as np

from widgets._common import StatusLine, action_button, styled
from widgets.context import AppContext
from workbench.errors import WorkbenchError

#: Colour of the uncertainty overlay (magenta: not a class colour of the default palette) and of the box.
UNCERTAINTY_RGB = (255, 0, 255)
BOX_RGB = (255, 225, 25)


def _box_outline(shape_yx, box, width: int = 2) -> np.ndarray:
    """Bool (y, x): the outline of ``box`` ([z0, y0, x0, z1, y1, x1]) on a slice of ``shape_yx``."""
    out = np.zeros(shape_yx, bool)
    _, y0, x0, _, y1, x1 = box
    y0, x0, y1, x1 = max(0, y0), max(0, x0), min(shape_yx[0], y1), min(shape_yx[1], x1)
    out[y0:min(y0 + width, y1), x0:x1] = True
    out[max(y1 - width, y0):y1, x0:x1] = True
    out[y0:y1, x0:min(x0 + width, x1)] = True
    out[y0:y1, max(x1 - width, x0):x1] = True
    return out


class AssistPanel:
    """Overlay toggles, the Suggestions list and "Accept prediction in box" for the annotate view.

    Args:
        ctx: the app context (project, events).
        status: the annotate step's status line.
        current_slice: returns the slice the view shows.
        go_to_slice: moves the view to a slice.
        redraw: redraws the view's overlay.
    """

    def __init__(self, ctx: AppContext, status: StatusLine, current_slice: Callable[[], int],
                 go_to_slice: Callable[[int], None], redraw: Callable[[], None]):
        self.ctx = ctx
        self.status = status
        self.current_slice = current_slice
        self.go_to_slice = go_to_slice
        self.redraw = redraw
        self.predictor = None
        self._model_key = None
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.suggestions: list = []
        self.active = None

        self.show_prediction = styled(W.Checkbox(value=False, description="prediction under the strokes",
                                                 indent=False), "wb-show-prediction")
        self.show_uncertainty = styled(W.Checkbox(value=False, description="uncertainty (magenta)", indent=False),
                                       "wb-show-uncertainty")
        for box in (self.show_prediction, self.show_uncertainty):
            box.observe(lambda _: self.status.guard(self._overlay_toggled)(), "value")
        self.suggest_btn = action_button("suggest", "Suggest where to scribble", icon="lightbulb-o")
        self.suggest_btn.on_click(self.status.guard(lambda _: self.suggest()))
        self.list = styled(W.Select(options=[], rows=6, layout=W.Layout(width="400px")), "wb-suggestions")
        self.list.observe(lambda ch: self.status.guard(self.select)(ch["new"]), "value")
        self.accept_btn = action_button("accept", "Accept prediction in box", icon="check")
        self.accept_btn.on_click(self.status.guard(lambda _: self.accept_box()))
        self.note = styled(W.HTML(), "wb-assist-note")
        self.widget = styled(W.VBox([
            W.HTML("<b>Help from the model</b> <small>(the newest trained run)</small>"),
            W.HBox([self.show_prediction, self.show_uncertainty]),
            self.suggest_btn, self.list, self.accept_btn, self.note]), "wb-assist")
        ctx.on("project", lambda **_: self.reset())
        ctx.on("run", lambda **_: self._forget_model())

    # ---- the model
    def reset(self) -> None:
        """Forget the model, the suggestions and the box (another project was opened)."""
        self._forget_model()
        self.suggestions, self.active = [], None
        self.list.options = []
        self.note.value = ""

    def _forget_model(self) -> None:
        self.predictor, self._model_key = None, None
        self._cache.clear()

    def _newest_run(self):
        runs = [r for r in self.ctx.project.runs() if r.checkpoint is not None]
        if not runs:
            raise WorkbenchError("no trained model yet: train one in the Train step first, then come back")
        return runs[-1]

    def model(self):
        """The newest run's predictor (reloaded when its checkpoint changed)."""
        from workbench.training import load_run

        run = self._newest_run()
        key = (run.id, run.checkpoint.stat().st_mtime_ns)
        if key != self._model_key:
            self.predictor = load_run(run.path, device="cpu")
            self._model_key = key
            self._cache.clear()
        return self.predictor

    def slice_outputs(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities (C, y, x) and uncertainty (y, x) of slice ``z`` by the newest model (cached)."""
        from workbench.inference.uncertainty import slice_uncertainty

        predictor = self.model()
        if z not in self._cache:
            self._cache[z] = slice_uncertainty(predictor, self.ctx.project.raw, z)
        return self._cache[z]

    # ---- overlay
    def _overlay_toggled(self) -> None:
        if self.show_prediction.value or self.show_uncertainty.value:
            self.model()  # says at once when there is no model
        self.redraw()

    def overlay(self, z: int, labels_rgba: np.ndarray) -> np.ndarray:
        """The annotate view's overlay of slice ``z``: prediction under the labels, uncertainty, the box."""
        from workbench.classes import class_rgba, prediction_colors

        out = labels_rgba
        if self.show_prediction.value or self.show_uncertainty.value:
            try:
                probs, unc = self.slice_outputs(z)
            except WorkbenchError:
                probs = unc = None
            if probs is not None and self.show_prediction.value:
                names = list(self.predictor.channel_names)
                pred = class_rgba(probs, prediction_colors(names, self.ctx.project.classes), alpha=70)
                out = np.where(labels_rgba[..., 3:] > 0, labels_rgba, pred)
            if unc is not None and self.show_uncertainty.value:
                heat = np.zeros_like(out)
                heat[..., :3] = UNCERTAINTY_RGB
                heat[..., 3] = np.clip(unc * 200, 0, 200).astype(np.uint8)
                out = np.where((heat[..., 3:] > out[..., 3:]), heat, out)
        if self.active is not None and self.active.z == z:
            out = out.copy()
            edge = _box_outline(out.shape[:2], self.active.box)
            out[edge] = (*BOX_RGB, 255)
        return out

    # ---- suggestions
    def suggest(self, n: int = 8, slices: int = 16) -> list:
        """Rank where to scribble next with the newest model and the current labels; list them."""
        from workbench.suggestions import SuggestOptions, suggest, write_suggestions

        p = self.ctx.project
        predictor = self.model()
        labels = p.annotations.as_array()
        self.status.set("looking for the places the model is least sure about...", "busy")
        found = suggest(predictor, p.raw, labels, SuggestOptions(n=n, slices=slices))
        write_suggestions(found, p.root / "suggestions.json", run=self._model_key[0])
        self.suggestions = found
        self.list.options = [
            (f"{i + 1}. slice {s.z}, y {s.y}, x {s.x} (score {s.score:.2f})", i) for i, s in enumerate(found)]
        self.note.value = ("<small>click a suggestion to go there; scribble the right classes inside the yellow "
                           "box, or accept the prediction in it where it is right</small>")
        self.status.set(f"{len(found)} suggestions (saved to suggestions.json)", "ok")
        self.show_in_viewer()
        if found:
            self.list.value = 0
        return found

    def select(self, index) -> None:
        """Go to suggestion ``index`` and draw its box."""
        if index is None or not 0 <= int(index) < len(self.suggestions):
            return
        self.active = self.suggestions[int(index)]
        self.go_to_slice(self.active.z)
        self.redraw()
        if self.ctx.has_viewer:
            self.ctx.viewer().go_to((self.active.z, self.active.y, self.active.x))

    def show_in_viewer(self) -> None:
        """Show the suggestions as boxes in the live Neuroglancer viewer, when one is open."""
        if self.ctx.has_viewer and self.suggestions:
            self.ctx.viewer().set_suggestions(self.suggestions)

    # ---- corrections
    def accept_box(self):
        """Take the newest model's classes inside the selected box as labels (unlabelled voxels only)."""
        from workbench.classes import channel_class_ids

        if self.active is None:
            raise WorkbenchError("select a suggestion first: its box is what gets accepted")
        z0, y0, x0, z1, y1, x1 = self.active.box
        probs, _ = self.slice_outputs(z0)
        known = {c.id for c in self.ctx.project.classes}
        ids = np.array(channel_class_ids(list(self.predictor.channel_names), self.ctx.project.classes))
        classes = ids[np.argmax(probs[:, y0:y1, x0:x1], axis=0)]
        classes = np.where(np.isin(classes, list(known)), classes, 0)  # channels of deleted classes: nothing
        edit = self.ctx.project.annotations.accept_region((z0, y0, x0), (z1, y1, x1), classes[None],
                                                          source=f"prediction of {self._model_key[0]}")
        self.redraw()
        self.ctx.emit("labels")
        self.status.set(f"prediction accepted in the box ({edit.changed} voxels; Undo takes it back)", "ok")
        return edit

    def describe(self) -> str:
        """One line for tests and logs: what is shown and selected."""
        shown = [n for n, b in (("prediction", self.show_prediction), ("uncertainty", self.show_uncertainty))
                 if b.value]
        box = html.escape(str(self.active.box)) if self.active is not None else "none"
        return f"overlays: {', '.join(shown) or 'none'}; suggestions: {len(self.suggestions)}; box: {box}"

"""The Results step's comparison of a from-scratch and a warm-started model trained on the same strokes: their
predictions of one slice side by side, scored against the ground truth where it exists (pixel error, mean IoU),
else their uncertainty (mean normalised entropy)."""

from __future__ import annotations

import html
import threading

import ipywidgets as W
import numpy as np

from widgets._common import action_button, styled
from workbench.errors import WorkbenchError


def run_kinds(project) -> tuple[list, list]:
    """(from-scratch runs, warm-started runs) of the project with a checkpoint, newest first (warm-ups excluded)."""
    scratch, warm = [], []
    for r in reversed(project.runs()):
        cfg = r.config or {}
        if r.checkpoint is None or cfg.get("pretext") or cfg.get("arch") == "forest":
            continue
        (warm if cfg.get("init") else scratch).append(r)
    return scratch, warm


def slice_scores(probs: np.ndarray, truth_slice: np.ndarray | None, activation: str = "softmax") -> dict:
    """Scores of one predicted slice (C, y, x): against the truth's labelled pixels, else the mean entropy."""
    from workbench.inference.uncertainty import entropy

    out = {"uncertainty": float(np.mean(entropy(probs[:, None], activation)))}
    if truth_slice is not None and np.any(truth_slice > 0):
        from workbench.metrics import evaluate

        keep = truth_slice > 0
        pred = np.where(keep, probs.argmax(0) + 1, 0).astype(np.uint32)
        res = evaluate(pred[None], truth_slice[None].astype(np.uint32), kind="semantic", ignore_label=0)
        out.update(pixel_error=float(res.get("pixel_error", np.nan)), mean_iou=float(res.get("mean_iou", np.nan)))
    return out


class ComparePanel:
    """Two runs (from scratch, warm-started) predicting the Results step's slice side by side."""

    def __init__(self, ctx, z_widget, size: int = 300):
        self.ctx = ctx
        self.z = z_widget
        self.size = size
        self.scratch = styled(W.Dropdown(description="from scratch", options=[], layout=W.Layout(width="420px")),
                              "wb-compare-scratch-run")
        self.warm = styled(W.Dropdown(description="warm-started", options=[], layout=W.Layout(width="420px")),
                           "wb-compare-warm-run")
        self.button = action_button("compare-runs", "Compare on this slice", icon="columns")
        self.button.on_click(lambda _: self._guarded(self.compare))
        self.views_box = styled(W.HBox(), "wb-compare-runs")
        self.scores = styled(W.HTML(), "wb-compare-scores")
        self.message = styled(W.HTML(), "wb-compare-message")
        self.results: dict[str, dict] = {}
        self.widget = styled(W.VBox([
            W.HTML("<b>From scratch or warm-started?</b> <small>the same slice predicted by a model trained from "
                   "random weights and one that started from a warm-up or a model file</small>"),
            W.HBox([self.scratch, self.warm, self.button]), self.views_box, self.scores, self.message]),
            "wb-compare-panel")
        self.refresh()

    def _guarded(self, fn) -> None:
        try:
            fn()
        except WorkbenchError as err:
            self.message.value = f"<span class='wb-error'>{html.escape(str(err))}</span>"

    def refresh(self) -> None:
        scratch, warm = run_kinds(self.ctx.project)
        self.scratch.options = [(r.id, r.id) for r in scratch]
        self.warm.options = [(f"{r.id} (from {(r.config or {}).get('init', '?').rstrip('/').rsplit('/', 1)[-1]})", r.id)
                             for r in warm]
        self.scratch.value = scratch[0].id if scratch else None
        self.warm.value = warm[0].id if warm else None
        self.button.disabled = not (scratch and warm)
        self.message.value = ("" if scratch and warm else "<small>train once from random weights and once from a "
                              "warm-up (Train: <i>Warm up on this volume</i>) to compare them here</small>")

    def _run(self, run_id: str):
        return next(r for r in self.ctx.project.runs() if r.id == run_id)

    def compare(self, z: int | None = None) -> dict:
        """Predict slice ``z`` (default: the Results step's) with both runs, show and score them."""
        from widgets.slice_view import SliceView
        from workbench.classes import class_rgba, prediction_colors
        from workbench.inference import predict_slice
        from workbench.training import load_run

        if not (self.scratch.value and self.warm.value):
            raise WorkbenchError("train a model from scratch and a warm-started one first")
        p = self.ctx.project
        z = int(self.z.value if z is None else z)
        truth = p.truth
        truth_slice = np.asarray(truth[z:z + 1][0]) if truth is not None else None
        views, self.results = [], {}
        for label, run_id in (("from scratch", self.scratch.value), ("warm-started", self.warm.value)):
            predictor = load_run(self._run(run_id).path, device="cpu")
            probs = predict_slice(predictor, p.raw, z)
            colors = prediction_colors(list(predictor.channel_names), p.classes)
            rgba = class_rgba(probs, colors)
            view = SliceView(p.raw, overlay=lambda zz, rgba=rgba, z0=z: rgba if zz == z0 else None, size=self.size,
                             title=f"{label}: {run_id}")
            view.set_slice(z)
            views.append(styled(view.widget, f"wb-compare-{label.replace(' ', '-')}"))
            self.results[label] = {"run": run_id, **slice_scores(probs, truth_slice, predictor.activation or "softmax")}
        self.views_box.children = views
        self.scores.value = self._scores_html(z)
        self.message.value = ""
        return self.results

    def compare_in_background(self) -> threading.Thread:
        t = threading.Thread(target=lambda: self._guarded(self.compare), daemon=True, name="workbench-compare")
        t.start()
        return t

    def _scores_html(self, z: int) -> str:
        keys = [("pixel_error", "pixel error", ".4f"), ("mean_iou", "mean IoU", ".3f"),
                ("uncertainty", "uncertainty (mean entropy)", ".3f")]
        head = "".join(f"<th>{html.escape(k)}</th>" for k in self.results)
        rows = []
        for key, name, fmt in keys:
            if all(key in r for r in self.results.values()):
                cells = "".join(f"<td class='wb-compare-{key}'>{r[key]:{fmt}}</td>" for r in self.results.values())
                rows.append(f"<tr><td>{name}</td>{cells}</tr>")
        where = "against the ground truth" if any("pixel_error" in r for r in self.results.values()) else \
            "no ground truth here: uncertainty only"
        return (f"<small>slice {z}, {where}</small><table class='wb-compare-table'><tr><th></th>{head}</tr>"
                + "".join(rows) + "</table>")

"""Step 5, results: predict the whole volume, make instances, compare, score, view and export."""

from __future__ import annotations

import html
import time
from pathlib import Path

import ipywidgets as W
import numpy as np

from widgets._common import StatusLine, Ticker, action_button, fmt_duration, styled
from widgets.compare import ComparePanel
from widgets.context import AppContext
from widgets.objects import ObjectsPanel
from widgets.share import SharePanel
from workbench.classes import class_colors, instance_rgba, label_rgba, prediction_colors
from workbench.errors import WorkbenchError
from workbench.inference import prediction_class_map
from workbench.segmentation import METHOD_HELP
from workbench.training import load_run

#: every segmentation method, each with its one line for learners (workbench.segmentation.METHOD_HELP)
SEG_METHODS = tuple((f"{m.value}: {text}", m.value) for m, text in METHOD_HELP.items())
#: the prediction precisions offered (workbench.precision.Precision), saved as project state "predict_precision"
PRECISIONS = ("auto", "fp32", "bf16")


class ResultsPanel:
    """Predict with a trained run, segment instances, compare with the truth, view, export."""

    step = "results"

    def __init__(self, ctx: AppContext, size: int = 300):
        self.ctx = ctx
        self.size = size
        self.status = StatusLine(self.step)
        self.run = styled(W.Dropdown(description="model", options=[], layout=W.Layout(width="460px")), "wb-results-run")
        self.predict_btn = action_button("predict", "Predict the volume", "success", icon="magic")
        self.predict_btn.on_click(self.status.guard(lambda _: self.predict()))
        self.stop_btn = action_button("stop-predict", "Stop", "danger", icon="stop")
        self.stop_btn.disabled = True
        self.stop_btn.on_click(lambda _: self.ctx.jobs.get("predict") and self.ctx.jobs["predict"].stop())
        self.tta = styled(W.Checkbox(
            value=False, description="test-time augmentation", indent=False,
            tooltip="predict the 8 rotations and flips of every slice and combine them by their mean logits "
                    "(8x slower; narrow U-Nets trained on scribbles segmented better with it)"), "wb-predict-tta")
        self.precision = styled(W.Dropdown(
            options=PRECISIONS, value=self._saved_precision(), description="precision",
            tooltip="auto (default): bf16 where the hardware has it and a quick measurement finds it faster, "
                    "else fp32; bf16: about 2x faster on CPUs with AMX and recent GPUs, slower on some AVX512-BF16 CPUs, probabilities within ~0.04 (a forest: always fp32)"),
            "wb-predict-precision")
        self.precision.observe(lambda ch: self.project.state.update(predict_precision=ch["new"]), "value")
        self.run.observe(lambda ch: ch["new"] and setattr(self.tta, "value", self._recommended_tta()), "value")
        self.progress = styled(W.FloatProgress(value=0, min=0, max=1, description="predict",
                                               layout=W.Layout(width="460px")), "wb-predict-progress")
        self.progress_text = styled(W.HTML(), "wb-predict-eta")

        self.seg_method = styled(W.Dropdown(options=SEG_METHODS, value="watershed", description="instances",
                                            layout=W.Layout(width="460px")), "wb-seg-method")
        self.seg_method_help = styled(W.HTML(), "wb-seg-method-help")
        self.seg_method.observe(lambda ch: self._show_method_help(), "value")
        self._show_method_help()
        self.seg_channel = styled(W.Dropdown(options=[], description="class"), "wb-seg-channel")
        self.seg_threshold = W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05, description="threshold")
        self.seg_min_size = W.BoundedIntText(value=20, min=0, max=10**7, description="min size")
        self.seg_merge = styled(W.FloatSlider(
            value=0.0, min=0.0, max=0.9, step=0.05, description="merge below",
            tooltip="watershed: then join touching objects whose shared boundary is weaker than this on average "
                    "(0 = off; joins cells split by faint inner outlines such as organelles)"), "wb-seg-merge")
        self.segment_btn = action_button("segment", "Segment instances", "primary", icon="th")
        self.segment_btn.on_click(self.status.guard(lambda _: self.segment()))

        self.z = styled(W.IntSlider(description="slice z", continuous_update=False), "wb-results-slice")
        self.z.observe(lambda ch: self._set_slice(ch["new"]), "value")
        self.compare_box = styled(W.HBox(), "wb-results-compare")
        self.metrics = styled(W.HTML(), "wb-metrics")
        self.ng_btn = action_button("neuroglancer", "Show in Neuroglancer", icon="cube")
        self.ng_btn.on_click(self.status.guard(lambda _: self.show_neuroglancer()))
        self.ng_box = styled(W.VBox(), "wb-results-ng")
        self.export_zarr = action_button("export-zarr", "OME-Zarr", icon="save")
        self.export_zarr.on_click(self.status.guard(lambda _: self.export("zarr")))
        self.export_tiff = action_button("export-tiff", "TIFF", icon="save")
        self.export_tiff.on_click(self.status.guard(lambda _: self.export("tiff")))
        self.export_model = action_button("export-model", "Model", icon="save")
        self.export_model.on_click(self.status.guard(lambda _: self.export("model")))
        self.exports = styled(W.HTML(), "wb-exports")
        self.objects = ObjectsPanel(seg_path=lambda: self.seg_path() if self.run.value else None,
                                    pred_path=lambda: self.pred_path() if self.run.value else None,
                                    viewer=self._objects_viewer, export_dir=lambda: self.project.root / "exports")
        self.share = SharePanel(ctx)  # the static results site and its zip
        self.runs_compare = ComparePanel(ctx, self.z, size)  # from scratch vs warm-started, same slice
        self.views: list = []
        self._progress_state = (0, 1, {})
        self._ticker = Ticker(0.5, self._poll)

        header = W.HTML("<h3>5 · Results</h3><p>Predict the whole volume with a trained model, turn it into "
                        "objects (instances), compare with the raw data and the ground truth, and export.</p>")
        self.widget = styled(W.VBox([
            header,
            W.HBox([self.run, self.predict_btn, self.stop_btn]), W.HBox([self.tta, self.precision]),
            self.progress, self.progress_text,
            W.HBox([self.seg_method, self.seg_channel, self.seg_merge]), self.seg_method_help,
            W.HBox([self.seg_threshold, self.seg_min_size, self.segment_btn]),
            W.HTML("<hr>"), self.compare_box, self.z, self.metrics, self.runs_compare.widget, self.objects.widget,
            W.HBox([self.ng_btn, W.HTML("&nbsp; export: "), self.export_zarr, self.export_tiff, self.export_model]),
            self.exports, self.share.widget, self.ng_box, self.status.widget]), "wb-step", f"wb-step-{self.step}")
        self._own_run = ctx.trained_run  # finished before this step was first shown
        ctx.on("run", lambda **kw: kw.get("state") == "finished" and self._on_run_finished(kw.get("run")))
        ctx.on("project", lambda **_: self.refresh())
        self.refresh()

    # ---- runs and paths
    @property
    def project(self):
        return self.ctx.project

    def refresh(self) -> None:
        self.ng_box.children = []
        self.metrics.value = ""
        self.objects.clear()
        self.z.max = self.project.shape[0] - 1
        self.z.value = min(int(self.project.state.get("annotate_z", self.project.shape[0] // 2)), self.z.max)
        self.precision.value = self._saved_precision()
        self.refresh_runs()

    def _saved_precision(self) -> str:
        saved = str(self.project.state.get("predict_precision", "auto"))
        return saved if saved in PRECISIONS else "auto"

    def _recommended_tta(self) -> bool:
        """Whether the chosen run recommends test-time augmentation (``workbench.training.test_time``)."""
        from workbench.training.checkpoint import load_checkpoint

        try:
            state = load_checkpoint(self._run_info().path / "checkpoint.pt")
        except (WorkbenchError, OSError):
            return bool(self.tta.value)
        defaults = state.get("prediction_defaults")
        return bool(defaults.get("tta")) if isinstance(defaults, dict) else bool(self.tta.value)

    #: the run this page trained last: chosen over newer runs other pages of the same project trained
    _own_run: str | None = None

    def _on_run_finished(self, run_id: str | None) -> None:
        self._own_run = run_id or self._own_run or self.ctx.trained_run
        self.refresh_runs()
        self.runs_compare.refresh()

    def refresh_runs(self) -> None:
        runs = [r for r in self.project.runs() if r.checkpoint is not None and not (r.config or {}).get("pretext")]
        opts = []
        for r in reversed(runs):
            last = r.last_metrics or {}
            arch = (r.config or {}).get("arch", "?")
            opts.append((f"{r.id} · {arch} · {last.get('iteration', '?')} it · loss {last.get('loss', float('nan')):.3f}",
                         r.id))
        self.run.options = opts
        if opts:
            ids = [v for _, v in opts]
            self.run.value = self._own_run if self._own_run in ids else opts[0][1]
            self.predict_btn.disabled = False
            self.tta.value = self._recommended_tta()
        else:
            self.predict_btn.disabled = True
            self.progress_text.value = "<i>train a model first (step 4)</i>"
        self._update_channels()
        self.show_compare()

    def _run_info(self, run_id: str | None = None):
        run_id = run_id or self.run.value
        for r in self.project.runs():
            if r.id == run_id:
                return r
        raise WorkbenchError("choose a trained model first")

    def pred_path(self, run_id: str | None = None) -> Path:
        return self.project.prediction_path(run_id or self.run.value)

    def seg_path(self, run_id: str | None = None) -> Path:
        return self.project.segmentation_path(run_id or self.run.value)

    def _channel_names(self) -> list[str]:
        try:
            from workbench.inference import read_info

            return list(read_info(self.pred_path()).get("channel_names") or [])
        except Exception:
            pass
        try:
            cfg = self._run_info().config or {}
            return list(cfg.get("classes") or [])
        except WorkbenchError:
            return []

    def _update_channels(self) -> None:
        names = self._channel_names() or [c.name for c in self.project.classes]
        self.seg_channel.options = [(n, i) for i, n in enumerate(names)]
        if names:
            lower = [n.lower() for n in names]
            method = self.seg_method.value
            want = "membrane" if method == "watershed" else "interior"
            self.seg_channel.value = lower.index(want) if want in lower else 0

    # ---- predicting
    def predict(self, wait: bool = False) -> None:
        """Predict the whole volume with the chosen run in the background (``wait``: block until done)."""
        from workbench.inference import PredictOptions, predict_volume

        if not self.run.value:
            raise WorkbenchError("no trained model yet: train one in step 4")
        run = self._run_info()
        out = self.pred_path(run.id)
        raw = self.project.raw
        tta = bool(self.tta.value)
        precision = self.precision.value

        def work(should_stop):
            predictor = load_run(run.path, precision=precision)
            return predict_volume(predictor, raw, out, PredictOptions(tta=tta, overwrite=True),
                                  progress=self._on_progress, should_stop=should_stop)

        self.progress.value = 0
        self.progress.bar_style = ""
        self.predict_btn.disabled = True
        self.stop_btn.disabled = False
        self.status.set(f"predicting with {run.id}{' (8 views)' if tta else ''} ...", "busy")
        self._t0 = time.monotonic()
        job = self.ctx.start_job("predict", work, on_done=lambda j: setattr(self, "_done_job", j))
        if wait or not self._ticker.start():
            job.wait()
            self._poll()

    _done_job = None
    _t0 = 0.0

    def _on_progress(self, done, total=None, stats=None) -> None:
        self._progress_state = (done, total or 1, stats or {})

    def _poll(self) -> None:
        done, total, stats = self._progress_state
        self.progress.value = min(1.0, done / max(total, 1))
        eta = stats.get("eta_s")
        self.progress_text.value = (f"{done}/{total} blocks · elapsed {fmt_duration(time.monotonic() - self._t0)}"
                                    + (f" · ETA {fmt_duration(eta)}" if eta is not None else ""))
        job = self._done_job
        if job is None:
            return
        self._done_job = None
        self._ticker.stop()
        self.predict_btn.disabled = False
        self.stop_btn.disabled = True
        if job.error is not None:
            self.progress.bar_style = "danger"
            self.status.error(job.error)
            return
        res = job.result
        if res is not None and not getattr(res, "complete", True):
            self.status.set("prediction stopped; predict again to finish it", "info")
            return
        self.progress.value = 1.0
        self.progress.bar_style = "success"
        vps = getattr(res, "voxels_per_second", 0.0)
        self._update_channels()
        self.show_compare()
        self.evaluate()
        self.progress_text.value = (f"done in {fmt_duration(getattr(res, 'seconds', 0))} "
                                    f"({vps / 1e6:.2f} Mvoxel/s)")
        if self.ctx.has_viewer and self.ng_box.children:
            self.show_neuroglancer()
        self.ctx.emit("prediction", run=self.run.value)
        self.status.set("prediction written; next: segment instances or look in Neuroglancer", "ok")

    # ---- instances
    def _show_method_help(self) -> None:
        """The chosen method's one line for learners, under the dropdown."""
        from workbench.segmentation import SegmentMethod

        method = SegmentMethod.parse(self.seg_method.value)
        self.seg_method_help.value = f"<small><b>{method.value}</b>: {html.escape(method.describe())}</small>"

    def segment(self) -> Path:
        """Instances from the prediction (watershed on boundaries or connected components)."""
        from workbench.segmentation import SegmentOptions, segment_prediction

        pred = self.pred_path()
        if not pred.exists():
            raise WorkbenchError("predict the volume first", pred)
        self.status.set("segmenting ...", "busy")
        merge = float(self.seg_merge.value)
        options = SegmentOptions(method=self.seg_method.value, channel=int(self.seg_channel.value or 0),
                                 threshold=float(self.seg_threshold.value), min_size=int(self.seg_min_size.value),
                                 merge_threshold=merge if merge > 0 and self.seg_method.value == "watershed" else None,
                                 overwrite=True)
        out = segment_prediction(pred, self.seg_path(), options)
        self.show_compare()
        self.objects.refresh()
        self.evaluate()
        if self.ng_box.children:
            self.show_neuroglancer()
        self.ctx.emit("prediction", run=self.run.value)
        self.status.set(f"instances written to {out.name}", "ok")
        return out

    # ---- comparing
    def _views(self):
        from widgets.slice_view import SliceView
        from workbench.io import open_volume

        p = self.project
        raw = p.raw
        views = [("raw", SliceView(raw, size=self.size, title="raw"))]
        pred = self.pred_path() if self.run.value else None
        if pred is not None and pred.exists():
            cmap = prediction_class_map(pred)
            colors = {i + 1: c for i, c in enumerate(prediction_colors(self._channel_names(), p.classes))}
            views.append(("prediction", SliceView(raw, overlay=lambda z: label_rgba(np.asarray(cmap[z]), colors, 200),
                                                  size=self.size, title="prediction")))
        seg = self.seg_path() if self.run.value else None
        if seg is not None and seg.exists():
            segv = open_volume(str(seg))
            views.append(("instances", SliceView(raw, overlay=lambda z: instance_rgba(segv[z:z + 1][0], 170),
                                                 size=self.size, title="instances")))
        truth = p.truth
        if truth is not None:
            colors = class_colors(p.classes)
            views.append(("ground truth", SliceView(raw, overlay=lambda z: label_rgba(truth[z:z + 1][0], colors, 200),
                                                    size=self.size, title="ground truth")))
        return views

    def show_compare(self) -> None:
        """Raw, prediction, instances and ground truth side by side (same slice)."""
        self.views = self._views()
        for _, v in self.views:
            v.set_slice(self.z.value)
        self.compare_box.children = [styled(v.widget, f"wb-compare-{n.replace(' ', '-')}") for n, v in self.views]

    def _set_slice(self, z: int) -> None:
        for _, v in self.views:
            v.set_slice(z)

    def evaluate(self) -> dict:
        """Scores against the ground truth (classes; instances when both exist); {} without truth."""
        from workbench.metrics import evaluate_run

        res = evaluate_run(self.project, self.run.value) if self.run.value else {}
        if not res:
            self.metrics.value = ("" if self.project.truth is not None
                                  else "<i>no ground truth in this project: no scores</i>")
            return {}
        self.metrics.value = self._metrics_html(res)
        return res

    def _metrics_html(self, res: dict) -> str:
        names = {str(c.id): c.name for c in self.project.classes}
        sem = res["classes"]
        rows = [f"<tr><td>pixel error</td><td class='wb-metric-pixel-error'>{sem.get('pixel_error', float('nan')):.4f}</td></tr>",
                f"<tr><td>mean IoU</td><td class='wb-metric-mean-iou'>{sem.get('mean_iou', float('nan')):.3f}</td></tr>"]
        for cid, v in sem.get("classes", {}).items():
            rows.append(f"<tr><td>{html.escape(names.get(cid, cid))}: IoU / Dice</td>"
                        f"<td>{v.get('iou', float('nan')):.3f} / {v.get('dice', float('nan')):.3f}</td></tr>")
        inst = res.get("instances")
        if inst:
            for k, label in (("are", "adapted Rand error"), ("voi_split", "VOI split"), ("voi_merge", "VOI merge"),
                             ("ap@0.5", "AP@0.5")):
                if k in inst:
                    rows.append(f"<tr><td>{label}</td><td>{inst[k]:.3f}</td></tr>")
        return ("<b>Scores against the ground truth</b><table class='wb-metrics-table'>" + "".join(rows) + "</table>")

    # ---- Neuroglancer
    def _objects_viewer(self):
        """The viewer, showing the segmentation (opened here on the first object picked)."""
        if not self.ng_box.children:
            self.show_neuroglancer()
        return self.ctx.viewer()

    def show_neuroglancer(self) -> None:
        from widgets.neuroglancer import NeuroglancerFrame
        from workbench.inference import open_prediction
        from workbench.io import open_volume

        p = self.project
        viewer = self.ctx.viewer()
        viewer.show_label_store(p.annotations, classes=p.classes)
        pred = self.pred_path() if self.run.value else None
        if pred is not None and pred.exists():
            names = self._channel_names()
            viewer.set_probabilities(open_prediction(pred), names=names or None,
                                     colors=prediction_colors(names, p.classes) if names else None)
            viewer.set_prediction_uncertainty(pred)  # hidden layer, when predicted with an uncertainty
            if names:  # the most likely class, named in Neuroglancer's segment list
                viewer.set_class_map(prediction_class_map(pred), names, prediction_colors(names, p.classes))
        if self.run.value and self.seg_path().exists():
            viewer.set_segmentation(open_volume(str(self.seg_path())), channel_names=self._channel_names() or None,
                                    prediction=open_prediction(pred) if pred is not None and pred.exists() else None)
        self.ng_box.children = [NeuroglancerFrame(viewer, height=520).widget]

    # ---- export
    def export(self, what: str) -> Path:
        """Write the class map as OME-Zarr or TIFF, or the model, to ``<project>/exports``; returns the path."""
        from workbench.exports import export_classes, export_model

        run = self._run_info()
        out_dir = self.project.root / "exports"
        out_dir.mkdir(exist_ok=True)
        names = {"zarr": f"{run.id}-classes.ome.zarr", "tiff": f"{run.id}-classes.tif"}
        if what == "model":
            path = export_model(run.path, out_dir)
        elif what in names:
            path = export_classes(self.pred_path(run.id), out_dir / names[what], voxel_size=self.project.voxel_size)
        else:
            raise WorkbenchError(f"unknown export {what!r}")
        self.exports.value = f"<small>exported <code class='wb-export-path'>{html.escape(str(path))}</code></small>"
        self.status.set(f"exported {path.name}", "ok")
        return path

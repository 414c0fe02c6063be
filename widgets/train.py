"""Step 4, train: start/stop, progress with ETA, live loss and validation curves, live prediction."""

from __future__ import annotations

import html
import math
import threading
import time

import ipywidgets as W
import numpy as np

from widgets._common import StatusLine, Ticker, action_button, fmt_duration, styled
from widgets.context import AppContext
from widgets.pretrain import WarmUpAction
from workbench.classes import class_rgba, prediction_colors
from workbench.errors import WorkbenchError
from workbench.inference import predict_slice
from workbench.training import load_run
from workbench.training.hooks import OnCheckpoint
from workbench.training.pretext import is_pretext_run

#: the app checkpoints often so the live prediction and a resumed session see a recent model
LIVE_CHECKPOINT_SECONDS = 5.0
LIVE_PREDICTION_SECONDS = 4.0
DURATIONS = (("30 s", 0.5), ("1 min", 1.0), ("2 min", 2.0), ("5 min", 5.0), ("15 min", 15.0), ("1 h", 60.0))


class TrainPanel:
    """Train the chosen architecture on the project's labels in the background."""

    step = "train"

    def __init__(self, ctx: AppContext, live: bool = True):
        self.ctx = ctx
        self.live = live
        self.status = StatusLine(self.step)
        self.trainer = None
        self.run_dir = None
        self.total_iterations: int | None = None
        self.minutes: float | None = None
        self.iteration = 0
        self.started: float | None = None
        self.history: list[dict] = []
        self._shown = 0
        self._lock = threading.Lock()
        self._pred_busy = False
        self._last_pred = 0.0
        #: (iteration, wall time) of the newest checkpoint the trainer announced; None: load what is on disk
        self._model_saved: tuple[int, float] | None = None
        self._model_loaded: tuple[int, float] | None = None
        self.predictor = None
        self.live_probs: np.ndarray | None = None

        minutes = float(ctx.project.state.get("train_minutes", 1.0))
        self.duration = styled(W.Dropdown(options=DURATIONS, description="train for",
                                          value=minutes if minutes in dict(DURATIONS).values() else 1.0),
                               "wb-train-duration")
        self.duration.observe(lambda ch: ctx.project.state.__setitem__("train_minutes", float(ch["new"])), "value")
        self.continue_last = styled(W.Checkbox(value=bool(ctx.project.state.get("continue_last", True)),
                                               description="continue from the last model", indent=False),
                                    "wb-train-continue")
        self.continue_last.observe(lambda ch: ctx.project.state.__setitem__("continue_last", bool(ch["new"])), "value")
        self.start_btn = action_button("train", "Train", "success", icon="play")
        self.start_btn.on_click(self.status.guard(lambda _: self.start()))
        self.stop_btn = action_button("stop", "Stop", "danger", icon="stop")
        self.stop_btn.disabled = True
        self.stop_btn.on_click(self.status.guard(lambda _: self.stop()))
        self.progress = styled(W.FloatProgress(value=0, min=0, max=1, description="progress",
                                               layout=W.Layout(width="520px")), "wb-train-progress")
        self.progress_text = styled(W.HTML("not started"), "wb-train-eta")
        self.summary = styled(W.HTML(), "wb-train-summary")
        self.device = styled(W.HTML(), "wb-train-device")

        self.curves_widget = self._build_curves()
        self.z = styled(W.IntSlider(description="slice z", continuous_update=False), "wb-train-slice")
        self.z.observe(lambda ch: self._set_slice(ch["new"]), "value")
        self.pred_box = W.VBox()
        self.pred_note = styled(W.HTML("<small>the prediction appears here a few seconds into training</small>"),
                                "wb-train-pred-note")
        self.view = None

        header = W.HTML("<h3>4 · Train</h3><p>Train the chosen model on your scribbles. Training runs in the "
                        "background: keep annotating meanwhile, the prediction of the slice below refreshes "
                        "every few seconds. Stop any time; the model so far is kept.</p>")
        self.warm_up = WarmUpAction(self)
        left = W.VBox([self.summary, self.device, W.HBox([self.duration, self.start_btn, self.stop_btn]), self.continue_last,
                       self.warm_up.widget, self.progress, self.progress_text, self.curves_widget])
        right = W.VBox([self.pred_box, self.z, self.pred_note])
        self.widget = styled(W.VBox([header, W.HBox([left, right]), self.status.widget]),
                             "wb-step", f"wb-step-{self.step}")
        self.ticker = Ticker(1.0, self.poll)
        self.ticker.start()  # runs for the life of the page (no-op outside a kernel)
        for ev in ("labels", "arch", "classes"):
            ctx.on(ev, lambda **_: self.refresh_summary())
        ctx.on("project", lambda **_: self.rebuild())
        self.rebuild()

    def _build_curves(self):
        """The training and validation loss curves (HoloViews, fed through two pipes) as a widget."""
        from holoviews import streams

        from widgets._hv import as_widget, setup

        hv = setup()
        self._loss_pipe = streams.Pipe(data=np.zeros((0, 2)))
        self._val_pipe = streams.Pipe(data=np.zeros((0, 2)))
        curve_opts = dict(width=520, height=260, tools=[], toolbar=None, show_grid=True)
        loss = hv.DynamicMap(lambda data: hv.Curve(data, "iteration", "loss", label="training loss"),
                             streams=[self._loss_pipe])
        val = hv.DynamicMap(lambda data: hv.Curve(data, "iteration", "loss", label="validation loss"),
                            streams=[self._val_pipe])
        self.curves = (loss * val).opts(hv.opts.Curve(**curve_opts, framewise=True),
                                        hv.opts.Overlay(legend_position="top_right", width=520, height=260,
                                                        toolbar=None))
        return styled(as_widget(self.curves, 520, 260), "wb-train-curves")

    # ---- state shown
    def rebuild(self) -> None:
        from widgets.slice_view import SliceView

        if self.running:
            self.stop(wait=True)
        p = self.ctx.project
        self.view = SliceView(p.raw, overlay=self._overlay, size=400)
        self.z.max = p.shape[0] - 1
        self.z.value = int(p.state.get("annotate_z", self.view.z))
        self.view.set_slice(self.z.value)
        self.pred_box.children = [styled(self.view.widget, "wb-train-pred")]
        self.live_probs = None
        self.predictor = None
        self._load_last_run()
        self.refresh_summary()

    def _load_last_run(self) -> None:
        """Show the curves of the newest run (a reloaded page finds where it was)."""
        runs = [r for r in self.ctx.project.runs() if r.metrics]
        self.history = list(runs[-1].metrics) if runs else []
        self.run_dir = runs[-1].path if runs else None
        self._shown = -1
        self._curves_resent = False  # the first tick sends them again, once the page shows the plot
        self._update_curves()
        if runs:
            last = runs[-1].metrics[-1]
            self.progress.value = 1.0
            self.progress_text.value = (f"last run <code>{runs[-1].id}</code>: {last.get('iteration', '?')} "
                                        f"iterations, loss {last.get('loss', float('nan')):.4f}")
            if runs[-1].checkpoint is not None:
                threading.Thread(target=self._predict_now, daemon=True).start()
        else:
            self.progress.value = 0
            self.progress_text.value = "not started"

    def _arch(self):
        from workbench.models import get_architecture

        return get_architecture(self.ctx.project.state.get("arch", "unet2d"))

    def refresh_summary(self) -> None:
        p = self.ctx.project
        try:
            info = self._arch()
            arch = f"<b>{html.escape(info.title)}</b> (<code>{info.name}</code>, {info.dims}D)"
        except WorkbenchError as exc:
            arch = html.escape(str(exc))
        counts = p.annotations.counts()
        labels = ", ".join(f"{html.escape(c.name)} {counts.get(c.id, 0)}" for c in p.classes)
        self.summary.value = f"<p>model: {arch}<br>labelled voxels: {labels}</p>"
        try:
            from workbench.device import describe_device, pick_device

            self.device.value = f"<p>device: <b class='wb-device'>{html.escape(describe_device(pick_device('auto')))}</b></p>"
        except Exception as exc:
            self.device.value = f"<p>device: {html.escape(str(exc))}</p>"

    # ---- training
    @property
    def running(self) -> bool:
        return self.trainer is not None and self.trainer.running

    def make_config(self, minutes: float | None = None, iterations: int | None = None, labels=None):
        """The TrainConfig for the project's choices (architecture, advanced settings, classes); with ``labels``
        and no advanced settings applied, the recipe chosen from them (``self.recipe`` says which)."""
        from workbench.training.config import AugmentConfig, TrainConfig

        p = self.ctx.project
        st = dict(p.state.get("train", {}))
        cfg = TrainConfig(
            arch=p.state.get("arch", "unet2d"),
            arch_options=dict(p.state.get("arch_options") or {}),
            target="semantic",
            classes=[c.name for c in p.classes],
            batch_size=st.get("batch_size"),
            lr=float(st.get("lr", 1e-3)),
            patch_shape=st.get("patch_shape"),
            precision=st.get("precision", "fp32"),
            crf_weight=float(st.get("crf_weight", 0.0)),  # the advanced setting (off unless chosen)
            iterations=iterations if iterations is not None else (None if minutes else 500),
            minutes=minutes,
            val_fraction=0.25,
            val_every=20,
            log_every=5,
            checkpoint_seconds=LIVE_CHECKPOINT_SECONDS,
            init=p.state.get("init_model") or None,  # a model file or a warm-up to start from
        )
        self.recipe = None
        if labels is not None and not st:  # the architecture's defaults: the recipe may change them
            from workbench.training.recipe import choose_recipe, label_stats

            defaults = self._arch().defaults
            cfg.arch_options = {k: v for k, v in cfg.arch_options.items() if defaults.get(k) != v}
            self.recipe = choose_recipe(cfg, label_stats(labels), explicit={"val_fraction"})
            self.recipe.apply(cfg)
        if self.continue_last.value:  # new strokes: warm start from the newest model that fits, retrain in seconds
            cfg.init = self.last_model(cfg, newer_than=cfg.init) or cfg.init
        if not st.get("augment", True):
            cfg.augment = AugmentConfig.none()
        info = self._arch()
        cfg.arch_options = {k: v for k, v in cfg.arch_options.items() if k in info.defaults}
        return cfg

    def last_model(self, cfg, newer_than: str | None = None) -> str | None:
        """The newest trained run of the same architecture, options and classes as ``cfg`` (None: there is none,
        or it is older than the model file ``newer_than`` the user chose to start from)."""
        from pathlib import Path

        since = Path(newer_than).stat().st_mtime if newer_than and Path(newer_than).exists() else None
        for run in reversed(self.ctx.project.runs()):
            if since is not None and run.created <= since:
                return None
            c = run.config or {}
            if run.checkpoint is None or c.get("pretext") or c.get("arch") != cfg.arch:
                continue
            if dict(c.get("arch_options") or {}) == dict(cfg.arch_options) and list(c.get("classes") or []) == list(cfg.classes):
                return str(run.path)
        return None

    def start(self, minutes: float | None = None, iterations: int | None = None) -> None:
        """Start a new run in the background (``minutes`` default: the duration chosen)."""
        from workbench.training import Trainer

        if self.running:
            raise WorkbenchError("training is already running; stop it first")
        p = self.ctx.project
        if minutes is None and iterations is None:
            minutes = float(self.duration.value)
        labels = p.annotations.read()
        cfg = self.make_config(minutes=minutes, iterations=iterations, labels=labels)
        run_dir = p.new_run_dir(cfg.arch)
        try:
            try:
                trainer = Trainer(cfg, p.raw, labels, run_dir, progress=self._on_progress,
                                  on_metrics=self._on_metrics, hooks=[OnCheckpoint(self._on_checkpoint)])
            except WorkbenchError:
                # too few strokes to hold a quarter out for validation: train on all of them
                cfg.val_fraction = 0.0
                trainer = Trainer(cfg, p.raw, labels, run_dir, progress=self._on_progress,
                                  on_metrics=self._on_metrics, hooks=[OnCheckpoint(self._on_checkpoint)])
        except BaseException:
            if run_dir.exists() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise
        p.record_run_inputs(run_dir, cfg.init, self.recipe.summary() if self.recipe is not None else None)
        self.watch(trainer, run_dir, cfg, what=f"training {cfg.arch}"
                   + (f" ({self.recipe.summary()})" if self.recipe is not None else ""))

    def watch(self, trainer, run_dir, cfg, what: str) -> None:
        """Start ``trainer`` in the background and show its progress, curves and stop (training or a warm-up)."""
        p = self.ctx.project
        with self._lock:
            self.history = []
            self._shown = -1
        self.total_iterations = cfg.iterations
        self.minutes = cfg.minutes
        self.iteration = 0
        self.run_dir = run_dir
        self.started = time.monotonic()
        self._model_saved = None
        self.trainer = trainer.start()
        p.state.update(last_run=run_dir.name)
        self.start_btn.disabled = True
        self.stop_btn.disabled = False
        self.progress.value = 0
        self._update_curves()
        self.status.set(f"{what} in the background (run {run_dir.name})", "busy")
        self.ctx.emit("run", run=run_dir.name, state="started")


    def stop(self, wait: bool = False, timeout: float = 60.0) -> None:
        """Ask the training to stop (it writes a last checkpoint); ``wait`` up to ``timeout`` s for it."""
        if self.trainer is not None:
            self.trainer.stop()
            if wait:
                self._join(timeout)
        self.status.set("stopping ...", "busy")

    def wait(self, timeout: float | None = None) -> None:
        """Block until the run ends (scripts and tests); then refresh the panel."""
        self._join(timeout)
        self.poll()

    def _join(self, timeout: float | None) -> None:
        if self.trainer is None:
            return
        try:
            self.trainer.wait(timeout)
        except Exception:  # the error is kept in trainer.error and shown by poll()
            pass

    def _on_progress(self, iteration, total) -> None:
        self.iteration = int(iteration)

    def _on_checkpoint(self, path, iteration: int) -> None:
        """The trainer wrote a checkpoint (training thread): the live prediction reloads the model."""
        self._model_saved = (int(iteration), time.time())

    def _on_metrics(self, record: dict) -> None:
        with self._lock:
            self.history.append(dict(record))

    # ---- refreshing (kernel event loop, every second)
    def poll(self) -> None:
        """Update the progress bar, ETA, curves and (every few seconds) the live prediction."""
        if self._pred_ready:
            self._pred_ready = False
            if self.view is not None:
                self.view.refresh()
        if not self._curves_resent:
            # curves sent before the page drew the plot are lost: send them once more from the first tick on
            self._curves_resent = True
            self._shown = -1
            self._update_curves()
        if self.trainer is None:
            return
        now = time.monotonic()
        elapsed = now - (self.started or now)
        frac, eta = self._fraction(elapsed)
        running = self.trainer.running
        if running:
            self.progress.value = min(frac, 0.999)
            rate = self.iteration / elapsed if elapsed > 0 else 0.0
            self.progress_text.value = (f"iteration <b>{self.iteration}</b> · {rate:.1f} it/s · "
                                        f"elapsed {fmt_duration(elapsed)} · ETA {fmt_duration(eta)}")
        self._update_curves()
        if self.live and now - self._last_pred > LIVE_PREDICTION_SECONDS and not self._pred_busy:
            self._last_pred = now
            threading.Thread(target=self._predict_now, daemon=True).start()
        if not running and self.start_btn.disabled:
            self._finished()

    def _fraction(self, elapsed: float) -> tuple[float, float]:
        """(fraction done, seconds left) of the run: iterations or the time budget, whichever is further."""
        from workbench.progress import eta_seconds, fraction_done

        budget = self.minutes * 60 if self.minutes else None
        f = fraction_done(self.iteration, self.total_iterations, elapsed, budget)
        eta = eta_seconds(f, 1.0, elapsed)
        if budget:  # never longer than the time left
            eta = budget - elapsed if math.isnan(eta) else min(eta, max(0.0, budget - elapsed))
        return f, eta

    def _finished(self) -> None:
        # the other steps learn of the run before the page says "done": a user (or a script) who clicks
        # Predict at once must get this run, not the newest one another page of the project finished
        self.ctx.emit("run", run=self.run_dir.name if self.run_dir else None, state="finished")
        self.start_btn.disabled = False
        self.stop_btn.disabled = True
        err = self.trainer.error if self.trainer is not None else None
        if err is not None:
            self.status.error(err)
            self.progress.bar_style = "danger"
        else:
            self.progress.value = 1.0
            self.progress.bar_style = "success"
            # the status first: widget updates reach the page in order, so when it reads "done" the status
            # already says what happened
            if self.run_dir is not None and is_pretext_run(self.run_dir):
                self.status.set("warm-up finished; Train now fine-tunes it on your scribbles", "ok")
            else:
                self.status.set("training finished; the model is saved. Next: Results", "ok")
            last = self.history[-1] if self.history else {}
            self.progress_text.value = (f"done: {last.get('iteration', self.iteration)} iterations, "
                                        f"loss {last.get('loss', float('nan')):.4f} · run "
                                        f"<code>{self.run_dir.name if self.run_dir else '?'}</code>")
        self._last_pred = 0.0
        threading.Thread(target=self._predict_now, daemon=True).start()

    def _update_curves(self) -> None:
        with self._lock:
            hist = list(self.history)
        if len(hist) == self._shown:
            return
        self._shown = len(hist)
        tr = np.array([(h["iteration"], h["loss"]) for h in hist if "loss" in h], float).reshape(-1, 2)
        va = np.array([(h["iteration"], h["val_loss"]) for h in hist if "val_loss" in h], float).reshape(-1, 2)
        self._loss_pipe.send(tr)
        self._val_pipe.send(va)

    # ---- live prediction
    def _overlay(self, z: int):
        if self.live_probs is None or self._pred_z != z:
            return None
        names = list(getattr(self.predictor, "channel_names", []) or [])
        colors = prediction_colors(names or [c.name for c in self.ctx.project.classes], self.ctx.project.classes)
        return class_rgba(self.live_probs, colors)

    _pred_z = -1
    _pred_ready = False
    _curves_resent = False

    def _set_slice(self, z: int) -> None:
        if self.view is not None:
            self.view.set_slice(z)
            self._last_pred = 0.0
            if not self.running and self.run_dir is not None:
                threading.Thread(target=self._predict_now, daemon=True).start()

    def _predict_now(self) -> None:
        """Predict the shown slice with the newest checkpoint (runs in a worker thread)."""
        if self._pred_busy or self.run_dir is None or is_pretext_run(self.run_dir):
            return  # a warm-up reconstructs the image: there is no class map to show
        self._pred_busy = True
        try:
            saved = self._model_saved
            if self.predictor is None or saved != self._model_loaded:
                if saved is None and not (self.run_dir / "checkpoint.pt").exists():
                    return  # no model yet: the trainer announces its first checkpoint
                self.predictor = load_run(self.run_dir, device="cpu")
                self._model_loaded = saved
            z = int(self.z.value)
            probs = predict_slice(self.predictor, self.ctx.project.raw, z)
            self.live_probs, self._pred_z = probs, z
            self.pred_note.value = (f"<small class='wb-train-pred-iter'>prediction of slice {z} by the model of "
                                    f"iteration {self.predictor.iteration}</small>")
            self._pred_ready = True  # shown by poll() on the kernel's event loop (Bokeh is not thread-safe)
        except Exception as exc:  # the live view is best effort; say why it is empty
            self.pred_note.value = f"<small>live prediction unavailable: {html.escape(str(exc))}</small>"
        finally:
            self._pred_busy = False

"""The Train step's "Warm up on this volume (no labels)": a self-supervised warm-up run in the background with
the training's progress, curves and stop; the next training starts from it (``workbench.training.pretext``)."""

from __future__ import annotations

import ipywidgets as W

from widgets._common import action_button, styled
from workbench.errors import WorkbenchError


class WarmUpAction:
    """A button on a :class:`widgets.train.TrainPanel` that warms its architecture up on the project's raw volume."""

    def __init__(self, panel):
        self.panel = panel
        self.button = action_button("warm-up", "Warm up on this volume (no labels)", icon="magic",
                                    tooltip="masked-image reconstruction on the raw volume, for the chosen duration; "
                                            "the next training fine-tunes the result")
        self.button.on_click(panel.status.guard(lambda _: self.start()))
        self.widget = styled(W.HBox([self.button]), "wb-train-warmup")

    def start(self, minutes: float | None = None, iterations: int | None = None) -> None:
        """Start the warm-up in the background (``minutes`` default: the duration chosen)."""
        from workbench.training.pretext import PretextConfig, PretextTrainer

        panel = self.panel
        if panel.running:
            raise WorkbenchError("training is already running; stop it first")
        p = panel.ctx.project
        if minutes is None and iterations is None:
            minutes = float(panel.duration.value)
        cfg = panel.make_config(minutes=minutes, iterations=iterations)
        cfg.init, cfg.val_fraction, cfg.classes = None, 0.0, []
        cfg.pretext = PretextConfig().to_dict()
        run_dir = p.new_run_dir(f"{cfg.arch}-warmup")
        try:
            trainer = PretextTrainer(cfg, p.raw, run_dir, progress=panel._on_progress, on_metrics=panel._on_metrics)
        except BaseException:
            if run_dir.exists() and not any(run_dir.iterdir()):
                run_dir.rmdir()
            raise
        p.state["init_model"] = str(run_dir)  # the next training fine-tunes it
        panel.watch(trainer, run_dir, cfg, what=f"warming {cfg.arch} up on the volume (no labels)")
        panel.ctx.emit("arch")

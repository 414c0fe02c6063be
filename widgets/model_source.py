"""The Architecture step's "Start from a model file": a run folder, a BioImage Model Zoo zip, a TorchScript file
or a checkpoint under the data root (or a run of this project); the next training starts from it."""

from __future__ import annotations

import html
from pathlib import Path

import ipywidgets as W

from widgets._common import action_button, styled
from widgets.context import AppContext
from workbench.errors import WorkbenchError

#: file endings offered as model files
MODEL_SUFFIXES = (".zip", ".pt", ".pth", ".onnx")
#: at most this many candidates are listed (the data root may be large)
MAX_LISTED = 200


class ModelFilePicker:
    """Pick the model the next training starts from (saved as the project's ``init_model``)."""

    def __init__(self, ctx: AppContext, status):
        self.ctx = ctx
        self.status = status
        self.choices = styled(W.Select(options=[], rows=6, layout=W.Layout(width="520px")), "wb-arch-init-files")
        self.choices.observe(lambda ch: setattr(self.path, "value", ch["new"] or self.path.value), "value")
        self.path = styled(W.Text(placeholder="a run folder, .zip, TorchScript .pt or checkpoint (under the data root)",
                                  layout=W.Layout(width="520px")), "wb-arch-init-path")
        self.use_btn = action_button("init", "Start from this model", icon="upload")
        self.use_btn.on_click(status.guard(lambda _: self.use(self.path.value)))
        self.clear_btn = action_button("init-clear", "Random weights")
        self.clear_btn.on_click(status.guard(lambda _: self.clear()))
        self.note = styled(W.HTML(), "wb-arch-init-note")
        self.widget = W.VBox([
            W.HTML("<p>Fine-tune a model you have instead of starting from random weights: a warm-up or an earlier "
                   "run, a BioImage Model Zoo zip, a TorchScript file or a checkpoint. Its architecture is "
                   "taken over; an output head for another number of classes is trained afresh.</p>"),
            self.choices, self.path, W.HBox([self.use_btn, self.clear_btn]), self.note])
        self.refresh()

    def _roots(self) -> list[Path]:
        roots = [Path(self.ctx.project.runs_path).resolve()]
        if self.ctx.data_root is not None:
            roots.append(Path(self.ctx.data_root).resolve())
        return roots

    def candidates(self) -> list[str]:
        """Run folders with a checkpoint (this project's first) and model files under the data root."""
        found: list[str] = []
        for root in self._roots():
            if not root.is_dir():
                continue
            for p in sorted(root.rglob("*")):
                if len(found) >= MAX_LISTED:
                    return found
                if any(part.startswith(".") for part in p.relative_to(root).parts) or len(p.relative_to(root).parts) > 4:
                    continue
                if p.is_dir() and (p / "config.json").exists() and (p / "checkpoint.pt").exists():
                    found.append(str(p))
                elif p.is_file() and p.suffix.lower() in MODEL_SUFFIXES and p.name != "checkpoint.pt" \
                        and not p.name.startswith("last"):
                    found.append(str(p))
        return found

    def resolve(self, text: str) -> Path:
        """``text`` (absolute, or relative to the data root) inside the data root or the project's runs."""
        if not text.strip():
            raise WorkbenchError("choose a model file first")
        p = Path(text.strip()).expanduser()
        roots = self._roots()
        if not p.is_absolute():
            p = (roots[-1] / p) if self.ctx.data_root is not None else (roots[0] / p)
        p = p.resolve()
        if not any(p == r or r in p.parents for r in roots):
            raise WorkbenchError("outside the data root and the project's runs; choose something inside them", text)
        return p

    def use(self, text: str) -> None:
        """Check the model (a one-line error when it cannot be used) and make it the start of the next training."""
        from workbench.models.imports import open_model

        path = self.resolve(text)
        source = open_model(path)
        state = self.ctx.project.state
        if source.arch is not None:
            state.update(arch=source.arch, arch_options=dict(source.arch_options))
        state["init_model"] = str(path)
        self.refresh()
        self.ctx.emit("arch")
        self.status.set(f"the next training starts from {path.name}", "ok")

    def clear(self) -> None:
        self.ctx.project.state["init_model"] = None
        self.refresh()
        self.ctx.emit("arch")
        self.status.set("the next training starts from random weights", "ok")

    def refresh(self) -> None:
        self.choices.options = self.candidates()
        init = self.ctx.project.state.get("init_model")
        self.note.value = (f"<p class='wb-arch-init-current'>next training starts from <code>{html.escape(str(init))}"
                           "</code></p>" if init else "<p class='wb-arch-init-current'>next training starts from "
                           "random weights</p>")

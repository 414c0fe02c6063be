"""Step 2, architecture: one card per registered model, with what it costs on this machine."""

from __future__ import annotations

import html
import threading

import ipywidgets as W

from widgets._common import StatusLine, action_button, fmt_count, styled
from widgets.context import AppContext
from widgets.model_source import ModelFilePicker
from workbench.errors import WorkbenchError

DEFAULT_ARCH = "unet2d"

#: training settings offered under "advanced", with their defaults (TrainConfig field names)
TRAIN_DEFAULTS = {"batch_size": None, "lr": 1e-3, "patch_shape": None, "target": "semantic", "augment": True,
                  "precision": "auto", "crf_weight": 0.0}
#: the precisions offered (workbench.precision.Precision; fp16 is for CUDA GPUs only, so not offered here)
PRECISIONS = ("auto", "fp32", "bf16")


def measure_speed(info, repeats: int = 2) -> dict:
    """``{"forward_s", "train_patches_per_s", "gflop"}`` of ``info``'s model on its default patch here ({} for
    a model that is not a network); see :func:`workbench.models.profile_model`."""
    from workbench.models import profile_model

    if not info.is_network:
        return {}
    prof = profile_model(info, repeats=repeats)
    return {"forward_s": prof.forward_s, "train_patches_per_s": prof.train_patches_per_s, "gflop": prof.gflop}


class ArchitecturePanel:
    """Pick the network (or random forest) to train; advanced options are folded away."""

    step = "architecture"

    def __init__(self, ctx: AppContext, measure: bool = True):
        from workbench.device import describe_device, pick_device
        from workbench.models import list_architectures

        self.ctx = ctx
        self.status = StatusLine(self.step)
        self.infos = {a.name: a for a in list_architectures()}
        try:
            self.device_text = describe_device(pick_device("auto"))
        except Exception as exc:
            self.device_text = f"unknown ({exc})"
        self.speeds: dict[str, dict] = {}
        self.cards: dict[str, W.Widget] = {}
        self.card_html: dict[str, W.HTML] = {}
        self.buttons: dict[str, W.Button] = {}
        for name, info in self.infos.items():
            btn = styled(action_button("choose", "Choose", tooltip=f"train a {info.title}"), f"wb-arch-{name}")
            btn.on_click(self.status.guard(lambda _, n=name: self.choose(n)))
            self.buttons[name] = btn
            self.card_html[name] = W.HTML(self._card_text(info))
            self.cards[name] = styled(W.VBox([self.card_html[name], btn],
                                             layout=W.Layout(width="330px", padding="8px", margin="4px",
                                                             border="1px solid #ccc")),
                                      "wb-arch-card", f"wb-arch-card-{name}")
        self.grid = W.GridBox(list(self.cards.values()),
                              layout=W.Layout(grid_template_columns="repeat(3, 345px)"))
        self.chosen = styled(W.HTML(), "wb-arch-chosen")

        # advanced: architecture options and training settings
        self.options_box = W.VBox()
        self.option_widgets: dict[str, W.Widget] = {}
        self.batch = W.BoundedIntText(value=4, min=1, max=64, description="batch size")
        self.lr = W.BoundedFloatText(value=1e-3, min=1e-6, max=1.0, step=1e-4, description="learning rate")
        self.patch = W.Text(value="", placeholder="default", description="patch z,y,x")
        self.augment = W.Checkbox(value=True, description="augmentation (flips, rotations, noise, ...)")
        self.crf = styled(W.BoundedFloatText(
            value=0.0, min=0.0, max=100.0, step=0.25, description="smoothness",
            tooltip="weight of the edge-aware smoothness loss over the unlabelled pixels (neighbours that look "
                    "alike learn the same class; 0 off)"), "wb-train-crf")
        self.precision = styled(W.Dropdown(
            options=PRECISIONS, value="auto", description="precision",
            tooltip="auto (default): bf16 where the hardware has it and a quick measurement finds it faster, "
                    "else fp32; bf16: about 2x faster on CPUs with AMX and recent GPUs, slower on some AVX512-BF16 CPUs, "
                    "weights and losses stay fp32"), "wb-train-precision")
        self.apply_btn = action_button("apply", "Apply settings")
        self.apply_btn.on_click(self.status.guard(lambda _: self.apply_advanced()))
        self.reset_btn = action_button("defaults", "Back to defaults")
        self.reset_btn.on_click(self.status.guard(lambda _: self.reset_defaults()))
        adv = W.VBox([W.HTML("<b>Model options</b>"), self.options_box, W.HTML("<b>Training</b>"),
                      self.batch, self.lr, self.patch, self.augment, self.crf, self.precision,
                      W.HBox([self.apply_btn, self.reset_btn])])
        self.model_file = ModelFilePicker(ctx, self.status)
        self.advanced = styled(W.Accordion(children=[adv, self.model_file.widget]), "wb-arch-advanced")
        self.advanced.set_title(0, "Advanced options")
        self.advanced.set_title(1, "Start from a model file")
        self.advanced.selected_index = None

        header = W.HTML(f"<h3>2 · Architecture</h3><p>Choose the model to train. A 2D U-Net is a good "
                        f"start for anisotropic serial-section EM; 3D models use context across slices. "
                        f"Speeds are for <b>{html.escape(self.device_text)}</b>.</p>")
        self.widget = styled(W.VBox([header, self.grid, self.chosen, self.advanced, self.status.widget]),
                             "wb-step", f"wb-step-{self.step}")
        ctx.on("project", lambda **_: (self.refresh(), self.model_file.refresh()))
        self.refresh()
        if measure:
            threading.Thread(target=self._measure_all, daemon=True, name="workbench-arch-speed").start()

    # ---- cards
    def _card_text(self, info) -> str:
        try:
            n_params = info.parameter_count()
            params = f"{fmt_count(n_params)} parameters" if info.is_network else "no network (trains in seconds)"
        except Exception:
            params = "?"
        rf = " × ".join(str(v) for v in info.receptive_field())
        sp = self.speeds.get(info.name)
        if not info.is_network:
            speed = "fast on any CPU"
        elif sp is None:
            speed = "measuring ..."
        elif "error" in sp:
            speed = "could not measure"
        else:
            speed = (f"≈ {sp['train_patches_per_s']:.1f} training patches/s "
                     f"({sp['gflop']:.1f} GFLOP per {'×'.join(map(str, info.default_patch))} patch)")
        return (f"<div class='wb-arch-text'><b style='font-size:1.1em'>{html.escape(info.title)}</b> "
                f"<code>{info.name}</code> <span class='wb-arch-dims'>{info.dims}D</span>"
                f"<p style='font-size:0.9em;line-height:1.3'>{html.escape(info.description)}</p>"
                f"<small>{params} · receptive field {rf} voxels<br>"
                f"<span class='wb-arch-speed'>{speed}</span><br><i>{html.escape(info.paper)}</i></small></div>")

    def _measure_all(self) -> None:
        for name, info in self.infos.items():
            if not info.is_network:
                continue
            try:
                self.speeds[name] = measure_speed(info)
            except Exception as exc:
                self.speeds[name] = {"error": str(exc)}
            self.card_html[name].value = self._card_text(info)

    # ---- choosing
    @property
    def arch(self) -> str:
        name = self.ctx.project.state.get("arch", DEFAULT_ARCH)
        return name if name in self.infos else DEFAULT_ARCH

    def choose(self, name: str) -> None:
        """Make ``name`` the architecture to train (saved in the project)."""
        from workbench.models import get_architecture

        info = get_architecture(name)  # WorkbenchError listing valid names
        self.ctx.project.state.update(arch=info.name, arch_options=info.defaults)
        if self.ctx.project.state.get("init_model"):  # a model file of another architecture no longer fits
            self.model_file.clear()
        self.refresh()
        self.ctx.emit("arch")
        self.status.set(f"chosen: {info.title} ({info.name}); next, annotate", "ok")

    def refresh(self) -> None:
        name = self.arch
        for n, card in self.cards.items():
            card.layout.border = "3px solid #1976d2" if n == name else "1px solid #ccc"
            self.buttons[n].button_style = "primary" if n == name else ""
            self.buttons[n].description = "Chosen" if n == name else "Choose"
        info = self.infos[name]
        self.chosen.value = f"<p>Chosen: <b>{html.escape(info.title)}</b> (<code>{name}</code>)</p>"
        self._build_options(info)
        train = dict(TRAIN_DEFAULTS, **self.ctx.project.state.get("train", {}))
        self.batch.value = int(train["batch_size"] or info.default_batch)
        self.lr.value = float(train["lr"])
        self.patch.value = "" if not train["patch_shape"] else ", ".join(map(str, train["patch_shape"]))
        self.augment.value = bool(train["augment"])
        self.crf.value = float(train["crf_weight"])
        self.precision.value = str(train["precision"]) if str(train["precision"]) in PRECISIONS else "auto"

    def _build_options(self, info) -> None:
        saved = self.ctx.project.state.get("arch_options") or {}
        opts = info.defaults
        opts.update({k: v for k, v in saved.items() if k in opts})
        self.option_widgets = {}
        for key, val in opts.items():
            if isinstance(val, bool):
                w = W.Checkbox(value=val, description=key)
            elif isinstance(val, int):
                w = W.IntText(value=val, description=key)
            elif isinstance(val, float):
                w = W.FloatText(value=val, description=key)
            elif isinstance(val, str):
                w = W.Text(value=val, description=key)
            else:
                w = W.Text(value=", ".join(map(str, val)) if isinstance(val, (list, tuple)) else str(val),
                           description=key)
                w._wb_list = isinstance(val, (list, tuple))
                w._wb_none = val is None
            self.option_widgets[key] = w
        self.options_box.children = list(self.option_widgets.values())

    def apply_advanced(self) -> None:
        """Save the advanced options (validated by the workbench) in the project."""
        from workbench.models import get_architecture
        from workbench.training.config import TrainConfig

        info = get_architecture(self.arch)
        opts = {}
        for key, w in self.option_widgets.items():
            v = w.value
            if getattr(w, "_wb_list", False):
                v = [float(x) if "." in x else int(x) for x in v.replace(" ", "").split(",") if x]
            elif getattr(w, "_wb_none", False):
                v = None if v.strip() in ("", "None") else v
            opts[key] = v
        info.options(**opts)  # unknown names -> WorkbenchError
        patch = None
        if self.patch.value.strip():
            try:
                patch = [int(v) for v in self.patch.value.replace(" ", "").split(",")]
            except ValueError:
                raise WorkbenchError(f"patch shape must be three integers z, y, x; got {self.patch.value!r}") from None
        TrainConfig(arch=info.name, arch_options=opts, batch_size=self.batch.value, lr=self.lr.value,
                    patch_shape=patch, precision=self.precision.value, crf_weight=self.crf.value).validate()
        train = dict(self.ctx.project.state.get("train", {}))
        batch = None if self.batch.value == info.default_batch else self.batch.value  # follows the architecture
        train.update(batch_size=batch, lr=self.lr.value, patch_shape=patch, augment=self.augment.value,
                     precision=self.precision.value, crf_weight=self.crf.value)
        self.ctx.project.state.update(arch_options=opts, train=train)
        self.ctx.emit("arch")
        self.status.set("settings saved", "ok")

    def reset_defaults(self) -> None:
        info = self.infos[self.arch]
        self.ctx.project.state.update(arch_options=info.defaults, train={})
        self.refresh()
        self.ctx.emit("arch")
        self.status.set("defaults restored", "ok")

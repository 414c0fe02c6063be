"""Step 1, data: the built-in sample, a public dataset, or a file/folder under the data root."""

from __future__ import annotations

import html
import re
from pathlib import Path

import ipywidgets as W

from widgets._common import StatusLine, action_button, display_path, styled
from widgets.context import AppContext
from workbench.errors import WorkbenchError
from workbench.project import Project, ProjectOptions

SOURCES = ("Built-in sample", "Dataset catalog", "File or folder")
#: file endings the browser offers (folders are always listed: PNG stacks, zarr, N5)
READABLE = (".tif", ".tiff", ".png", ".h5", ".hdf5", ".hdf", ".mrc", ".rec", ".map", ".zarr", ".n5")


def _safe_dirname(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "data"


class FileBrowser:
    """Browse the data root and pick a file or folder; it never shows anything outside the root."""

    def __init__(self, root: Path):
        self.root = Path(root).resolve()
        self.cwd = self.root
        self.listing = styled(W.Select(options=[], rows=10, layout=W.Layout(width="420px")), "wb-data-files")
        self.path = styled(W.Text(placeholder="path relative to the data root", layout=W.Layout(width="420px")),
                           "wb-data-path")
        self.where = W.HTML()
        self.listing.observe(self._on_select, "value")
        self.widget = W.VBox([self.where, self.listing, self.path])
        self.listing.layout.height = "200px"
        self.refresh()

    def inside(self, path: Path) -> Path:
        """``path`` (relative to the root or absolute) resolved; raises if it leaves the root."""
        p = Path(path)
        p = (self.root / p if not p.is_absolute() else p).resolve()
        if p != self.root and self.root not in p.parents:
            raise WorkbenchError("outside the data root; choose something inside it", path)
        try:
            p.exists()
        except OSError as err:  # a name too long for the file system, a permission refused
            raise WorkbenchError(f"cannot use this path ({err.strerror})", str(path)[:80]) from None
        return p

    def refresh(self) -> None:
        entries = []
        if self.cwd != self.root:
            entries.append("../")
        try:
            items = sorted(self.cwd.iterdir(), key=lambda p: (not p.is_dir(), p.name.lower()))
        except OSError:
            items = []
        for p in items:
            if p.name.startswith("."):
                continue
            if p.is_dir():
                entries.append(p.name + "/")
            elif p.suffix.lower() in READABLE:
                entries.append(p.name)
        self.listing.unobserve(self._on_select, "value")
        self.listing.options = entries
        self.listing.value = None
        self.listing.observe(self._on_select, "value")
        rel = self.cwd.relative_to(self.root).as_posix()
        self.where.value = f"<code>{self.root.name}/{'' if rel == '.' else rel + '/'}</code>"

    def _on_select(self, change) -> None:
        name = change["new"]
        if not name:
            return
        if name == "../":
            self.cwd = self.cwd.parent if self.cwd != self.root else self.root
            self.path.value = self._rel(self.cwd)
            self.refresh()
            return
        target = self.cwd / name.rstrip("/")
        self.path.value = self._rel(target)
        # open plain folders; zarr / n5 stores and image stacks are chosen, not entered, by a 2nd click
        if name.endswith("/") and not name.rstrip("/").endswith((".zarr", ".n5")) and not self._is_stack(target):
            self.cwd = target
            self.refresh()

    @staticmethod
    def _is_stack(folder: Path) -> bool:
        try:
            return any(p.suffix.lower() in (".png", ".tif", ".tiff") for p in folder.iterdir())
        except OSError:
            return False

    def _rel(self, p: Path) -> str:
        rel = p.relative_to(self.root).as_posix()
        return "" if rel == "." else rel

    def selected(self) -> Path:
        if not self.path.value.strip():
            raise WorkbenchError("choose a file or folder first")
        return self.inside(Path(self.path.value.strip()))


class DataPanel:
    """Choose the volume to work on; shows its shape, voxel size, type, a slice and Neuroglancer."""

    step = "data"

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.status = StatusLine(self.step)
        self.source = styled(W.ToggleButtons(options=SOURCES, value=SOURCES[0]), "wb-data-source")
        self.source.observe(lambda _: self._show_source(), "value")

        # sample
        self.sample_seed = W.BoundedIntText(value=0, min=0, max=10**6, description="seed",
                                            layout=W.Layout(width="160px"))
        self.load_sample_btn = action_button("sample", "Use the sample", "primary", icon="flask")
        self.load_sample_btn.on_click(self.status.guard(lambda _: self.use_sample(self.sample_seed.value)))
        sample_box = W.VBox([W.HTML("A synthetic EM-like volume (cells, membranes, mitochondria, vesicles) "
                                    "with ground truth, so results can be scored."),
                             W.HBox([self.sample_seed, self.load_sample_btn])])
        # catalog
        self.catalog = styled(W.Dropdown(options=[], description="dataset", layout=W.Layout(width="420px")),
                              "wb-data-catalog")
        self.catalog_info = W.HTML()
        self.catalog.observe(lambda _: self._describe_dataset(), "value")
        self.fetch_btn = action_button("fetch", "Fetch and use", "primary", icon="download")
        self.fetch_btn.on_click(self.status.guard(lambda _: self.use_dataset(self.catalog.value)))
        catalog_box = W.VBox([self.catalog, self.catalog_info, self.fetch_btn])
        # files
        self.browser = FileBrowser(ctx.data_root) if ctx.data_root else None
        self.voxel = W.Text(placeholder="z, y, x nm (optional)", description="voxel size",
                            layout=W.Layout(width="300px"))
        self.open_btn = action_button("open", "Open", "primary", icon="folder-open")
        self.open_btn.on_click(self.status.guard(lambda _: self.use_path(self.browser.selected() if self.browser else None)))
        if self.browser is not None:
            file_box = W.VBox([self.browser.widget, W.HBox([self.voxel, self.open_btn])])
        else:
            file_box = W.HTML("File browsing is off: start the app with a data root "
                              "(<code>workbench app --data PATH</code> or <code>WORKBENCH_DATA_ROOT</code>).")
        self._boxes = {SOURCES[0]: sample_box, SOURCES[1]: catalog_box, SOURCES[2]: file_box}
        self.chooser = W.VBox([sample_box])
        if self.browser is not None and ctx.data_file is not None:  # the app was started on one volume
            self.browser.path.value = ctx.data_file.name
            self.source.value = SOURCES[2]
            self.chooser.children = [file_box]

        # what is loaded
        self.info = styled(W.HTML(), "wb-data-info")
        self.preview_box = W.VBox()
        self.z = styled(W.IntSlider(description="slice z", continuous_update=False), "wb-data-slice")
        self.z.observe(lambda ch: self._preview and self._preview.set_slice(ch["new"]), "value")
        self.ng_btn = action_button("neuroglancer", "Open in Neuroglancer", icon="cube")
        self.ng_btn.on_click(self.status.guard(lambda _: self.show_neuroglancer()))
        self.ng_box = W.VBox()
        self._preview = None

        header = W.HTML("<h3>1 · Data</h3><p>Choose the electron-microscopy volume to segment. The built-in "
                        "sample is ready to go; everything you do is saved in the project folder.</p>")
        self.widget = styled(W.VBox([header, self.source, self.chooser, W.HTML("<hr>"), self.info,
                                     W.HBox([self.preview_box, W.VBox([self.z, self.ng_btn])]), self.ng_box,
                                     self.status.widget]), "wb-step", f"wb-step-{self.step}")
        ctx.on("project", self.refresh)
        self.refresh()

    # ---- choosing
    def _show_source(self) -> None:
        if self.source.value == SOURCES[1] and not self.catalog.options:
            try:
                from workbench.datasets import list_datasets

                self.catalog.options = [(f"{d.title} ({d.name})", d.name) for d in list_datasets()]
            except Exception as exc:
                self.status.error(exc)
        self.chooser.children = [self._boxes[self.source.value]]

    def _describe_dataset(self) -> None:
        from workbench.datasets import get_dataset

        if not self.catalog.value:
            self.catalog_info.value = ""
            return
        d = get_dataset(self.catalog.value)
        self.catalog_info.value = (
            f"<p>{d.description}</p><p><b>{d.modality}</b>, {d.organism}, {d.tissue}; shape {d.shape}, "
            f"voxel {tuple(d.voxel_size)} nm, {d.nbytes / 1e6:.0f} MB. <a href='{d.homepage}' target='_blank'>"
            f"homepage</a>. Cite: {d.citation}</p>")

    def _open_or_create(self, folder: Path, **kwargs) -> Project:
        self.status.set(f"preparing {folder.name} ...", "busy")
        project = Project.open_or_create(folder, **kwargs)
        self.ctx.switch_project(project)
        self.status.set(f"using {project.name} ({folder})", "ok")
        return project

    def use_sample(self, seed: int = 0) -> Project:
        """Switch to (or create) the project of the built-in sample with ``seed``."""
        name = "sample" if seed == 0 else f"sample-{seed}"
        return self._open_or_create(self.ctx.workspace / name, raw=None, options=ProjectOptions(seed=int(seed)))

    def use_dataset(self, name: str | None) -> Project:
        """Fetch a catalog dataset (local mirror or download) and switch to its project."""
        if not name:
            raise WorkbenchError("choose a dataset first")
        from workbench.datasets import fetch_dataset

        self.status.set(f"fetching {name} ...", "busy")
        path = fetch_dataset(name)
        return self._open_or_create(self.ctx.workspace / _safe_dirname(name), raw=str(path / "raw"),
                                    options=ProjectOptions(name=name))

    def use_path(self, path: Path | None) -> Project:
        """Open a file or folder under the data root as a new project (or the one made for it before)."""
        if path is None:
            raise WorkbenchError("file browsing is off: no data root configured")
        if self.browser is not None:
            path = self.browser.inside(path)
        if not path.exists():
            raise WorkbenchError("no such file or folder", path)
        voxel = None
        if self.voxel.value.strip():
            try:
                voxel = tuple(float(v) for v in re.split(r"[,\s]+", self.voxel.value.strip()) if v)
            except ValueError:
                raise WorkbenchError(f"voxel size must be three numbers (z, y, x nm), got {self.voxel.value!r}") from None
            if len(voxel) != 3:
                raise WorkbenchError(f"voxel size must be three numbers (z, y, x nm), got {self.voxel.value!r}")
        from workbench.io import open_volume

        open_volume(str(path), voxel_size=voxel)  # fail fast, with the reader's one-line message
        name = _safe_dirname(path.stem if path.is_file() else path.name)
        return self._open_or_create(self.ctx.workspace / name, raw=str(path),
                                    options=ProjectOptions(voxel_size=voxel, name=path.name))

    # ---- showing
    def refresh(self, **_) -> None:
        from widgets.slice_view import SliceView

        p = self.ctx.project
        try:
            raw = p.raw
        except WorkbenchError as exc:
            self.status.error(exc)
            self.info.value = ""
            return
        vs = ", ".join(f"{v:g}" for v in raw.voxel_size)
        truth = "yes (results can be scored)" if p.truth_path is not None else "no"
        self.info.value = (
            f"<table class='wb-data-table'><tr><td><b>project</b></td><td>{html.escape(p.name)} "
            f"<code>{html.escape(display_path(p.root))}</code></td></tr>"
            f"<tr><td><b>shape</b> (z, y, x)</td><td class='wb-data-shape'>{' × '.join(map(str, raw.shape))}</td></tr>"
            f"<tr><td><b>voxel size</b></td><td>{vs} nm</td></tr>"
            f"<tr><td><b>type</b></td><td>{raw.dtype}</td></tr>"
            f"<tr><td><b>source</b></td><td><code>{html.escape(display_path(raw.source) if raw.source else '')}</code></td></tr>"
            f"<tr><td><b>ground truth</b></td><td>{truth}</td></tr></table>")
        self._preview = SliceView(raw, size=360, title="")
        self.z.max = raw.shape[0] - 1
        self.z.value = self._preview.z
        self.preview_box.children = [styled(self._preview.widget, "wb-data-preview")]
        self.ng_box.children = []

    def show_neuroglancer(self) -> None:
        from widgets.neuroglancer import NeuroglancerFrame

        viewer = self.ctx.viewer()
        self.ng_box.children = [NeuroglancerFrame(viewer, height=480).widget]
        self.status.set("Neuroglancer: scroll to zoom, drag to pan, ',' and '.' change the slice", "ok")

"""The guided app: the five steps as tabs around one project folder, resumed where the user left it."""

from __future__ import annotations

import html
import os
import traceback
from pathlib import Path

import ipywidgets as W

from widgets._common import StatusLine, action_button, display_path, error_line, remember_loop, styled
from widgets.context import AppContext, resolve_project_dir
from workbench.errors import WorkbenchError
from workbench.project import Project

STEPS = (("data", "1 Data"), ("architecture", "2 Architecture"), ("annotate", "3 Annotate"),
         ("train", "4 Train"), ("results", "5 Results"))

CSS = """<style>
.wb-app .wb-step { padding: 6px 4px; }
.wb-app h3 { margin: 4px 0 2px 0; }
.wb-app .wb-status { min-height: 1.4em; font-size: 0.95em; }
.wb-app .wb-data-table td { padding: 1px 10px 1px 0; }
.wb-app .wb-metrics-table td { padding: 1px 14px 1px 0; }
.wb-app .wb-header { font-size: 0.95em; color: #444; }
</style>"""


def _panel_class(step: str):
    if step == "data":
        from widgets.data import DataPanel as cls
    elif step == "architecture":
        from widgets.architecture import ArchitecturePanel as cls
    elif step == "annotate":
        from widgets.annotate import AnnotatePanel as cls
    elif step == "train":
        from widgets.train import TrainPanel as cls
    elif step == "results":
        from widgets.results import ResultsPanel as cls
    else:
        raise ValueError(step)
    return cls


class WorkbenchApp:
    """Data → architecture → annotate → train → results, as tabs; every step saves into the project.

    Panels are built when their tab is first opened (the page shows fast; torch loads only when needed).
    """

    def __init__(self, project: Project, workspace: Path | None = None, data_root: Path | None = None,
                 watchdog: bool | None = None, panel_options: dict | None = None):
        remember_loop()
        self.ctx = AppContext(project, workspace, data_root)
        self.panel_options = panel_options or {}
        self.panels: dict[str, object] = {}
        self.status = StatusLine("app")
        self.header = styled(W.HTML(), "wb-header")
        self.slots = {s: styled(W.VBox([W.HTML(f"<p><i>loading {t[2:].lower()} ...</i></p>")]),
                                f"wb-slot-{s}") for s, t in STEPS}
        self.tabs = styled(W.Tab(children=[self.slots[s] for s, _ in STEPS]), "wb-tabs")
        for i, (_, title) in enumerate(STEPS):
            self.tabs.set_title(i, title)
        self.next_btn = action_button("next", "Next step →", "info")
        self.next_btn.on_click(lambda _: self.go(min(self.tabs.selected_index + 1, len(STEPS) - 1)))
        from widgets.lifecycle import SessionWatchdog

        self.watchdog = SessionWatchdog(enabled=watchdog)
        self.watchdog.on_end(self.end_session)
        self.widget = styled(W.VBox([W.HTML(CSS), self.header, self.tabs, W.HBox([self.next_btn, self.status.widget]),
                                     self.watchdog.heartbeat]), "wb-app")
        self.ctx.on("project", lambda **_: self._update_header())
        self._update_header()
        step = project.state.get("step", "data")
        index = [s for s, _ in STEPS].index(step) if step in [s for s, _ in STEPS] else 0
        # the first tab is always built at load, then the saved step; the others when first opened
        self._build(STEPS[0][0])
        self.tabs.selected_index = index
        self._build(STEPS[index][0])
        self.tabs.observe(self._on_tab, "selected_index")

    # ---- construction
    @classmethod
    def from_env(cls, **kwargs) -> WorkbenchApp:
        """The app for ``WORKBENCH_PROJECT`` (default: the sample under the cache folder) and
        ``WORKBENCH_DATA_ROOT`` (the folder the file browser may show)."""
        root, workspace = resolve_project_dir()
        project = Project.open_or_create(root, raw=None)
        data_root = os.environ.get("WORKBENCH_DATA_ROOT") or None
        return cls(project, workspace=workspace, data_root=Path(data_root) if data_root else None, **kwargs)

    @property
    def project(self) -> Project:
        return self.ctx.project

    def _update_header(self) -> None:
        p = self.ctx.project
        self.header.value = (f"<div class='wb-header'><b style='font-size:1.3em'>EM Workbench</b> &nbsp; "
                             f"project <b class='wb-project-name'>{html.escape(p.name)}</b> "
                             f"<code>{html.escape(display_path(p.root))}</code> · saved as you go</div>")

    def _build(self, step: str):
        if step in self.panels:
            return self.panels[step]
        slot = self.slots[step]
        try:
            panel = _panel_class(step)(self.ctx, **self.panel_options.get(step, {}))
        except WorkbenchError as exc:
            slot.children = [W.HTML(f"<p class='wb-status-error'>{html.escape(error_line(exc))}</p>")]
            self.status.error(exc)
            return None
        except Exception as exc:  # show it in one line, keep the traceback in the log
            traceback.print_exc()
            slot.children = [W.HTML(f"<p class='wb-status-error'>{html.escape(error_line(exc))}</p>")]
            return None
        self.panels[step] = panel
        slot.children = [panel.widget]
        return panel

    def panel(self, step: str):
        """The panel of ``step`` (built if needed)."""
        return self._build(step)

    # ---- navigation
    def _on_tab(self, change) -> None:
        index = change["new"]
        if index is None:
            return
        step = STEPS[index][0]
        self._build(step)
        try:
            self.ctx.project.state["step"] = step
        except Exception as exc:
            self.status.error(exc)
        self.next_btn.disabled = index == len(STEPS) - 1

    def go(self, step) -> None:
        """Open a step by name or index."""
        index = step if isinstance(step, int) else [s for s, _ in STEPS].index(step)
        self.tabs.selected_index = index

    # ---- showing
    def show(self) -> WorkbenchApp:
        """Display the app (in a notebook or Voila) and start the session watchdog."""
        from IPython.display import display

        display(self.widget)
        self.watchdog.start()
        return self

    def end_session(self) -> None:
        """Stop training (it writes a last checkpoint), prediction and the viewer of this session."""
        train = self.panels.get("train")
        if train is not None and train.running:
            train.stop(wait=True, timeout=15.0)
        self.ctx.shutdown()

    def close(self) -> None:
        """Stop everything this session started (training, prediction, viewer)."""
        self.watchdog.stop()
        self.end_session()

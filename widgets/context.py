"""What the panels share: the open project, background jobs, the Neuroglancer viewer, and events.

A panel never talks to another panel: it changes the project (through the workbench API) and announces
it here (``emit("labels")``); the panels that show that thing listen (``on("labels", fn)``).
"""

from __future__ import annotations

import os
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from widgets._common import Job
from workbench.atomic import atomic_write
from workbench.errors import WorkbenchError
from workbench.project import Project

#: Events: project (another project opened), classes, labels, arch (architecture or settings chosen),
#: run (a training run started or finished), prediction (a prediction or segmentation was written).
EVENTS = ("project", "classes", "labels", "arch", "run", "prediction", "step")

CURRENT_FILE = ".workbench-current"


class AppContext:
    """The state one app session works on.

    Args:
        project: the open project.
        workspace: folder where new projects are made (one per data source).
        data_root: the folder the file browser may show (None: file browsing off).
    """

    def __init__(self, project: Project, workspace: Path | None = None, data_root: Path | None = None):
        self.project = project
        self.workspace = Path(workspace) if workspace is not None else Path(project.root).parent
        root = Path(data_root).resolve() if data_root else None
        #: a single volume given as the data root (``workbench app --data FILE``): browse its folder, offer it
        self.data_file: Path | None = None
        if root is not None and (root.is_file() or root.suffix.lower() in (".zarr", ".n5")):
            self.data_file, root = root, root.parent
        self.data_root = root
        self._listeners: dict[str, list[Callable]] = defaultdict(list)
        self.jobs: dict[str, Job] = {}
        self._viewer = None
        #: the run this session trained last (the steps are built when first shown: one built after the
        #: training finished must still pick this run, not the newest run another page of the project trained)
        self.trained_run: str | None = None
        self.on("run", self._remember_run)

    def _remember_run(self, run: str | None = None, state: str | None = None, **_) -> None:
        if state == "finished" and run:
            self.trained_run = run

    # ---- events
    def on(self, event: str, fn: Callable[..., None]) -> None:
        if event not in EVENTS:
            raise ValueError(f"unknown event {event!r}")
        self._listeners[event].append(fn)

    def emit(self, event: str, **info) -> None:
        for fn in list(self._listeners[event]):
            try:
                fn(**info)
            except Exception:  # one failing listener must not break the others
                traceback.print_exc()

    # ---- project
    def switch_project(self, project: Project) -> None:
        """Make ``project`` the open one (remembered for the next page load) and tell every panel."""
        self.stop_jobs()
        self.project = project
        self.trained_run = None
        try:
            self.workspace.mkdir(parents=True, exist_ok=True)
            atomic_write(self.workspace / CURRENT_FILE, str(Path(project.root).resolve()))
        except (OSError, WorkbenchError):
            pass
        if self._viewer is not None:
            self.close_viewer()
        self.emit("project")

    # ---- jobs
    def start_job(self, name: str, fn, on_done=None) -> Job:
        """Run ``fn(should_stop)`` in the background as job ``name`` (one job per name at a time)."""
        old = self.jobs.get(name)
        if old is not None and old.running:
            raise RuntimeError(f"{name} is already running")
        job = Job(name, fn, on_done).start()
        self.jobs[name] = job
        return job

    def running(self, name: str) -> bool:
        job = self.jobs.get(name)
        return job is not None and job.running

    def stop_jobs(self, wait: float = 10.0) -> None:
        """Ask every job to stop and wait a little for them."""
        for job in self.jobs.values():
            job.stop()
        for job in self.jobs.values():
            job.wait(wait)

    # ---- Neuroglancer
    def viewer(self):
        """The project's live Neuroglancer viewer (started on first use)."""
        if self._viewer is None:
            from workbench.viewer import WorkbenchViewer

            p = self.project
            self._viewer = WorkbenchViewer(voxel_size=p.voxel_size, classes=p.classes)
            self._viewer.set_raw(p.raw)
        return self._viewer

    @property
    def has_viewer(self) -> bool:
        return self._viewer is not None

    def close_viewer(self) -> None:
        if self._viewer is not None:
            try:
                self._viewer.close()
            except Exception:
                traceback.print_exc()
            self._viewer = None

    def shutdown(self) -> None:
        """Stop all work and servers this session started."""
        self.stop_jobs(wait=5.0)
        self.close_viewer()


def default_workspace() -> Path:
    """Where projects live unless ``WORKBENCH_PROJECT`` says otherwise."""
    from workbench.config import cache_dir

    return cache_dir() / "projects"


def resolve_project_dir() -> tuple[Path, Path]:
    """(project folder to open, workspace) from the environment.

    ``WORKBENCH_PROJECT`` names the project folder (made with the built-in sample when absent); its parent
    is the workspace where projects for other data are made. Without it: ``<cache>/projects/sample``.
    If the user switched to another project of the same workspace, that one is reopened.
    """
    env = os.environ.get("WORKBENCH_PROJECT")
    start = Path(env).expanduser() if env else default_workspace() / "sample"
    workspace = start.parent
    marker = workspace / CURRENT_FILE
    if marker.exists():
        try:
            cur = Path(marker.read_text().strip())
            if Project.is_project(cur) and cur.parent.resolve() == workspace.resolve():
                return cur, workspace
        except OSError:
            pass
    return start, workspace

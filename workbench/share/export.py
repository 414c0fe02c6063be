"""``write_share``: a project's results as a self-contained static site folder.

```
OUT/
  share.json                 the manifest: project, runs, plan, layers, pictures, Neuroglancer states
  runs/<run>.json            one run's record (architecture card, options, curves, scores, ...)
  runs/<run>.objects.csv     its object table (workbench.objects: one row per instance, the largest first)
  data/raw.ome.zarr          OME-Zarr volumes Neuroglancer reads over plain HTTP
  data/truth.ome.zarr, data/runs/<run>/prediction.ome.zarr, data/runs/<run>/instances.ome.zarr
  slices/<layer>/<i>.jpg     slice pictures for the slice views
  neuroglancer/v/share/      the Neuroglancer client
  index.html, summary.html, static/   the pages (written by the ``pages`` given, from the manifest)
```
The site is made in a hidden folder beside ``OUT`` and renamed into place when complete; an earlier share
in ``OUT`` is replaced only then. Anything else in ``OUT`` is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from workbench.errors import WorkbenchError
from workbench.share import budget as B
from workbench.share import neuroglancer as ng
from workbench.share import records, volumes

MANIFEST = "share.json"
FORMAT = "em-workbench-share"
VERSION = 1


class SitePages(Protocol):
    """What makes the pages of a share (the UI layer provides it)."""

    def fixed_bytes(self) -> int:
        """Bytes the pages and their scripts take, whatever the data."""

    def write(self, site: Path, manifest: dict) -> list[Path]:
        """Write the pages into ``site`` from the manifest; returns the pages written."""


@dataclass(frozen=True)
class ShareOptions:
    """What goes into a share.

    Attributes:
        runs: run ids to include (None: every run with a checkpoint).
        max_mb: the size budget in megabytes (10^6 bytes), see :mod:`workbench.share.budget`.
        max_slices: slice pictures per layer at most.
        max_side: the slice pictures' longest side at most (pixels).

    Raises:
        WorkbenchError: a budget or limit that is not positive.
    """

    runs: tuple[str, ...] | None = None
    max_mb: float = 300.0
    max_slices: int = 64
    max_side: int = 512

    def __post_init__(self) -> None:
        if not float(self.max_mb) > 0:
            raise WorkbenchError(f"--max-mb must be positive, got {self.max_mb}")
        if int(self.max_slices) < 1 or int(self.max_side) < 16:
            raise WorkbenchError("max_slices must be >= 1 and max_side >= 16")
        if self.runs is not None:
            object.__setattr__(self, "runs", tuple(str(r) for r in self.runs))


@dataclass(frozen=True)
class ShareResult:
    """A written share: its folder, manifest, plan and size on disk (bytes)."""

    path: Path
    manifest: dict
    plan: B.SharePlan
    bytes: int


def is_share(path: Path) -> bool:
    """True when ``path`` holds a share written by :func:`write_share`."""
    try:
        return json.loads((Path(path) / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_output(out: Path) -> None:
    """Refuse an output that exists and is not an earlier share (nothing is touched).

    Raises:
        WorkbenchError: ``out`` is a file, or a non-empty folder without a share's manifest.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise WorkbenchError("the output exists and is not a folder; nothing was written", out)
    if any(out.iterdir()) and not is_share(out):
        raise WorkbenchError("the output folder exists and is not an earlier share; nothing was written "
                             "(choose a new or empty folder)", out)


def select_runs(project, wanted: tuple[str, ...] | None) -> list:
    """The runs to share: ``wanted`` in that order, or every run with a checkpoint (oldest first).

    Raises:
        WorkbenchError: a wanted run does not exist.
    """
    runs = {r.id: r for r in project.runs()}
    if wanted is None:
        return [r for r in runs.values() if r.checkpoint is not None]
    missing = [w for w in wanted if w not in runs]
    if missing:
        have = ", ".join(runs) or "none"
        raise WorkbenchError(f"no run {missing[0]!r} in this project (runs: {have})", project.runs_path)
    return [runs[w] for w in dict.fromkeys(wanted)]


def folder_bytes(path: Path) -> int:
    """Bytes of the files under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def write_share(project, out, options: ShareOptions | None = None, pages: SitePages | None = None,
                progress=None) -> ShareResult:
    """Write the share of ``project`` (a :class:`~workbench.project.Project` or its folder) to ``out``.

    Args:
        project: the project or its folder.
        out: the site folder: new, empty, or an earlier share (replaced when the new one is complete).
        options: :class:`ShareOptions` (runs, size budget).
        pages: writes the HTML pages (:class:`SitePages`); None writes the data and the manifest only.
        progress: optional ``callable(text)`` told what is being written.

    Returns:
        A :class:`ShareResult`.

    Raises:
        WorkbenchError: not a project, an unknown run, an output that is not an earlier share, a budget too
            small for the raw image at the smallest scale.
    """
    from workbench.project import Project

    o = options or ShareOptions()
    project = project if isinstance(project, Project) else Project.open(project)
    out = Path(out).expanduser().absolute()
    check_output(out)
    runs = select_runs(project, o.runs)
    say = progress or (lambda text: None)
    budget = int(o.max_mb * 1e6)
    sources = volumes.layer_sources(project, [r.id for r in runs])
    say("object tables")
    objects = {r.id: records.object_summary(project, r.id) for r in runs}
    tables = sum(len(t[1].encode()) + len(json.dumps(t[0])) for t in objects.values() if t is not None)
    # the client, the pages' scripts, the object tables, and per run its record, its part of the pages and
    # of the manifest
    fixed = (ng.client_bytes() + (pages.fixed_bytes() if pages is not None else 0) + tables + 50_000
             + 60_000 * len(runs))
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{int(time.time() * 1000)}"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        plan = B.plan_share(project.shape, [s.size for s in sources], budget, fixed=fixed,
                            max_slices=o.max_slices, max_side=o.max_side)
        manifest = _write_site(project, runs, sources, objects, plan, tmp, o, say)
        if pages is not None:
            say("pages")
            pages.write(tmp, manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        size = folder_bytes(tmp)  # everything, the manifest included (its size changes by a few digits)
        manifest["bytes"] = size
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ShareResult(out, manifest, plan, size)


def _replace(tmp: Path, out: Path) -> None:
    """Put ``tmp`` at ``out`` by renaming; an earlier share there is moved aside first and then removed."""
    old = None
    if out.exists():
        check_output(out)  # still an earlier share (or empty)?
        old = out.parent / f".{out.name}.old-{os.getpid()}-{int(time.time() * 1000)}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_site(project, runs, sources, objects, plan: B.SharePlan, site: Path, o: ShareOptions, say) -> dict:
    site.mkdir(parents=True)
    kept = [s for s in sources if s.name in plan.layers]
    f = plan.factor
    vs = project.voxel_size
    share_vs = (vs[0], vs[1] * f, vs[2] * f)
    zs, step = volumes.picture_slices(plan, o.max_slices, o.max_side)
    colors = {c.id: c.color for c in project.classes}
    layers: dict[str, dict] = {}
    raw = None
    for src in kept:
        say(f"layer {src.name}")
        data = volumes.read_layer(src, plan)
        if src.name == volumes.RAW:
            raw = data
        rel = (f"data/{src.name}.ome.zarr" if src.run is None
               else f"data/runs/{src.run}/{src.name.split('/', 1)[1]}.ome.zarr")
        volumes.write_layer(data, site / rel, share_vs, src)
        pics = f"slices/{src.name}" if src.run is None else f"slices/runs/{src.name}"
        volumes.write_pictures(raw, data, src, site / pics, zs, step, colors)
        layers[src.name] = {"name": src.name, "kind": src.kind, "path": rel, "pictures": pics, "run": src.run,
                            "dtype": src.dtype}
    run_records = []
    for r in runs:
        say(f"run {r.id}")
        rec = records.run_record(project, r)
        rec["uncertainty"] = volumes.uncertainty_summary(project, r.id, plan)
        rec["objects"] = None
        if objects.get(r.id) is not None:
            summary, text = objects[r.id]
            (site / "runs").mkdir(exist_ok=True)
            (site / "runs" / f"{r.id}.objects.csv").write_text(text)
            rec["objects"] = dict(summary, csv=f"runs/{r.id}.objects.csv")
        rec["layers"] = [n for n in (f"{r.id}/prediction", f"{r.id}/instances") if n in layers]
        run_layers = [layers[volumes.RAW]] + [layers[n] for n in (volumes.TRUTH, *rec["layers"]) if n in layers]
        rec["neuroglancer"] = ng.share_state(plan.shape, share_vs, run_layers, project.classes)
        (site / "runs").mkdir(exist_ok=True)
        (site / "runs" / f"{r.id}.json").write_text(json.dumps(rec, indent=1))
        run_records.append(rec)
    base_layers = [layers[n] for n in (volumes.RAW, volumes.TRUTH) if n in layers]
    ng.copy_client(site)
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "project": records.project_record(project),
        "runs": run_records,
        "plan": plan.to_json(),
        "voxel_size": list(share_vs),
        "layers": layers,
        "pictures": {"slices": zs, "z": [plan.crop[0][0] + z for z in zs], "step": step,
                     "shape": [len(zs), len(range(0, plan.shape[1], step)), len(range(0, plan.shape[2], step))]},
        "neuroglancer": {"client": f"{ng.CLIENT_DIR}/index.html",
                         "project": ng.share_state(plan.shape, share_vs, base_layers, project.classes)},
    }


"""What a share says about a project and its runs, as plain JSON (the pages are made from it)."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np

from workbench.errors import WorkbenchError

#: the metrics records' keys drawn as curves (training and validation)
CURVE_KEYS = ("loss", "val_loss", "val_accuracy", "val_f1", "lr")


def project_record(project) -> dict:
    """Name, shape, voxel size, dtype, source, classes (with colours) and annotation statistics."""
    raw = dict(project._meta.get("raw") or {})
    return {
        "name": project.name,
        "shape": list(project.shape),
        "voxel_size": list(project.voxel_size),
        "dtype": raw.get("dtype"),
        "source": raw.get("imported_from") or raw.get("source"),
        "linked": bool(raw.get("linked")),
        "sample": project._meta.get("sample"),
        "has_truth": project.truth_path is not None,
        "classes": [{"id": c.id, "name": c.name, "color": c.color} for c in project.classes],
        "annotations": annotation_stats(project),
    }


def annotation_stats(project) -> dict:
    """Labelled voxels per class, the labelled fraction, the labelled slices and the number of edits."""
    store = project.annotations
    counts = {int(k): int(v) for k, v in store.counts().items() if int(k) > 0}
    total = int(np.prod(project.shape))
    slices = [z for z in range(project.shape[0]) if np.any(np.asarray(store[z:z + 1]))]
    journal = project.root / "annotations.jsonl"
    edits = sum(1 for line in journal.read_text().splitlines() if line.strip()) if journal.exists() else 0
    names = {c.id: c.name for c in project.classes}
    return {
        "voxels": total,
        "labelled": sum(counts.values()),
        "fraction": sum(counts.values()) / total if total else 0.0,
        "per_class": [{"id": k, "name": names.get(k, f"class {k}"), "voxels": v, "fraction": v / total}
                      for k, v in sorted(counts.items())],
        "labelled_slices": slices,
        "edits": edits,
    }


def architecture_card(arch: str, options: dict | None) -> dict:
    """The architecture's title, description, paper and dimensionality, with the run's options."""
    from workbench.models import get_architecture

    card: dict[str, Any] = {"name": arch, "options": dict(options or {})}
    try:
        info = get_architecture(arch)
        card["options"] = _plain(info.options(**card["options"]))
    except Exception:  # a run of an architecture this version does not know: the name is all there is
        return card
    card.update(title=info.title, description=info.description, paper=info.paper, dims=info.dims, kind=info.kind)
    return card


def run_record(project, run) -> dict:
    """One run: architecture card, options, curves, duration, device, precision and scores (when truth exists)."""
    from workbench.metrics import evaluate_run

    config = dict(run.config or {})
    metrics = list(run.metrics)
    curves = {k: [[m["iteration"], float(m[k])] for m in metrics if k in m and m[k] is not None
                  and np.isfinite(float(m[k]))] for k in CURVE_KEYS}
    last = metrics[-1] if metrics else {}
    duration = last.get("elapsed_s")
    scores = {}
    try:
        scores = _plain(evaluate_run(project, run.id))
    except WorkbenchError:
        scores = {}
    return {
        "id": run.id,
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created)),
        "architecture": architecture_card(config.get("arch", "?"), config.get("arch_options")),
        "options": config,
        "curves": {k: v for k, v in curves.items() if v},
        "iterations": int(last.get("iteration", 0) or 0),
        "final": {k: float(last[k]) for k in CURVE_KEYS if k in last and last[k] is not None},
        "duration_s": float(duration) if duration is not None else None,
        "device": config.get("device"),
        "precision": config.get("precision"),
        "predicted": project.prediction_path(run.id).exists(),  # finished or not
        "segmented": project.segmentation_path(run.id).exists(),
        "scores": scores,
    }


def _plain(obj):
    """``obj`` with numpy scalars and tuples made JSON-plain."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


#: object tables in a share hold at most this many rows (the largest objects), the page shows the first few
MAX_OBJECT_ROWS = 10_000
SHOWN_OBJECT_ROWS = 15


def object_summary(project, run_id: str) -> tuple[dict, str] | None:
    """The run's objects (:func:`workbench.objects.object_table` of its instances, classes from its prediction):
    ``(summary, csv text)``, or None without instances.

    The summary holds the count, objects per class, the median volume and the largest objects' rows; the CSV
    the :data:`MAX_OBJECT_ROWS` largest objects (all columns of :data:`workbench.objects.COLUMNS`).
    """
    import csv
    import io
    from collections import Counter

    from workbench.objects import COLUMNS, object_table

    seg = project.segmentation_path(run_id)
    if not seg.exists():
        return None
    from workbench.inference import open_prediction

    pred = project.prediction_path(run_id)
    try:
        open_prediction(pred)
    except WorkbenchError:  # none, or unfinished: classes from the segmentation's own metadata
        pred = None
    table = object_table(str(seg), prediction=pred, voxel_size=project.voxel_size)
    rows = sorted(table.rows(), key=lambda r: -r["voxels"])
    volumes = [float(r["volume_um3"]) for r in rows]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for r in rows[:MAX_OBJECT_ROWS]:
        writer.writerow(["" if isinstance(r[c], float) and not np.isfinite(r[c]) else r[c] for c in COLUMNS])
    summary = {
        "count": len(rows),
        "per_class": dict(Counter(str(r["class"]) for r in rows)),
        "median_volume_um3": float(np.median(volumes)) if volumes else None,
        "columns": list(COLUMNS),
        "largest": _plain([{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                           for r in rows[:SHOWN_OBJECT_ROWS]]),
        "csv_rows": min(len(rows), MAX_OBJECT_ROWS),
    }
    return summary, text.getvalue()

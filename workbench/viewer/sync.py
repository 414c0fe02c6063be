"""The annotation round trip: strokes drawn in Neuroglancer become labels in the project's LabelStore."""

from __future__ import annotations

from workbench.errors import WorkbenchError
from workbench.viewer.live import COMMIT_KEY, LABELS, UNDO_KEY, WorkbenchViewer


def sync_annotations_to_store(
    viewer: WorkbenchViewer, label_store, width: int = 1, require_client: bool = True, timeout: float = 5.0
) -> int:
    """Rasterize the strokes drawn since the last sync into ``label_store`` and refresh the labels layer.

    Each new line, polyline or point annotation of a class's drawing layer becomes one
    ``label_store.add_stroke(points_zyx, label, width, plane)`` call (persisted by the store), in
    array index coordinates ``(z, y, x)`` (see :meth:`Stroke.index_points`). Strokes within one z
    slice are drawn in that plane (``plane="xy"``), others in 3D.

    Args:
        width: stroke width in voxels.
        require_client: raise when no browser shows the viewer (see ``read_annotations``).
    Returns:
        the number of strokes written.
    Raises:
        WorkbenchError: no browser connected, no drawing layers, or the store refused a stroke.
    """
    if require_client and not viewer.wait_for_client(timeout):
        raise WorkbenchError(f"no browser is showing the viewer (waited {timeout:g} s); open {viewer.url()}")
    with viewer.lock:  # one sync at a time (a key press and a button may race)
        strokes = viewer.new_strokes(require_client=False)
        for stroke in strokes:
            pts = stroke.index_points()
            plane = "xy" if len(set(pts[:, 0].tolist())) == 1 else "3d"
            label_store.add_stroke(pts, stroke.label, width, plane=plane)
            viewer.mark_synced(stroke)
        if strokes and viewer.has_layer(LABELS):
            viewer.update_layer(LABELS)
    return len(strokes)


def undo_last_stroke(viewer: WorkbenchViewer, label_store) -> bool:
    """Undo the last synced stroke: removed from the label store and from its drawing layer.

    The store's most recent operation is undone, so call this right after the stroke's sync (as the
    undo key does), not after other edits of the store.

    Returns:
        False when there was nothing to undo.
    """
    with viewer.lock:
        last = viewer.pop_committed()
        if last is None:
            return False
        label_store.undo()
        annotation_id, layer = last
        viewer.remove_annotation(annotation_id, layer)
        if viewer.has_layer(LABELS):
            viewer.update_layer(LABELS)
    return True


def enable_drawing(viewer: WorkbenchViewer, label_store, width: int = 1, classes=None, show_labels: bool = True) -> None:
    """Set the viewer up for annotating into ``label_store``.

    Adds the drawing layers (one per class), shows the store's labels, and binds
    ``alt+c`` (commit the drawn strokes) and ``alt+z`` (undo the last committed stroke).
    """
    if viewer.shape is None:
        raise WorkbenchError("show the raw volume before enabling drawing")
    if show_labels:
        viewer.show_label_store(label_store, classes=classes)
    viewer.add_draw_layers(classes)
    viewer.bind_key(COMMIT_KEY, "workbench-commit", lambda: sync_annotations_to_store(viewer, label_store, width, require_client=False))
    viewer.bind_key(UNDO_KEY, "workbench-undo", lambda: undo_last_stroke(viewer, label_store))

"""Neuroglancer for a share: the client copied from the ``neuroglancer`` package and viewer states whose
sources point at the share's own OME-Zarr over HTTP.

The package's client is the build its Python server serves: it finds its token in a ``/v/<token>/`` path,
so it is copied to ``neuroglancer/v/share/``. Without that server its state channel fails (same-origin
requests, retried with a growing delay) and the state given in the URL fragment is shown. Data sources are
``zarr://{SITE}data/...``: the pages replace :data:`SITE` with the site's absolute URL when a link is opened
(Neuroglancer wants absolute URLs), so the links work wherever the site is served.
"""

from __future__ import annotations

import shutil
from pathlib import Path

#: the placeholder the pages replace with the site's URL (ends with "/")
SITE = "{SITE}"
#: where the client goes, relative to the site
CLIENT_DIR = "neuroglancer/v/share"
#: the status line about the missing Python server is hidden (the share has none, by design); others stay
HIDE_STATUS = ("<script>new MutationObserver(function () { document.querySelectorAll("
               "'#neuroglancer-status-container li').forEach(function (li) { if (li.textContent.indexOf("
               "'Disconnected from Python server') === 0) { li.style.display = 'none'; } }); }).observe("
               "document.documentElement, {subtree: true, childList: true, characterData: true});</script>")


def client_folder() -> Path:
    """The built Neuroglancer client of the installed ``neuroglancer`` package."""
    import neuroglancer

    return Path(neuroglancer.__file__).parent / "static" / "client"


def client_bytes() -> int:
    """Bytes the copied client takes (source maps are left out)."""
    return sum(p.stat().st_size for p in client_folder().iterdir() if p.is_file() and not p.name.endswith(".map"))


def copy_client(site: Path) -> Path:
    """Copy the client (without source maps) to ``site/neuroglancer/v/share``; returns that folder."""
    dest = site / CLIENT_DIR
    dest.mkdir(parents=True, exist_ok=True)
    for p in client_folder().iterdir():
        if p.is_file() and not p.name.endswith(".map"):
            shutil.copyfile(p, dest / p.name)
    index = dest / "index.html"
    index.write_text(index.read_text().replace("</head>", HIDE_STATUS + "</head>"))
    return dest


def share_state(shape, voxel_size, layers: list[dict], classes) -> dict:
    """A viewer state (JSON) showing ``layers`` of a share.

    Args:
        shape, voxel_size: of the share's volumes (z, y, x; nm).
        layers: ``{"name", "kind" ("image" | "classes" | "instances"), "path" (relative to the site),
            "window" (images)}``, drawn in this order. Shown at first: the raw image and the last class
            layer (the run's prediction, else the truth); the others are listed, hidden.
        classes: the project's classes (the colours of class layers).
    """
    from workbench.viewer import state as st

    s = st.new_state(voxel_size, shape, layout="xy" if int(shape[0]) < 32 else "4panel")
    class_layers = [layer["name"] for layer in layers if layer["kind"] == "classes"]
    shown = class_layers[-1] if class_layers else None
    for layer in layers:
        source = f"zarr://{SITE}{layer['path'].rstrip('/')}/"
        if layer["kind"] == "image":
            st.add_image_layer(s, layer["name"], source, tuple(layer.get("window", (0, 255))), dtype="uint8")
        elif layer["kind"] == "classes":
            st.add_labels_layer(s, layer["name"], source, classes=classes, alpha=0.45,
                                visible=layer["name"] == shown)
        else:
            st.add_instance_layer(s, layer["name"], source, alpha=0.4, visible=False)
    return st.state_to_json(s)


#: where the dashboard serves a project's own ``data.zarr`` (read-only), relative to the project's share
LIVE_DATA = "project-data"


def live_state(project) -> dict | None:
    """A viewer state of the project as it is now, at full resolution, read from its own ``data.zarr``
    (served by the dashboard under :data:`LIVE_DATA`): raw, the annotations, the truth (hidden) and every
    run's instances (the newest shown). None when the raw image is linked from outside the project."""
    from workbench.viewer import state as st

    raw_info = project._meta.get("raw") or {}
    if raw_info.get("linked"):
        return None
    base = f"zarr://{SITE}{LIVE_DATA}/"
    s = st.new_state(project.voxel_size, project.shape, layout="xy" if project.shape[0] < 32 else "4panel")
    st.add_image_layer(s, "raw", base, st.contrast_window(project.raw), dtype=raw_info.get("dtype", "uint8"))
    data = project.data_path
    if (data / "labels" / "truth").exists():
        st.add_labels_layer(s, "truth", base + "labels/truth/", classes=project.classes, alpha=0.45, visible=False)
    if project.annotations_path.exists():
        st.add_labels_layer(s, "annotations", base + "labels/annotations/", classes=project.classes, alpha=0.8)
    segs = sorted(p.name for p in (data / "segmentation").iterdir() if p.is_dir()) if (data / "segmentation").is_dir() else []
    for i, name in enumerate(segs):
        st.add_instance_layer(s, f"{name}/instances", base + f"segmentation/{name}/", alpha=0.4,
                              visible=i == len(segs) - 1)
    return st.state_to_json(s)

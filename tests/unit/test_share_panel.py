"""The Results step's "Share": writes the project's static site and its zip, says where, offers the download."""

from __future__ import annotations

import shutil
import zipfile

from widgets.context import AppContext
from widgets.share import SharePanel
from workbench.project import Project


def test_share_button_writes_site_and_zip(share_sample_project, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(share_sample_project.root, root)
    ctx = AppContext(Project.open(root), workspace=tmp_path)
    panel = SharePanel(ctx)
    panel.button.click()
    ctx.jobs["share"].wait(300)
    site = root / "exports" / "site"
    assert panel.last == site and (site / "index.html").is_file() and (site / "share.json").is_file()
    assert "wb-share-path" in panel.result.value and str(site) in panel.result.value
    assert "data:application/zip;base64," in panel.result.value and not panel.button.disabled
    with zipfile.ZipFile(root / "exports" / "site.zip") as z:
        names = set(z.namelist())
    assert {"index.html", "share.json", "static/bokeh.js"} <= names
    panel.share(wait=True)  # again: the earlier site is replaced
    assert (site / "index.html").is_file() and "error" not in panel.status.widget.value.lower()


def test_results_step_has_share(share_sample_project, tmp_path):
    from widgets.results import ResultsPanel

    root = tmp_path / "copy"
    shutil.copytree(share_sample_project.root, root)
    results = ResultsPanel(AppContext(Project.open(root), workspace=tmp_path))
    assert isinstance(results.share, SharePanel) and results.share.widget in results.widget.children

"""``workbench share``: the files of the static site, their sizes within the budget, run selection, and bad
input (one-line errors, nothing overwritten)."""

from __future__ import annotations

import json
import shutil

import pytest

from widgets.site import build_site
from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.share import ShareOptions, is_share, write_share
from workbench.share import neuroglancer as ng


@pytest.fixture(scope="module")
def project(share_sample_project):
    return share_sample_project


@pytest.fixture(scope="module")
def site(project, tmp_path_factory):
    return build_site(project, tmp_path_factory.mktemp("site") / "out")


def test_site_files(site, project):
    out, m = site.path, site.manifest
    for name in ("index.html", "summary.html", "share.json", "static/bokeh.js", "static/site.css", "static/site.js",
                 f"{ng.CLIENT_DIR}/index.html"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.map")) and is_share(out)
    assert ng.HIDE_STATUS in (out / ng.CLIENT_DIR / "index.html").read_text()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    runs = [r.id for r in project.runs()]
    assert [r["id"] for r in m["runs"]] == runs
    expected = {"raw", "truth"} | {f"{r}/{k}" for r in runs for k in ("prediction", "instances")}
    assert set(m["layers"]) == expected
    n = len(m["pictures"]["slices"])
    assert n == project.shape[0]
    for name, layer in m["layers"].items():
        attrs = json.loads((out / layer["path"] / ".zattrs").read_text())
        scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale == list(project.voxel_size), name
        assert sorted(p.name for p in (out / layer["pictures"]).iterdir()) == sorted(f"{i}.jpg" for i in range(n))
    assert json.loads((out / "share.json").read_text())["bytes"] == site.bytes


def test_manifest_content(site, project):
    m = site.manifest
    p = m["project"]
    assert p["shape"] == list(project.shape) and p["classes"] == [
        {"id": c.id, "name": c.name, "color": c.color} for c in project.classes]
    ann = p["annotations"]
    assert ann["labelled"] == sum(project.annotations.counts().get(c.id, 0) for c in project.classes) > 0
    assert ann["labelled_slices"] == list(range(project.shape[0]))
    for r in m["runs"]:
        assert r["architecture"]["name"] == "unet2d" and r["architecture"]["title"]
        assert r["architecture"]["options"]["depth"] == 2 and r["options"]["seed"] in (0, 1)
        assert len(r["curves"]["loss"]) == r["iterations"] > 0 and r["duration_s"] > 0
        assert 0 <= r["scores"]["classes"]["pixel_error"] <= 1 and "are" in r["scores"]["instances"]
        assert 0 <= r["uncertainty"]["uncertain_fraction"] <= 1
        layers = [layer["source"][0]["url"] for layer in r["neuroglancer"]["layers"]]
        assert layers[0] == f"zarr://{ng.SITE}data/raw.ome.zarr/" and len(layers) == 4
        assert json.loads((site.path / "runs" / f"{r['id']}.json").read_text())["id"] == r["id"]
        objects = r["objects"]  # the object table of the run's instances (workbench.objects)
        csv_lines = (site.path / objects["csv"]).read_text().splitlines()
        assert objects["count"] == len(csv_lines) - 1 > 0 and csv_lines[0].startswith("id,class,voxels")
        assert sum(objects["per_class"].values()) == objects["count"]
        assert [o["voxels"] for o in objects["largest"]] == sorted((o["voxels"] for o in objects["largest"]), reverse=True)


def test_pages_hold_the_plots_and_no_outside_urls(site):
    index = (site.path / "index.html").read_text()
    for name in ("wb-curves", "wb-compare", "wb-slices", "wb-z-slider", "ng-current", "wb-objects"):
        assert name in index
    for page in ("index.html", "summary.html"):
        text = (site.path / page).read_text()
        assert "cdn." not in text and "https://" not in text.replace("https://doi", "")
    assert "@media print" in (site.path / "static" / "site.css").read_text()
    assert "<svg" in (site.path / "summary.html").read_text()


def test_size_budget_is_kept(project, tmp_path, site):
    assert site.bytes <= site.plan.estimate  # the estimate is conservative
    budget = site.plan.estimate - 1  # a byte less than the full share's estimate: something has to go
    small = build_site(project, tmp_path / "small", ShareOptions(max_mb=budget / 1e6))
    assert small.bytes <= budget and small.plan.dropped
    assert small.plan.dropped[0].endswith("/instances") and "raw" in small.manifest["layers"]
    assert set(small.manifest["layers"]) == set(small.plan.layers)
    for name in small.plan.dropped:
        assert not (tmp_path / "small" / "slices" / "runs" / name).exists()
    with pytest.raises(WorkbenchError, match="too small"):
        build_site(project, tmp_path / "tiny", ShareOptions(max_mb=1))
    assert not (tmp_path / "tiny").exists()


def test_one_run_and_an_earlier_share_replaced(project, tmp_path):
    first = project.runs()[0].id
    out = tmp_path / "share"
    write_share(project, out, ShareOptions(runs=(first,)))
    (out / "stale.txt").write_text("from the earlier share")
    again = write_share(project, out, ShareOptions(runs=(first,)))
    assert [r["id"] for r in again.manifest["runs"]] == [first] and not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share"]


def test_bad_input_one_line_and_nothing_overwritten(project, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["share", str(project.root), str(other)]) == 2
    assert (other / "keep.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["keep.txt"]
    assert main(["share", str(tmp_path), str(tmp_path / "x")]) == 2
    assert main(["share", str(project.root), str(tmp_path / "y"), "--run", "no-such-run"]) == 2
    assert main(["share", str(project.root), str(project.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("workbench share: error: ") for line in err)
    assert "not an earlier share" in err[0] and "not an EM Workbench project" in err[1]
    assert "no run 'no-such-run'" in err[2] and "not an earlier share" in err[3]
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]


def test_cli_writes_the_site(project, tmp_path, capsys):
    assert main(["share", str(project.root), str(tmp_path / "s"), "--max-mb", "100"]) == 0
    out = capsys.readouterr().out
    assert "index.html" in out and (tmp_path / "s" / "index.html").exists()
    shutil.rmtree(tmp_path / "s")


def test_project_without_runs_or_truth(tmp_path):
    import numpy as np

    from workbench.project import Project

    raw = np.random.default_rng(0).integers(0, 255, (3, 40, 48)).astype(np.uint8)
    project = Project.create(tmp_path / "plain", raw=raw)
    site = build_site(project, tmp_path / "site")
    m = site.manifest
    assert m["runs"] == [] and set(m["layers"]) == {"raw"} and not m["project"]["has_truth"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "wb-slices" in index and "No trained runs" in index
    assert [layer["name"] for layer in m["neuroglancer"]["project"]["layers"]] == ["raw"]

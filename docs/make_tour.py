"""Make the README's tour, ``docs/images/tour_<n>_<step>.png``, from a reproducible run of the app.

    make tour                                   # or: .venv/bin/python docs/make_tour.py [--iterations N]

1. A fresh project ``tour`` in ``~/em-workbench-tour/`` (``--dir``) with the built-in sample (seed 0).
2. Scribbles a careful annotator would draw: :func:`workbench.annotations.simulate_scribbles` on the sample's
   truth (seed 0), on a few slices, saved in the project's label store.
3. The 2D U-Net trained on them as the app's train step does, for a fixed number of iterations (seed 0); then,
   as the app teaches, a second round: strokes where that model was wrong (cell interiors it called membrane,
   next to the membranes, where centre-line scribbles say nothing) and the model trained again on all strokes.
4. The app served on that project and driven in headless chromium (``/usr/bin/chromium`` or
   ``WORKBENCH_CHROMIUM``, as the browser tests): every step is shown and photographed; the results step
   predicts (with test-time augmentation) and opens Neuroglancer.
5. The scores are printed; the images replace the tour only when the pixel error is at most
   ``--max-pixel-error`` (the tour shows a segmentation a learner would be proud of).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"
SHAPE = (16, 256, 256)
SEED = 0
#: scribbles: this fraction of all voxels, drawn on these slices only (about 500 voxels per class and slice)
FRACTION, SLICES = 0.005, (2, 5, 8, 11, 14)
#: the second round's corrections: this fraction of all voxels, inside the first model's errors
CORRECTIONS = 0.005
#: the app's 2D U-Net at half width: the workbench's recipe for scribbles on a CPU
ARCH, ARCH_OPTIONS = "unet2d", {"base_channels": 8}
SHOWN_SLICE = 8
VIEWPORT = {"width": 1280, "height": 1100}
CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
SHOTS = ("1_data", "2_architecture", "3_annotate", "4_train", "5_results", "6_neuroglancer")
#: plot canvases inside an element (Bokeh draws into shadow roots)
CANVASES_JS = """(sel) => { const root = document.querySelector(sel); if (!root) return 0; let n = 0;
  const walk = (r) => r.querySelectorAll('*').forEach(e => { if (e.tagName === 'CANVAS' && e.width > 100) n++;
  if (e.shadowRoot) walk(e.shadowRoot); }); walk(root); return n; }"""
NG_READY_JS = """() => { const v = window.viewer; if (v === undefined || !document.querySelector('canvas')) return false;
  try { return v.display.isReady(); } catch (e) { return true; } }"""


def log(text: str) -> None:
    print(f"[tour {time.strftime('%H:%M:%S')}] {text}", flush=True)


def make_project(workspace: Path):
    """A fresh project ``<workspace>/tour`` on the built-in sample, with simulated scribbles."""
    from workbench.annotations import simulate_scribbles
    from workbench.project import Project, ProjectOptions

    root = workspace / "tour"
    if root.exists():
        if not Project.is_project(root):
            raise SystemExit(f"{root} exists and is not a workbench project: choose another --dir")
        shutil.rmtree(root)
    (workspace / ".workbench-current").unlink(missing_ok=True)  # the app opens this project, not the last one
    project = Project.create(root, raw=None, options=ProjectOptions(sample_shape=SHAPE, seed=SEED))
    labels, achieved = simulate_scribbles(project.truth.read(), FRACTION, seed=SEED, membrane_value=1, slices=SLICES)
    project.annotations.import_labels(labels)
    project.state.update(arch=ARCH, arch_options=ARCH_OPTIONS, annotate_z=SHOWN_SLICE, annotate_class=1,
                         step="data")
    log(f"project {root}: scribbles on slices {list(SLICES)}, "
        + ", ".join(f"{c.name} {100 * achieved[c.id]:.2f} %" for c in project.classes) + " of the voxels")
    return project


def add_corrections(project, run_dir: Path) -> None:
    """Interior strokes where the model of ``run_dir`` calls interior voxels of the scribbled slices membrane."""
    import numpy as np

    from workbench.annotations import ScribbleStyle, simulate_scribbles
    from workbench.inference import predict_region
    from workbench.training import load_run

    zs = list(SLICES)
    raw, truth = project.raw.read(), project.truth.read()
    pred = np.ones_like(truth)  # "right" (membrane) outside the scribbled slices: no strokes there
    pred[zs] = predict_region(load_run(run_dir), raw[zs], tta=True).argmax(0) + 1
    wrong = np.where((pred == 1) & (truth == 2), 2, 1).astype(np.uint8)  # 2: interior called membrane
    labels, achieved = simulate_scribbles(wrong, CORRECTIONS, seed=SEED + 1, membrane_value=1, slices=zs,
                                          style=ScribbleStyle(membrane_share=0.0, erosion=1))
    project.annotations.import_labels(labels, merge=True)
    log(f"corrections: {100 * achieved[2]:.2f} % of the voxels, interior strokes where the first model said membrane")


def train(project, iterations: int) -> Path:
    """Train the app's model on the project's scribbles for ``iterations`` steps (as the train step would)."""
    from workbench.training import Trainer
    from workbench.training.config import TrainConfig

    cfg = TrainConfig(arch=ARCH, arch_options=dict(ARCH_OPTIONS), target="semantic",
                      classes=[c.name for c in project.classes], iterations=iterations, val_fraction=0.25,
                      val_every=20, log_every=5, seed=SEED)
    run_dir = project.new_run_dir(ARCH)
    t0 = time.monotonic()

    def progress(done, total):
        if done % 50 == 0 or done == total:
            log(f"training: iteration {done}/{total} ({time.monotonic() - t0:.0f} s)")

    Trainer(cfg, project.raw, project.annotations.read(), run_dir, progress=progress).run()
    project.state.update(last_run=run_dir.name)
    return run_dir


def _wait_plots(page, selector: str, n: int = 1, timeout: float = 120.0) -> None:
    """Wait until ``n`` plot canvases are drawn in ``selector``, then a little more for their pixels."""
    page.wait_for_function(f"(sel) => ({CANVASES_JS})(sel) >= {n}", arg=selector, timeout=timeout * 1000)
    page.wait_for_timeout(2500)


def _tab(page, title: str, step: str) -> None:
    page.locator(".lm-TabBar-tab", has_text=title).click()
    page.wait_for_selector(f".wb-step-{step}", state="visible", timeout=180_000)


def _text_includes(page, selector: str, text: str, timeout: float = 300.0) -> None:
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
                           arg=[selector, text], timeout=timeout * 1000)


def drive_app(page, url: str, out: Path) -> None:
    """Walk through the five steps of the app at ``url``, saving a screenshot of each into ``out``."""
    def shot(name: str) -> None:
        page.screenshot(path=str(out / f"tour_{name}.png"))
        log(f"screenshot tour_{name}.png")

    page.goto(url, timeout=240_000)
    page.wait_for_selector(".wb-step-data", timeout=240_000)
    _wait_plots(page, ".wb-data-preview")
    shot("1_data")
    _tab(page, "2 Architecture", "architecture")
    page.wait_for_function("() => !document.querySelector('.wb-step-architecture').innerText.includes('measuring')",
                           timeout=300_000)
    shot("2_architecture")
    _tab(page, "3 Annotate", "annotate")
    _wait_plots(page, ".wb-annotate-view")
    shot("3_annotate")
    _tab(page, "4 Train", "train")
    _text_includes(page, ".wb-step-train", "prediction of slice")  # the trained model's prediction is shown
    _wait_plots(page, ".wb-step-train", 2)
    shot("4_train")
    _tab(page, "5 Results", "results")
    page.locator(".wb-predict-tta input").check()
    page.click(".wb-action-predict")
    _text_includes(page, ".wb-predict-eta", "done in", timeout=900)
    # no instances: on this sample a 3D watershed of a 2D model's boundaries merges cells through gaps in z
    _wait_plots(page, ".wb-results-compare", 3)
    page.evaluate("() => window.scrollTo(0, 0)")
    shot("5_results")
    page.click(".wb-step-results .wb-action-neuroglancer")
    frame_el = page.wait_for_selector(".wb-step-results iframe.wb-ng-frame", timeout=120_000)
    frame_el.scroll_into_view_if_needed()
    frame = frame_el.content_frame()
    frame.wait_for_function("() => window.viewer !== undefined", timeout=180_000)
    try:
        frame.wait_for_function(NG_READY_JS, timeout=120_000, polling=500)
    except Exception:  # a busy machine may still be loading chunks: photograph what is there
        log("Neuroglancer still loading chunks; taking the picture anyway")
    page.wait_for_timeout(3000)
    shot("6_neuroglancer")


def photograph(project, out: Path) -> None:
    """Serve the app on ``project`` and photograph it in headless chromium."""
    from playwright.sync_api import sync_playwright

    from widgets.serve import AppServerOptions, start_app_server

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: `make browser` installs Debian chromium")
    server = start_app_server(AppServerOptions(port=0, project=project.root))
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                                               "--ignore-gpu-blocklist", "--disable-background-networking"])
            try:
                drive_app(browser.new_context(viewport=VIEWPORT).new_page(), server.url, out)
            finally:
                browser.close()
    finally:
        server.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path("~/em-workbench-tour"),
                   help="workspace of the tour's project (its folder 'tour' is made afresh)")
    p.add_argument("--iterations", type=int, default=500, help="training iterations of each round")
    p.add_argument("--images", type=Path, default=IMAGES, help="where the tour's PNGs go")
    p.add_argument("--max-pixel-error", type=float, default=0.1,
                   help="keep the images only when the prediction's pixel error is at most this")
    args = p.parse_args(argv)
    from workbench.metrics import evaluate_run

    workspace = args.dir.expanduser().absolute()
    workspace.mkdir(parents=True, exist_ok=True)
    project = make_project(workspace)
    add_corrections(project, train(project, args.iterations))
    run_dir = train(project, args.iterations)
    shots = workspace / "screenshots"
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir()
    photograph(project, shots)
    sem = evaluate_run(project, run_dir.name)["classes"]
    log(f"pixel error {sem['pixel_error']:.4f}, mean IoU {sem['mean_iou']:.3f}")
    if sem["pixel_error"] > args.max_pixel_error:
        log(f"pixel error above {args.max_pixel_error}: the tour is left as it was (screenshots in {shots})")
        return 1
    args.images.mkdir(parents=True, exist_ok=True)
    for name in SHOTS:
        shutil.copy(shots / f"tour_{name}.png", args.images / f"tour_{name}.png")
    log(f"tour written to {args.images}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

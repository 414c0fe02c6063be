"""Shared fixtures for browser tests: headless Debian chromium through Playwright, screenshots, pixels.

Every test here is marked ``browser`` automatically. Fixtures:

- ``browser``: one headless chromium per test session (``/usr/bin/chromium``, never ``playwright
  install``), with WebGL2 on SwiftShader. A missing chromium fails the test with the install command.
- ``page``: a fresh 1280 x 900 page per test; ``page.console_log`` collects console messages and page
  errors (printed when the test fails, through ``page_log``).
- ``shoot(target, name, clip=None) -> Path``: screenshot of a page or element into ``artifacts_dir``
  as ``<test name>-<name>.png``; look at these files after a run.
- ``pixels``: :class:`Pixels` helpers to assert that something rendered: ``load``, ``crop``,
  ``assert_not_uniform``, ``count_color``, ``assert_color_present``, ``assert_not_error_panel``.
- ``wait_for_neuroglancer(frame, timeout=60)``: waits until a Neuroglancer client in ``frame`` (a page
  or an iframe's ``content_frame()``) has its viewer and reports all visible chunks loaded.

A browser test must prove something rendered: take a screenshot, then assert on its pixels.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
]
VIEWPORT = {"width": 1280, "height": 900}


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def _playwright():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(_playwright):
    """Headless chromium (one per session)."""
    assert Path(CHROMIUM).exists(), (
        f"{CHROMIUM} is missing: install Debian chromium (`apt-get install -y chromium`, or `make browser`)"
    )
    b = _playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield b
    b.close()


@pytest.fixture
def page(browser, request):
    """A fresh page (own context: no cookies shared between tests); ``page.console_log`` is a list."""
    context = browser.new_context(viewport=VIEWPORT)
    pg = context.new_page()
    log: list[str] = []
    pg.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: log.append(f"PAGEERROR: {e}"))
    pg.console_log = log
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("browser console:\n  " + "\n  ".join(log[-30:]))
    context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def shoot(artifacts_dir, request):
    """``shoot(target, name, clip=None) -> Path``: save a screenshot of a page or element handle."""
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)

    def _shoot(target, name: str, clip: dict | None = None, full_page: bool = False) -> Path:
        path = Path(artifacts_dir) / f"{prefix}-{name}.png"
        kwargs = {"path": str(path)}
        if clip is not None:
            kwargs["clip"] = clip
        if full_page:
            kwargs["full_page"] = True
        target.screenshot(**kwargs)
        return path

    return _shoot


class Pixels:
    """Pixel checks on screenshots (RGB uint8 arrays ``(h, w, 3)``)."""

    @staticmethod
    def load(src) -> np.ndarray:
        """RGB array from a path, PNG bytes or an array."""
        from PIL import Image

        if isinstance(src, np.ndarray):
            return src[..., :3]
        if isinstance(src, (bytes, bytearray)):
            return np.asarray(Image.open(io.BytesIO(src)).convert("RGB"))
        return np.asarray(Image.open(src).convert("RGB"))

    @staticmethod
    def crop(img: np.ndarray, box) -> np.ndarray:
        """``box``: ``(x, y, w, h)`` or a Playwright bounding box dict."""
        if isinstance(box, dict):
            box = (box["x"], box["y"], box["width"], box["height"])
        x, y, w, h = (int(round(v)) for v in box)
        return img[max(0, y) : y + h, max(0, x) : x + w]

    @staticmethod
    def std(img: np.ndarray) -> float:
        return float(np.asarray(img, dtype=np.float64).std())

    @classmethod
    def assert_not_uniform(cls, img: np.ndarray, min_std: float = 8.0, what: str = "panel") -> None:
        """The region shows data, not one flat colour."""
        s = cls.std(img)
        assert s >= min_std, f"{what} looks uniform (pixel std {s:.1f} < {min_std}): nothing rendered"

    @staticmethod
    def color_mask(img: np.ndarray, rgb, tol: int = 40) -> np.ndarray:
        """Pixels within ``tol`` (per channel) of ``rgb`` (a tuple or ``#rrggbb``)."""
        if isinstance(rgb, str):
            c = rgb.lstrip("#")
            rgb = (int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16))
        diff = np.abs(np.asarray(img, dtype=np.int16) - np.asarray(rgb, dtype=np.int16)[None, None, :])
        return np.all(diff <= tol, axis=-1)

    @classmethod
    def count_color(cls, img: np.ndarray, rgb, tol: int = 40) -> int:
        return int(cls.color_mask(img, rgb, tol).sum())

    @staticmethod
    def hue_mask(img: np.ndarray, channel: str, min_value: int = 120, margin: int = 60) -> np.ndarray:
        """Pixels where ``channel`` (``"r"``, ``"g"``, ``"b"``) dominates the other two by ``margin``
        (robust to blending with a grey image underneath)."""
        a = np.asarray(img, dtype=np.int16)
        i = "rgb".index(channel)
        others = [a[..., j] for j in range(3) if j != i]
        return (a[..., i] >= min_value) & (a[..., i] - np.maximum(*others) >= margin)

    @classmethod
    def assert_color_present(cls, img: np.ndarray, rgb, min_pixels: int = 50, tol: int = 40, what: str = "") -> int:
        n = cls.count_color(img, rgb, tol)
        assert n >= min_pixels, f"expected >= {min_pixels} pixels near {rgb} {what}, found {n}"
        return n

    @classmethod
    def assert_not_error_panel(cls, frame) -> None:
        """No Neuroglancer/WebGL error text in ``frame`` (page or iframe)."""
        text = frame.evaluate("() => document.body ? document.body.innerText : ''")
        for bad in ("WebGL", "Error retrieving", "Failed to", "not supported"):
            assert bad not in text, f"the page shows an error ({bad!r}): {text[:300]!r}"


@pytest.fixture
def pixels() -> type[Pixels]:
    return Pixels


NG_READY_JS = """() => {
  const v = window.viewer;
  if (v === undefined || !document.querySelector('canvas')) return false;
  try { return v.display.isReady(); } catch (e) { return true; }
}"""


@pytest.fixture
def wait_for_neuroglancer():
    """``wait_for_neuroglancer(frame, timeout=60)``: the client is up and its visible chunks loaded."""

    def _wait(frame, timeout: float = 60.0) -> None:
        frame.wait_for_function("() => window.viewer !== undefined", timeout=timeout * 1000)
        frame.wait_for_function(NG_READY_JS, timeout=timeout * 1000, polling=200)

    return _wait

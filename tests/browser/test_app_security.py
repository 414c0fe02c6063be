"""The app's page in headless chromium: the token leaves the address bar, the login cookie is out of the
page's reach, and with that cookie the browser still gets nothing of Jupyter but the app."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``workbench app`` on a free port with a small sample project."""
    from widgets.serve import AppServerOptions, start_app_server
    from workbench.project import Project, ProjectOptions

    root = tmp_path_factory.mktemp("secure-app")
    project = Project.create(root / "sample", raw=None, options=ProjectOptions(sample_shape=(4, 128, 128)))
    server = start_app_server(AppServerOptions(port=0, project=project.root, data=root))
    yield server
    server.stop()


REFUSED_FROM_THE_PAGE = """async () => {
  const out = {};
  const tries = [['GET', 'lab'], ['GET', 'tree'], ['GET', 'terminals/1'], ['GET', 'api/contents'],
                 ['POST', 'api/kernels'], ['POST', 'api/sessions'], ['POST', 'api/terminals'],
                 ['PUT', 'api/contents/x.py'], ['GET', 'files/workbench.ipynb']];
  for (const [method, path] of tries) {
    const r = await fetch('/' + path, {method, body: method === 'GET' ? undefined : '{}', credentials: 'same-origin'});
    out[method + ' /' + path] = r.status;
  }
  out.socket = await new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/api/kernels/12345678-1234-4234-8234-123456789abc/channels`);
    ws.onopen = () => { ws.close(); resolve('open'); };
    ws.onerror = () => resolve('refused');
  });
  return out;
}"""


def test_token_leaves_the_url_bar(app_server, page, shoot, pixels):
    assert "token=" in app_server.url
    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-data", timeout=240_000)
    assert app_server.token not in page.url and "token=" not in page.url, page.url
    assert page.url.endswith(f"/voila/render/{app_server.notebook}"), page.url
    assert "username-" not in page.evaluate("() => document.cookie"), "the login cookie must be HttpOnly"
    # the page works from its cookie: the data preview renders
    page.wait_for_selector(".wb-data-preview canvas", timeout=120_000)
    box = page.locator(".wb-data-preview").bounding_box()
    for _ in range(30):
        crop = pixels.crop(pixels.load(shoot(page, "app-clean-url")), box)
        if pixels.std(crop) > 8:
            break
        page.wait_for_timeout(1000)
    pixels.assert_not_uniform(crop, what="data slice preview (page loaded from the cookie)")
    # with the cookie, the browser reaches nothing else of the server
    refused = page.evaluate(REFUSED_FROM_THE_PAGE)
    assert refused.pop("socket") == "refused"
    assert set(refused.values()) == {404}, refused
    # a new tab of the same browser opens the clean URL without the token
    other = page.context.new_page()
    other.goto(page.url, timeout=240_000)
    other.wait_for_selector(".wb-step-data", timeout=240_000)
    assert "token=" not in other.url
    other.close()


def test_kernels_get_the_malloc_tuning_and_the_server_does_not(app_server, page):
    """The server runs with glibc's default malloc (it returns memory it no longer holds); the page's
    kernel, which runs the tensors, with the tuning of :mod:`workbench.tuning`."""
    import psutil

    from workbench.tuning import GLIBC_TUNABLES

    page.goto(app_server.url, timeout=240_000)
    page.wait_for_selector(".wb-step-data", timeout=240_000)
    server = psutil.Process(app_server.process.pid)
    kernels = [p for p in server.children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
    assert kernels, "the page's kernel is a child of the server"
    # /proc/PID/environ shows the variable as glibc left it after parsing it in place: up to the first ':'
    first = GLIBC_TUNABLES.split(":")[0]
    assert server.environ().get("GLIBC_TUNABLES") != first
    assert all(k.environ().get("GLIBC_TUNABLES") == first for k in kernels)
    assert "workbench heap: freed memory returned to the system" in app_server.log_text()
    assert server.environ().get("PYTHONMALLOC") == "malloc"
    assert all(k.environ().get("PYTHONMALLOC") == "pymalloc" for k in kernels)

"""The dashboard cannot run code: only GET/HEAD of the projects list and of the shares' files; every
Jupyter API path refused, no /lab or /tree, nothing outside the projects folder; tokens; exposure rule."""

from __future__ import annotations

import http.client
import json
import os
import threading
import urllib.parse

import pytest

from workbench.cli import main
from workbench.share.server import COOKIE, DashboardConfig, make_server

JUPYTER_API = ["/api/kernels", "/api/sessions", "/api/contents", "/api/terminals", "/api/kernels/x/restart",
               "/api/contents/secret.txt", "/api/kernelspecs", "/terminals/websocket/1", "/voila/render/x.ipynb"]


BIG_SCRIPT = "function f(x) { return x + 1; }\n" * 2000


def _fake_build(root, out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(f"<html>share of {root.name}</html>")
    (out / "data").mkdir(exist_ok=True)
    (out / "data" / "x.json").write_text("{}")
    (out / "static").mkdir(exist_ok=True)
    (out / "static" / "big.js").write_text(BIG_SCRIPT)


@pytest.fixture
def server(tmp_path):
    projects = tmp_path / "projects"
    for name in ("alpha", "beta"):
        (projects / name).mkdir(parents=True)
        (projects / name / "project.json").write_text(json.dumps({"name": name, "raw": {"shape": [1, 2, 3]}}))
    (projects / "alpha" / "secret.txt").write_text("project file")
    (projects / "alpha" / "data.zarr" / "0").mkdir(parents=True)
    (projects / "alpha" / "data.zarr" / ".zattrs").write_text('{"multiscales": []}')
    (projects / "alpha" / "data.zarr" / "0" / "0").write_bytes(b"chunk")
    (tmp_path / "outside.txt").write_text("outside")
    (projects / "notaproject").mkdir()

    def start(token=None, live=None):
        config = DashboardConfig(projects=projects, cache=tmp_path / "cache", build=_fake_build,
                                 front_page=lambda entries: "<html>" + " ".join(e["href"] for e in entries) + "</html>",
                                 token=token, live=live)
        srv = make_server(config, "127.0.0.1", 0)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]

    servers: list = []
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _request(port, method, path, headers=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, resp


def test_front_page_and_shares(server):
    port = server()
    status, body, _ = _request(port, "GET", "/")
    assert status == 200 and b"/p/alpha/" in body and b"/p/beta/" in body and b"notaproject" not in body
    assert _request(port, "GET", "/p/alpha/")[:2] == (200, b"<html>share of alpha</html>")
    assert _request(port, "GET", "/p/beta/index.html")[0] == 200
    assert _request(port, "HEAD", "/p/beta/data/x.json")[0] == 200
    assert _request(port, "GET", "/p/alpha")[0] == 301


def test_text_files_go_out_gzipped_to_browsers_that_accept_it(server):
    import gzip

    port = server()
    status, body, resp = _request(port, "GET", "/p/alpha/static/big.js", {"Accept-Encoding": "gzip, deflate"})
    assert status == 200 and resp.getheader("Content-Encoding") == "gzip"
    assert int(resp.getheader("Content-Length")) == len(body) < len(BIG_SCRIPT) / 10
    assert gzip.decompress(body).decode() == BIG_SCRIPT
    assert _request(port, "GET", "/p/alpha/static/big.js", {"Accept-Encoding": "gzip"})[1] == body  # cached
    status, plain, resp = _request(port, "GET", "/p/alpha/static/big.js")
    assert resp.getheader("Content-Encoding") is None and plain.decode() == BIG_SCRIPT
    assert resp.getheader("Vary") == "Accept-Encoding"


def _listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (Linux)."""
    lines = [ln.split() for ln in open("/proc/net/netstat").read().splitlines() if ln.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1]))["ListenOverflows"])


@pytest.mark.skipif(not os.path.exists("/proc/net/netstat"), reason="Linux counters")
def test_many_connections_at_once_are_all_queued(server):
    """Browsers of many viewers open their connections together: none may be dropped (and retried 1 s later)."""
    import socket

    port = server()
    before = _listen_overflows()
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(80)]
    for sock in socks:
        sock.sendall(b"GET /p/alpha/data/x.json HTTP/1.0\r\n\r\n")
    answers = []
    for sock in socks:
        answers.append(sock.recv(64))
        sock.close()
    assert all(a.startswith(b"HTTP/1.0 200") for a in answers)
    assert _listen_overflows() == before


@pytest.mark.parametrize("path", JUPYTER_API)
def test_every_jupyter_api_post_is_refused(server, path):
    port = server()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, _, resp = _request(port, method, path, {"Content-Type": "application/json"}, b'{"name": "python3"}')
        assert status == 405 and resp.getheader("Allow") == "GET, HEAD", (method, path)
    assert _request(port, "GET", path)[0] == 404


@pytest.mark.parametrize("path", ["/lab", "/lab/", "/tree", "/tree/", "/notebooks/x.ipynb", "/files/secret.txt",
                                  "/edit/x", "/terminals/1", "/login"])
def test_no_jupyter_pages(server, path):
    assert _request(server(), "GET", path)[0] == 404


@pytest.mark.parametrize("path", [
    "/p/../outside.txt", "/p/alpha/../../outside.txt", "/p/alpha/%2e%2e/%2e%2e/outside.txt",
    "/p/alpha/..%2f..%2foutside.txt", "/p/..%2f..%2foutside.txt/x", "/p/alpha/secret.txt", "/p/alpha/project.json",
    "/p/notaproject/", "/p/nosuch/", "/p/alpha/%00", "/p/alpha/.hidden", "/p/%2e%2e/outside.txt",
    "/p/alpha//etc/passwd", "/p/alpha/.zattrs", "/p/alpha/data/.zattrs/../../../outside.txt", "/p/alpha/..\\..\\outside.txt", "//etc/passwd", "/p/alpha/data/../../../outside.txt"])
def test_paths_outside_are_refused(server, path):
    status, body, _ = _request(server(), "GET", path)
    assert status == 404 and b"outside" not in body.replace(b"outside the", b"") and b"project file" not in body


def test_live_state_and_project_data(server):
    port = server(live=lambda root: {"layers": [root.name]} if root.name == "alpha" else None)
    status, body, resp = _request(port, "GET", "/p/alpha/live.json")
    assert status == 200 and json.loads(body) == {"layers": ["alpha"]} and "json" in resp.getheader("Content-Type")
    assert _request(port, "GET", "/p/beta/live.json")[0] == 404
    assert _request(port, "GET", "/p/alpha/project-data/.zattrs")[:2] == (200, b'{"multiscales": []}')
    assert _request(port, "GET", "/p/alpha/project-data/0/0")[:2] == (200, b"chunk")
    for path in ("/p/alpha/project-data/", "/p/alpha/project-data/../secret.txt", "/p/alpha/project-data/%2e%2e/secret.txt",
                 "/p/alpha/project-data/../project.json", "/p/beta/project-data/.zattrs", "/p/nosuch/live.json"):
        assert _request(port, "GET", path)[0] == 404, path
    assert _request(port, "POST", "/p/alpha/project-data/0/0", body=b"x")[0] == 405
    assert _request(server(), "GET", "/p/alpha/project-data/.zattrs")[0] == 404  # no live view: no project data


def test_token(server):
    port = server(token="s3cret")
    assert _request(port, "GET", "/")[0] == 403
    assert _request(port, "GET", "/p/alpha/?token=wrong")[0] == 403
    status, _, resp = _request(port, "GET", "/?token=s3cret")
    assert status == 200 and COOKIE in resp.getheader("Set-Cookie")
    assert _request(port, "GET", "/p/alpha/", {"Cookie": f"{COOKIE}=s3cret"})[0] == 200
    assert _request(port, "GET", "/p/alpha/", {"Authorization": "token s3cret"})[0] == 200
    assert _request(port, "POST", "/api/kernels?token=s3cret")[0] == 405


def test_dashboard_command_exposure(tmp_path, capsys):
    projects = tmp_path / "projects"
    projects.mkdir()
    assert main(["dashboard", "--projects", str(projects), "--host", "0.0.0.0", "--port", "0", "--no-wait"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--token or --public" in err[0]
    import tempfile
    from pathlib import Path

    temporary = set(Path(tempfile.gettempdir()).glob("workbench-dashboard-*"))
    assert main(["dashboard", "--projects", str(tmp_path / "nope"), "--port", "0", "--no-wait"]) == 2
    assert "no such projects folder" in capsys.readouterr().err
    assert main(["dashboard", "--projects", str(projects), "--port", "0", "--no-wait"]) == 0  # a temporary cache
    assert set(Path(tempfile.gettempdir()).glob("workbench-dashboard-*")) == temporary  # removed, both times
    capsys.readouterr()
    assert main(["dashboard", "--projects", str(projects), "--host", "0.0.0.0", "--port", "0", "--public",
                 "--no-wait", "--cache", str(tmp_path / "cache")]) == 0
    cap = capsys.readouterr()
    assert "warning: listening on 0.0.0.0" in cap.err and "http://127.0.0.1:" in cap.out
    assert main(["dashboard", "--projects", str(projects), "--port", "0", "--token", "abc", "--no-wait",
                 "--cache", str(tmp_path / "cache")]) == 0
    url = [line.strip() for line in capsys.readouterr().out.splitlines() if "http://" in line][0]
    assert urllib.parse.urlsplit(url).query == "token=abc" and urllib.parse.urlsplit(url).hostname == "127.0.0.1"
    assert main(["dashboard", "--projects", str(projects), "--port", "0", "--no-wait",
                 "--cache", str(projects / "cache")]) == 2


def test_share_written_again_when_the_project_changes(tmp_path, monkeypatch):
    import os

    import workbench.share.server as server_module
    from workbench.share.server import ShareCache

    monkeypatch.setattr(server_module, "RECHECK_SECONDS", 0.0)
    root = tmp_path / "projects" / "p"
    root.mkdir(parents=True)
    (root / "project.json").write_text("{}")
    builds = []
    cache = ShareCache(DashboardConfig(projects=tmp_path / "projects", cache=tmp_path / "cache",
                                       build=lambda r, o: (builds.append(r.name), _fake_build(r, o)),
                                       front_page=lambda e: ""))
    assert cache.site("p") == (tmp_path / "cache" / "p").resolve() and builds == ["p"]
    cache.site("p")
    assert builds == ["p"]  # unchanged: not written again
    (root / "runs" / "r1").mkdir(parents=True)
    (root / "runs" / "r1" / "metrics.jsonl").write_text('{"iteration": 1}\n')
    st = (root / "project.json").stat()
    os.utime(root / "project.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    cache.site("p")
    assert builds == ["p", "p"] and cache.site("nosuch") is None

"""``NeuroglancerFrame``: the iframe uses the proxied URL under a Jupyter server, the direct one otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from widgets.neuroglancer import NeuroglancerFrame, frame_url, proxy_base_from_env
from workbench.viewer import WorkbenchViewer


@pytest.fixture(scope="module")
def viewer():
    v = WorkbenchViewer(voxel_size=(1, 1, 1))
    v.set_raw(np.zeros((2, 8, 8), np.uint8))
    yield v
    v.close()


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"VOILA_BASE_URL": "/"}, "/"),
        ({"JUPYTERHUB_SERVICE_PREFIX": "/user/ana/", "VOILA_BASE_URL": "/user/ana/"}, "/user/ana/"),
        ({"WORKBENCH_PROXY_PORTS_DIR": "/tmp/x"}, "/"),
        ({"VOILA_BASE_URL": "/", "WORKBENCH_PROXY_BASE": "direct"}, None),
        ({"WORKBENCH_PROXY_BASE": "https://hub.example/user/ana/"}, "https://hub.example/user/ana/"),
    ],
)
def test_proxy_base_from_env(env, expected):
    assert proxy_base_from_env(env) == expected


def test_frame_urls(viewer):
    assert frame_url(viewer, env={}) == viewer.url()
    assert frame_url(viewer, env={"VOILA_BASE_URL": "/base/"}) == f"/base/proxy/{viewer.port}/v/{viewer.token}/"
    assert frame_url(viewer, proxy_base="direct", env={"VOILA_BASE_URL": "/"}) == viewer.url()


def test_frame_widget(viewer, monkeypatch):
    monkeypatch.setenv("VOILA_BASE_URL", "/")
    f = NeuroglancerFrame(viewer, height=321)
    assert f.url == f"/proxy/{viewer.port}/v/{viewer.token}/"
    assert f'src="{f.url}"' in f.frame.value and "height:321px" in f.frame.value
    assert "wb-neuroglancer" in f.widget._dom_classes and f.url in f.link.value
    f.reload()
    assert f'src="{f.url}"' in f.frame.value

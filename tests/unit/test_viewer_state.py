"""Neuroglancer state builders, tested on the state's JSON (no server, no browser)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from workbench.viewer import colors
from workbench.viewer import state as st


def test_import_workbench_viewer_does_not_import_neuroglancer():
    code = "import sys, workbench.viewer, workbench.ports; print('neuroglancer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_coordinate_space_is_zyx_in_nm():
    cs = st.coordinate_space((40, 4, 4)).to_json()
    assert cs == {"z": [40e-9, "m"], "y": [4e-9, "m"], "x": [4e-9, "m"]}
    with pytest.raises(ValueError):
        st.coordinate_space((0, 1, 1))


def test_new_state_centres_and_shows_xyz():
    j = st.state_to_json(st.new_state((40, 8, 8), shape=(10, 100, 200)))
    assert j["displayDimensions"] == ["x", "y", "z"]
    assert j["position"] == [5.5, 50.5, 100.5]
    assert j["layout"] == "4panel"
    assert j["crossSectionScale"] == pytest.approx(200 / 500)
    assert st.state_to_json(st.new_state((1, 1, 1), shape=(1, 64, 64)))["layout"] == "xy"


def test_contrast_window_from_percentiles_of_sampled_slices(rng):
    vol = rng.normal(100, 10, size=(40, 32, 32)).astype(np.float32)
    vol[:, 0, 0] = 1e6  # outliers must not stretch the window
    lo, hi = st.contrast_window(vol, n_slices=5)
    assert 60 < lo < 90 and 110 < hi < 140
    assert st.sample_slices((40, 1, 1), 5) == [0, 10, 20, 29, 39]
    assert st.contrast_window(np.zeros((3, 4, 4), np.uint8)) == (0.0, 1.0)


def test_raw_layer_shader_window():
    s = st.new_state((1, 1, 1))
    st.add_image_layer(s, "raw", "precomputed://x", (12, 200), dtype=np.uint8)
    layer = st.state_to_json(s)["layers"][0]
    assert layer["type"] == "image" and layer["name"] == "raw"
    assert "range=[12, 200]" in layer["shader"] and "window=[0, 255]" in layer["shader"]
    assert "emitGrayscale" in layer["shader"]


def test_labels_layer_has_class_colours_and_names():
    s = st.new_state((1, 1, 1))
    classes = [{"id": 1, "name": "membrane", "color": "#ff0000"}, {"id": 3, "name": "mito"}]
    st.add_labels_layer(s, "annotations", "precomputed://x", classes)
    layer = st.state_to_json(s)["layers"][0]
    assert layer["type"] == "segmentation"
    assert layer["segmentColors"] == {"1": "#ff0000", "3": colors.default_color(3)}
    assert sorted(layer["segments"]) == ["1", "3"]


def test_probability_layers_blend_additively_in_class_colours():
    s = st.new_state((1, 1, 1))
    names = st.add_probability_layers(s, ["precomputed://a", "precomputed://b"], ["membrane", "mito"],
                                      ["#ff0000", "#00ff00"])
    assert names == ["prob: membrane", "prob: mito"]
    layers = st.state_to_json(s)["layers"]
    assert all(lay["blend"] == "additive" for lay in layers)
    assert 'default="#ff0000"' in layers[0]["shader"] and 'default="#00ff00"' in layers[1]["shader"]
    with pytest.raises(ValueError):
        st.add_probability_layers(s, ["a"], ["x", "y"], ["#000000"])
    with pytest.raises(ValueError):
        st.probability_shader("red")


def test_instance_and_uncertainty_layers():
    s = st.new_state((1, 1, 1))
    st.add_instance_layer(s, "segmentation", "precomputed://seg")
    st.add_uncertainty_layer(s, "uncertainty", "precomputed://u")
    seg, unc = st.state_to_json(s)["layers"]
    assert seg["type"] == "segmentation" and "segmentColors" not in seg
    assert unc["type"] == "image" and "colormapJet" in unc["shader"]


def test_draw_layers_one_per_class():
    s = st.new_state((40, 4, 4))
    mapping = st.add_draw_layers(s, (40, 4, 4), ["membrane", "mito"])
    assert mapping == {"draw: membrane": 1, "draw: mito": 2}
    layers = st.state_to_json(s)["layers"]
    assert [lay["type"] for lay in layers] == ["annotation", "annotation"]
    assert layers[1]["annotationColor"] == colors.default_color(2)


def test_local_volume_in_json(tiny_volume):
    from workbench.viewer.sources import local_volume

    s = st.new_state((1, 1, 1))
    st.add_image_layer(s, "raw", local_volume(tiny_volume), (0, 255))
    src = st.state_to_json(s)["layers"][0]["source"]
    src = src[0] if isinstance(src, list) else src
    assert src["url"]["localVolume"] == {"shape": [16, 16, 16], "dtype": "uint8", "volumeType": "image"}


def test_normalize_classes_accepts_the_project_forms():
    class C:
        def __init__(self, id, name, color):
            self.id, self.name, self.color = id, name, color

    assert colors.normalize_classes([C(2, "b", "#010203"), C(1, "a", "#ffffff")])[0].name == "a"
    assert [c.id for c in colors.normalize_classes({0: "bg", 1: "x"})] == [1]
    assert len(colors.normalize_classes(None, n_default=3)) == 3
    assert colors.hex_to_rgb("#f00") == (255, 0, 0)
    with pytest.raises(ValueError):
        colors.hex_to_rgb("#12")


def test_set_layout():
    s = st.new_state((1, 1, 1))
    st.set_layout(s, "xy-3d")
    assert st.state_to_json(s)["layout"] == "xy-3d"

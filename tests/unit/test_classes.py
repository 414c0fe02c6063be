"""One palette and one class record for every view of labels (``workbench.classes``)."""

from __future__ import annotations

import numpy as np
import pytest

from workbench import classes as wc
from workbench.errors import WorkbenchError


def test_one_palette_and_one_record_everywhere(tmp_path):
    import workbench.project as project_mod
    import workbench.viewer as viewer
    from workbench.viewer import colors

    assert wc.PALETTE[:2] == ("#e6194b", "#3cb44b")  # what saved projects and the browser tests expect
    assert project_mod.PALETTE is colors.PALETTE is viewer.PALETTE is wc.PALETTE
    assert project_mod.LabelClass is colors.ClassInfo is viewer.ClassInfo is wc.LabelClass
    assert colors.normalize_classes is wc.normalize_classes and colors.default_color is wc.default_color
    p = project_mod.Project.create(tmp_path / "p", raw=np.zeros((2, 8, 8), np.uint8),
                                  options=project_mod.ProjectOptions(classes=["a", "b"]))
    assert [c.color for c in p.classes] == list(wc.PALETTE[:2])
    assert p.add_class("c").color == wc.default_color(3) == wc.PALETTE[2]
    assert wc.normalize_classes(p.classes) == p.classes  # the viewer takes the project's records as they are


def test_default_color_cycles():
    assert wc.default_color(1) == wc.PALETTE[0]
    assert wc.default_color(len(wc.PALETTE) + 1) == wc.PALETTE[0]


def test_hex_helpers():
    assert wc.hex_to_rgb("#f00") == (255, 0, 0) and wc.hex_to_rgb("#3CB44B") == (60, 180, 75)
    assert wc.rgb_to_hex((60, 180, 75, 255)) == "#3cb44b"
    for bad in ("#12", "#gggggg", "red"):
        with pytest.raises(ValueError):
            wc.hex_to_rgb(bad)
    assert wc.normalize_color("#ABC") == "#aabbcc" and wc.normalize_color((1, 2, 3)) == "#010203"
    with pytest.raises(WorkbenchError):
        wc.normalize_color((1, 2, 300))
    with pytest.raises(WorkbenchError):
        wc.normalize_color("red")


def test_normalize_classes_forms():
    got = wc.normalize_classes([("b", "#010203"), "x"])
    assert got == [wc.LabelClass(1, "b", "#010203"), wc.LabelClass(2, "x", wc.PALETTE[1])]
    assert wc.normalize_classes([{"id": 3, "name": "m"}]) == [wc.LabelClass(3, "m", wc.PALETTE[2])]
    assert [c.id for c in wc.normalize_classes({0: "bg", 2: "b", 1: "a"})] == [1, 2]
    assert [c.name for c in wc.normalize_classes(None, n_default=3)] == ["class 1", "class 2", "class 3"]
    assert wc.class_colors([{"id": 2, "name": "b", "color": "#00ff00"}]) == {2: "#00ff00"}


def test_label_rgba_colours_and_transparency():
    labels = np.array([[0, 1], [2, 5]])
    rgba = wc.label_rgba(labels, {1: "#ff0000", 2: "not a colour"}, alpha=200)
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (0, 0, 0, 0)
    assert tuple(rgba[0, 1]) == (255, 0, 0, 200)
    assert tuple(rgba[1, 0]) == (*wc.hex_to_rgb(wc.GREY), 200)  # a broken colour still shows
    assert tuple(rgba[1, 1]) == (*wc.hex_to_rgb(wc.default_color(5)), 200)  # no colour given: the palette's


def test_class_maps_of_probabilities():
    probs = np.zeros((2, 2, 3), np.float32)
    probs[1, 0] = 1.0
    assert wc.class_map(probs).tolist() == [[2, 2, 2], [1, 1, 1]]
    rgba = wc.class_rgba(probs, ["#ff0000", "#00ff00"], alpha=99)
    assert tuple(rgba[0, 0]) == (0, 255, 0, 99) and tuple(rgba[1, 0]) == (255, 0, 0, 99)
    klass = [wc.LabelClass(1, "membrane", "#ff0000"), wc.LabelClass(2, "interior", "#00ff00")]
    assert wc.prediction_colors(["interior", "other", "third"], klass) == ["#00ff00", "#00ff00", wc.GREY]


def test_instance_rgba_is_stable_and_zero_transparent():
    ids = np.array([[0, 7], [7, 8]])
    rgba = wc.instance_rgba(ids)
    assert rgba[0, 0, 3] == 0 and (rgba[0, 1] == rgba[1, 0]).all() and (rgba[0, 1] != rgba[1, 1]).any()
    assert (rgba[..., :3][ids > 0] >= 60).all()


def test_widgets_use_the_core_colour_maps():
    import widgets.results as results
    import widgets.train as train

    assert train.class_rgba is wc.class_rgba and train.prediction_colors is wc.prediction_colors
    import workbench.inference as wi

    assert results.prediction_class_map is wi.prediction_class_map and results.label_rgba is wc.label_rgba

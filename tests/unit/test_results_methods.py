"""The Results step lists every segmentation method with its one line for learners."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.project import Project, ProjectOptions
from workbench.segmentation import METHOD_HELP, SegmentMethod


@pytest.fixture
def ctx(tmp_path):
    from widgets.context import AppContext

    raw = np.random.default_rng(0).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    project = Project.create(tmp_path / "ws" / "demo", raw=raw, options=ProjectOptions(voxel_size=(30, 8, 8)))
    (tmp_path / "data").mkdir()
    c = AppContext(project, workspace=tmp_path / "ws", data_root=tmp_path / "data")
    yield c
    c.shutdown()


def test_results_lists_every_method_with_its_explanation(ctx):
    from widgets.results import ResultsPanel

    panel = ResultsPanel(ctx, size=64)
    assert [v for _, v in panel.seg_method.options] == SegmentMethod.values()
    for label, value in panel.seg_method.options:
        assert METHOD_HELP[SegmentMethod(value)] in label
    for method in ("mutex-watershed", "multicut", "gasp"):
        panel.seg_method.value = method
        assert method in panel.seg_method_help.value
        assert SegmentMethod(method).describe().split(":")[0] in panel.seg_method_help.value

"""Suggestions: boxes where the model is unsure, away from labels, spread over slices; the suggest command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.suggestions import (
    Suggestion,
    SuggestOptions,
    box_scores,
    error_enrichment,
    examined_slices,
    rank_boxes,
    read_suggestions,
    suggest,
    write_suggestions,
)


class _Unsure:
    """Certain everywhere except in a square of slice 1 (and a weaker square of slice 3)."""

    out_channels = 2
    channel_names = ["a", "b"]
    spatial_dims = 2
    activation = "softmax"
    target = "semantic"

    def predict(self, block):
        p = np.zeros((2, *block.shape), np.float32)
        p[0] = 1.0
        hot = block > 100  # the raw marks the unsure places
        warm = (block > 50) & ~hot
        p[0][hot], p[1][hot] = 0.5, 0.5
        p[0][warm], p[1][warm] = 0.8, 0.2
        return p


def _raw():
    raw = np.full((4, 96, 96), 10, np.uint8)
    raw[1, 40:72, 20:52] = 200
    raw[3, 10:42, 50:82] = 80
    raw[0, 0, 0] = 0  # not a constant volume
    return raw


def test_the_most_uncertain_box_comes_first_and_boxes_stay_inside():
    found = suggest(_Unsure(), _raw(), options=SuggestOptions(n=3, box=32))
    assert [s.z for s in found[:2]] == [1, 3]
    best = found[0]
    assert abs(best.y - 56) <= 2 and abs(best.x - 36) <= 2
    assert [s.score for s in found] == sorted((s.score for s in found), reverse=True)
    for s in found:
        z0, y0, x0, z1, y1, x1 = s.box
        assert 0 <= y0 and y1 <= 96 and 0 <= x0 and x1 <= 96 and z1 == z0 + 1 and y1 - y0 == 32


def test_labels_push_suggestions_away():
    labels = np.zeros((4, 96, 96), np.uint8)
    labels[1, 40:72, 20:52] = 1  # the user already scribbled the unsure square
    found = suggest(_Unsure(), _raw(), labels, SuggestOptions(n=1, box=32))
    assert found[0].z == 3


def test_picks_never_overlap_and_spread_over_slices():
    rng = np.random.default_rng(0)
    unc = {z: rng.random((64, 64)).astype(np.float32) for z in range(3)}
    unc[0] += 1.0  # slice 0 is much more uncertain
    picks = rank_boxes({z: box_scores(u, None, 16) for z, u in unc.items()}, 16, 8, same_slice_factor=0.3)
    assert len({p.z for p in picks}) > 1
    for i, a in enumerate(picks):
        for b in picks[i + 1:]:
            if a.z == b.z:
                assert abs(a.y - b.y) >= 16 or abs(a.x - b.x) >= 16


def test_rank_boxes_stops_when_the_slice_is_full():
    picks = rank_boxes({0: box_scores(np.ones((32, 32), np.float32), None, 16)}, 16, 10)
    assert 1 <= len(picks) <= 4


def test_examined_slices_are_spread_and_capped():
    assert examined_slices(5, 10) == [0, 1, 2, 3, 4]
    zs = examined_slices(100, 5)
    assert zs[0] == 0 and zs[-1] == 99 and len(zs) == 5


def test_error_enrichment_counts_inside_the_boxes():
    errors = np.zeros((1, 10, 10), bool)
    errors[0, :5, :5] = True  # 25 % of the volume
    box = Suggestion(0, 2, 2, (0, 0, 0, 1, 5, 5), 1.0)
    e = error_enrichment([box], errors)
    assert e["inside"] == 1.0 and e["average"] == 0.25 and e["enrichment"] == 4.0


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="empty volume"):
        suggest(_Unsure(), np.zeros((0, 8, 8), np.uint8))
    with pytest.raises(WorkbenchError, match="same value"):
        suggest(_Unsure(), np.zeros((2, 64, 64), np.uint8))
    labels = np.zeros((4, 96, 96), np.uint8)
    labels[0, 0, 0] = 5
    with pytest.raises(WorkbenchError, match="class 5 but the model predicts 2 classes"):
        suggest(_Unsure(), _raw(), labels)
    with pytest.raises(WorkbenchError, match="do not match"):
        suggest(_Unsure(), _raw(), np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(WorkbenchError):
        SuggestOptions(n=0)


def test_suggestions_file_round_trip(tmp_path):
    s = [Suggestion(1, 2, 3, (1, 0, 0, 2, 4, 4), 0.5)]
    path = write_suggestions(s, tmp_path / "s.json", model="run")
    assert json.loads(path.read_text()) == [{"z": 1, "y": 2, "x": 3, "box": [1, 0, 0, 2, 4, 4], "score": 0.5}]
    assert read_suggestions(path) == s
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(WorkbenchError, match="not a suggestions file"):
        read_suggestions(tmp_path / "bad.json")


def test_suggest_before_training_says_what_to_do(tmp_path, capsys):
    import tifffile

    tifffile.imwrite(tmp_path / "raw.tif", _raw())
    run = tmp_path / "run"
    run.mkdir()
    code = main(["suggest", "--model", str(run), "--raw", str(tmp_path / "raw.tif"), "--out", str(tmp_path / "s.json")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.json").exists()

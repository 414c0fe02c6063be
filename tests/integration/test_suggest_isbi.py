"""Suggestions on real EM: the model errs more inside the suggested boxes than elsewhere (ISBI 2012)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.cli import main


@pytest.fixture(scope="module")
def isbi_model(isbi_dir, tmp_path_factory):
    """A small 2D U-Net trained briefly on 1 % scribbles of a crop of sections 0-7."""
    import tifffile

    from workbench.annotations import simulate_scribbles
    from workbench.training import TrainConfig, Trainer

    raw = tifffile.imread(isbi_dir / "train-volume.tif")[:, :256, :256]
    truth = np.where(tifffile.imread(isbi_dir / "train-labels.tif")[:, :256, :256] > 0, 2, 1).astype(np.uint8)
    scribbles, _ = simulate_scribbles(np.where(truth[:8] == 1, 0, 255), 0.01, seed=0)
    labels = np.zeros_like(truth)
    labels[:8] = scribbles
    tmp = tmp_path_factory.mktemp("suggest")
    cfg = TrainConfig(arch="unet2d", arch_options={"base_channels": 8}, iterations=60, batch_size=8,
                      patch_shape=(1, 128, 128), device="cpu", seed=0)
    Trainer(cfg, raw[:8], labels[:8], tmp / "run").run()
    tifffile.imwrite(tmp / "raw.tif", raw)
    tifffile.imwrite(tmp / "labels.tif", labels)
    return tmp, raw, truth


def test_errors_concentrate_inside_the_suggested_boxes(isbi_model):
    from workbench.suggestions import error_enrichment, read_suggestions

    tmp, raw, truth = isbi_model
    out = tmp / "suggestions.json"
    code = main(["suggest", "--model", str(tmp / "run"), "--raw", str(tmp / "raw.tif"), "--labels",
                 str(tmp / "labels.tif"), "--n", "6", "--box", "32", "--no-progress", "--out", str(out)])
    assert code == 0
    items = json.loads(out.read_text())
    assert len(items) == 6 and [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert len({i["z"] for i in items}) >= 3  # spread over the volume, not one slice

    from workbench.inference import predict_array
    from workbench.training import load_run

    probs = predict_array(load_run(tmp / "run", device="cpu"), raw)
    errors = (np.argmax(probs, axis=0) + 1) != truth
    found = read_suggestions(out)
    enrichment = error_enrichment(found, errors)["enrichment"]
    assert enrichment > 1.5, enrichment  # random boxes give about 1


def test_suggest_refuses_labels_of_classes_the_model_does_not_have(isbi_model, capsys):
    import tifffile

    tmp, raw, _ = isbi_model
    labels = np.zeros(raw.shape, np.uint8)
    labels[0, 0, :5] = 3
    tifffile.imwrite(tmp / "labels3.tif", labels)
    code = main(["suggest", "--model", str(tmp / "run"), "--raw", str(tmp / "raw.tif"), "--labels",
                 str(tmp / "labels3.tif"), "--no-progress", "--out", str(tmp / "x.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "class 3" in err
    assert not (tmp / "x.json").exists()

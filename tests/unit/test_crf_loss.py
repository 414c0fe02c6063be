"""The edge-aware smoothness loss (``workbench.training.crf_loss``): its maths on tiny tensors, its hook in a
training run, and its setting in the config and on the command line."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from tests.tiny_training import TINY_UNET, tiny_training_data  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.training.config import TrainConfig  # noqa: E402
from workbench.training.crf_loss import CRFLoss, local_crf_loss  # noqa: E402


def _step_image(size: int = 32, edge: int = 16, noise: float = 0.05, seed: int = 0):
    """(1, 1, size, size): dark left of column ``edge``, bright right, with a little noise."""
    g = torch.Generator().manual_seed(seed)
    img = torch.zeros(1, 1, size, size)
    img[..., edge:] = 1.0
    return img + noise * torch.randn(img.shape, generator=g)


def _split(size: int, edge: int, confidence: float = 0.99):
    """(1, 2, size, size) probabilities: class 0 left of column ``edge``, class 1 right of it."""
    p1 = torch.full((1, 1, size, size), 1 - confidence)
    p1[..., edge:] = confidence
    return torch.cat([1 - p1, p1], 1)


def test_a_boundary_on_the_image_edge_costs_little_and_one_off_it_costs_more():
    img = _step_image()
    on_edge = float(local_crf_loss(_split(32, 16), img))
    off_edge = float(local_crf_loss(_split(32, 8), img))
    uniform = float(local_crf_loss(_split(32, 0), img))  # one class everywhere, certain
    assert uniform < 0.03 and on_edge < 0.03
    assert off_edge > 3 * on_edge


def test_the_loss_is_bounded_and_follows_the_contrast_of_the_data():
    img = _step_image()
    a = float(local_crf_loss(_split(32, 8), img))
    b = float(local_crf_loss(_split(32, 8), 40.0 * img + 100.0))  # same image in other units
    assert 0.0 <= a <= 1.0 and a == pytest.approx(b, rel=1e-3)
    confused = torch.full((1, 2, 32, 32), 0.5)
    assert float(local_crf_loss(confused, img)) == pytest.approx(0.5, abs=1e-4)


def test_gradients_spread_a_confident_class_into_unsure_pixels_that_look_alike():
    img = _step_image()  # dark columns 0-15, bright 16-31
    logits = torch.zeros(1, 2, 32, 32)  # unsure everywhere ...
    logits[:, 1, :, :4] = 5.0  # ... but sure of class 1 in dark columns 0-3
    logits[:, 0, :, 28:] = 5.0  # and of class 0 in bright columns 28-31
    logits.requires_grad_(True)
    local_crf_loss(logits.softmax(1), img).backward()
    grad = logits.grad[0, 1]  # d loss / d logit of class 1; descending it raises class 1 where it is negative
    assert float(grad[:, 4:7].mean()) < 0  # unsure dark pixels next to the class-1 ones: towards class 1
    assert float(grad[:, 25:28].mean()) > 0  # unsure bright pixels next to the class-0 ones: towards class 0


def test_a_confident_class_does_not_spread_across_an_edge_of_the_image():
    img = _step_image()  # dark columns 0-15, bright 16-31
    logits = torch.zeros(1, 2, 32, 32)
    logits[:, 1, :, 12:16] = 5.0  # sure of class 1 in the dark columns next to the edge, unsure elsewhere
    logits.requires_grad_(True)
    local_crf_loss(logits.softmax(1), img).backward()
    grad = logits.grad[0, 1]
    same_side, across = float(grad[:, 11].mean()), float(grad[:, 16].mean())
    assert same_side < 0 and abs(across) < 0.1 * abs(same_side)


def test_three_dimensional_patches_and_mismatched_shapes():
    img = _step_image().unsqueeze(2).repeat(1, 1, 2, 1, 1)  # (1, 1, 2, 32, 32)
    probs = _split(32, 8).unsqueeze(2).repeat(1, 1, 2, 1, 1)
    assert float(local_crf_loss(probs, img)) == pytest.approx(float(local_crf_loss(_split(32, 8), _step_image())),
                                                              rel=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        local_crf_loss(_split(32, 8), _step_image(16, 8))


def test_weight_is_validated_in_the_hook_and_the_config():
    with pytest.raises(ValueError):
        CRFLoss(-1)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(WorkbenchError, match="CRF"):
            TrainConfig(arch="unet2d", crf_weight=bad).validate()
    TrainConfig(arch="unet2d", crf_weight=0.5).validate()


def _logged(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def test_a_training_run_adds_and_logs_the_term_only_when_asked(tmp_path):
    from workbench.training import Trainer

    raw, labels = tiny_training_data()
    for name, weight in (("off", 0.0), ("on", 2.0)):
        cfg = TrainConfig(arch="unet2d", arch_options=dict(TINY_UNET), iterations=6, device="cpu",
                          precision="fp32", batch_size=2, patch_shape=[1, 32, 32], crf_weight=weight,
                          log_every=1)
        Trainer(cfg, raw, labels, tmp_path / name).run()
    on = [r for r in _logged(tmp_path / "on") if "crf_loss" in r]
    assert on and all(0.0 <= r["crf_loss"] <= 1.0 for r in on)
    assert not any("crf_loss" in r for r in _logged(tmp_path / "off"))


def test_the_command_line_sets_the_weight_and_keeps_it_in_the_run(tmp_path, capsys):
    import tifffile

    from workbench.cli import main

    raw, labels = tiny_training_data()
    tifffile.imwrite(tmp_path / "raw.tif", raw, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "labels.tif", labels, metadata={"axes": "ZYX"})
    base = ["train", "--raw", str(tmp_path / "raw.tif"), "--labels", str(tmp_path / "labels.tif"), "--arch",
            "unet2d", "--iterations", "3", "--device", "cpu", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "run"), "--crf-weight", "0.75"]) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["crf_weight"] == 0.75
    assert any("crf_loss" in r for r in _logged(tmp_path / "run"))
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--crf-weight", "-1"]) != 0
    err = capsys.readouterr().err.strip()
    assert "CRF loss weight" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "checkpoint.pt").exists()

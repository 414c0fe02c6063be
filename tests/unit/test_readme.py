"""The README's Python example runs as written (on a tiny stack, with a few iterations)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[2]


def test_readme_python_example_runs(tmp_path, monkeypatch, tiny_volume):
    text = (REPO / "README.md").read_text()
    code = re.search(r"## From Python\n\n```python\n(.*?)```", text, re.S).group(1)
    stack = np.tile(tiny_volume[:6], (1, 4, 4))  # 6 x 64 x 64
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    monkeypatch.chdir(tmp_path)
    code = code.replace('open_volume("big.zarr")', 'open_volume("stack.tif")')
    code = code.replace("minutes=5", "iterations=2, patch_shape=(1, 32, 32)")
    code = code.replace("[[0, 10, 10], [0, 10, 200]]", "[[0, 10, 5], [0, 10, 60]]")
    # the second class must exist before training: insert it right after the first stroke
    first, rest = code.split("trainer = ", 1)
    first += "project.annotations.add_stroke([[1, 40, 5], [1, 40, 60]], label=2, width=3)\n"
    exec(compile(first + "trainer = " + rest, "README.md", "exec"), {})
    assert (tmp_path / "pred.zarr").exists()


def test_readme_hook_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "README.md").read_text()
    code = re.search(r"Training ideas are hooks, not forks of the loop:\n\n```python\n(.*?)```", text, re.S).group(1)
    raw = np.random.default_rng(0).integers(0, 255, (2, 32, 32)).astype(np.uint8)
    labels = np.zeros_like(raw)
    labels[:, 4:8, 4:28], labels[:, 20:24, 4:28] = 1, 2
    monkeypatch.chdir(tmp_path)
    code = code.replace("% 100", "% 5").replace("minutes=5", 'iterations=10, patch_shape=(1, 16, 16), batch_size=2, arch_options={"depth": 2, "base_channels": 4}, bn_recalibration=False')
    exec(compile(code, "README.md", "exec"), {"raw": raw, "labels": labels})
    assert capsys.readouterr().out.split()[::2] == ["5", "10"]
    assert (tmp_path / "runs" / "demo" / "checkpoint.pt").exists()

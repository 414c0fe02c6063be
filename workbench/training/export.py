"""Export a trained run: TorchScript, ONNX, or a BioImage Model Zoo package (model spec 0.5).

Exported networks take the normalised image (``(raw - low) / (high - low)``, recorded in the package) and
return probabilities (softmax over classes, or sigmoid per affinity). They are traced on a patch whose size
is a multiple of the network's down-sampling factor and then work on any such multiple.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from workbench.atomic import atomic_path
from workbench.errors import WorkbenchError
from workbench.models.imports import RDF_CONFIG_KEY, TORCHSCRIPT_META, network_meta
from workbench.training.runs import load_run
from workbench.training.strategies import strategy_for

FORMATS = ("torchscript", "onnx", "bioimageio")


def _wrapped(predictor):
    """The network followed by its activation, on CPU, in eval mode."""
    import torch

    class WithActivation(torch.nn.Module):
        def __init__(self, model, sigmoid: bool):
            super().__init__()
            self.model = model
            self.sigmoid = sigmoid

        def forward(self, x):
            y = self.model(x)
            return torch.sigmoid(y) if self.sigmoid else torch.softmax(y, dim=1)

    model = predictor.model.to("cpu", memory_format=torch.contiguous_format).eval()
    return WithActivation(model, predictor.activation == "sigmoid").eval()


def _example_shape(predictor) -> tuple[int, ...]:
    """(1, 1, [z,] y, x): a small test input, a multiple of the down-sampling factor."""
    dz, dy, dx = predictor.info.divisor(**predictor.config.arch_options)
    y = dy * max(1, -(-64 // dy))
    x = dx * max(1, -(-64 // dx))
    if predictor.spatial_dims == 2:
        return (1, 1, y, x)
    return (1, 1, dz * max(1, -(-4 // dz)), y, x)


def _load(run_dir):
    from workbench.training.config import TrainConfig

    if (Path(run_dir) / "config.json").exists() and TrainConfig.load(Path(run_dir) / "config.json").pretext:
        raise WorkbenchError("a warm-up run reconstructs the image and predicts no classes: fine-tune it "
                             "(workbench train --init RUN) and export that run", run_dir)
    predictor = load_run(run_dir, device="cpu")
    if not strategy_for(predictor.info).exportable:
        raise WorkbenchError(f"architecture {predictor.arch!r} is not a neural network: it cannot be exported", run_dir)
    return predictor


def _trace(predictor, example):
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the padding branch (not taken for multiples)
        return torch.jit.trace(_wrapped(predictor), example, check_trace=False)


def _write_atomic(out: Path, write) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        write(tmp)
    return out


def export_torchscript(run_dir, out) -> Path:
    """TorchScript of the network + activation (``torch.jit.load(out)``)."""
    import torch

    predictor = _load(run_dir)
    example = torch.from_numpy(np.random.default_rng(0).random(_example_shape(predictor), dtype=np.float32))
    traced = _trace(predictor, example)
    return _write_atomic(Path(out), lambda p: _save_torchscript(traced, predictor, p))


def _save_torchscript(traced, predictor, path) -> None:
    """Save with the network's description (architecture, options, channels, normalisation) as an extra file,
    so ``workbench predict --model`` and ``workbench train --init`` read it back."""
    traced.save(str(path), _extra_files={TORCHSCRIPT_META: json.dumps(network_meta(predictor))})


def export_onnx(run_dir, out) -> Path:
    """ONNX (opset 17) with dynamic batch and spatial axes. Needs the ``onnx`` package."""
    import importlib.util

    import torch

    if importlib.util.find_spec("onnx") is None:
        raise WorkbenchError("ONNX export needs the 'onnx' package: pip install onnx")
    predictor = _load(run_dir)
    shape = _example_shape(predictor)
    example = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
    names = ["batch", "channel", "z", "y", "x"] if len(shape) == 5 else ["batch", "channel", "y", "x"]
    dynamic = {i: n for i, n in enumerate(names) if n != "channel"}

    def write(tmp):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(_wrapped(predictor), example, str(tmp), input_names=["raw"], output_names=["probabilities"],
                              dynamic_axes={"raw": dynamic, "probabilities": dynamic}, opset_version=17, dynamo=False,
                              do_constant_folding=False)  # weights stay under their names: the file can be read back
        import onnx

        model = onnx.load(str(tmp))
        entry = model.metadata_props.add()
        entry.key, entry.value = RDF_CONFIG_KEY, json.dumps(network_meta(predictor))
        onnx.save(model, str(tmp))

    return _write_atomic(Path(out), write)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_ARCHITECTURE_SOURCE = '''"""Rebuilds an EM Workbench network (needs the em-workbench package: pip install em-workbench)."""


def build(arch, in_channels, out_channels, options):
    from workbench.models import build_model

    return build_model(arch, in_channels, out_channels, **options)
'''


def build_rdf(predictor, files: dict, name: str, torch_version: str) -> dict:
    """The ``rdf.yaml`` content (bioimage.io model spec 0.5) for files written by :func:`export_bioimageio`."""
    norm = predictor.normalisation
    gain = 1.0 / (norm["high"] - norm["low"])
    dz, dy, dx = predictor.info.divisor(**predictor.config.arch_options)
    space = [("z", dz), ("y", dy), ("x", dx)] if predictor.spatial_dims == 3 else [("y", dy), ("x", dx)]
    in_axes = [{"type": "batch"}, {"type": "channel", "channel_names": ["raw"]}]
    in_axes += [{"type": "space", "id": a, "size": {"min": d, "step": d}, "unit": "nanometer", "scale": 1.0}
                for a, d in space]
    out_axes = [{"type": "batch"}, {"type": "channel", "channel_names": [_channel_id(c) for c in predictor.channel_names]}]
    out_axes += [{"type": "space", "id": a, "size": {"tensor_id": "raw", "axis_id": a}, "unit": "nanometer", "scale": 1.0}
                 for a, _ in space]
    info = predictor.info
    options = dict(predictor.info.options(**predictor.config.arch_options))
    return {
        "config": {RDF_CONFIG_KEY: json.loads(json.dumps(network_meta(predictor)))},
        "format_version": "0.5.4",
        "type": "model",
        "name": name,
        "description": f"{info.title} trained with EM Workbench ({predictor.target}: "
        f"{', '.join(predictor.channel_names)}; {predictor.iteration} iterations).",
        "authors": [{"name": "EM Workbench user"}],
        "cite": [{"text": info.paper, "url": "https://github.com/bioimage-io/spec-bioimage-io"}],
        "license": "MIT",
        "documentation": files["documentation"],
        "tags": ["electron-microscopy", "segmentation", f"{predictor.spatial_dims}d", info.name, predictor.target],
        "inputs": [{
            "id": "raw",
            "description": "raw EM intensities",
            "axes": in_axes,
            "test_tensor": {"source": files["test_input"], "sha256": files["test_input_sha256"]},
            "data": {"type": "float32"},
            "preprocessing": [
                {"id": "ensure_dtype", "kwargs": {"dtype": "float32"}},
                {"id": "scale_linear", "kwargs": {"gain": gain, "offset": -norm["low"] * gain}},
            ],
        }],
        "outputs": [{
            "id": "probabilities",
            "description": "softmax over classes" if predictor.activation == "softmax" else "sigmoid per affinity",
            "axes": out_axes,
            "test_tensor": {"source": files["test_output"], "sha256": files["test_output_sha256"]},
            "data": {"type": "float32"},
        }],
        "weights": {
            "pytorch_state_dict": {
                "source": files["state_dict"],
                "sha256": files["state_dict_sha256"],
                "architecture": {
                    "source": files["architecture"],
                    "sha256": files["architecture_sha256"],
                    "callable": "build",
                    "kwargs": {"arch": info.name, "in_channels": 1, "out_channels": predictor.out_channels,
                               "options": json.loads(json.dumps(options))},
                },
                "pytorch_version": torch_version,
            },
            "torchscript": {
                "source": files["torchscript"],
                "sha256": files["torchscript_sha256"],
                "pytorch_version": torch_version,
                "parent": "pytorch_state_dict",
            },
        },
    }


def _channel_id(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "channel"


def export_bioimageio(run_dir, out, name: str | None = None) -> Path:
    """A BioImage Model Zoo zip: rdf.yaml, test tensors (.npy), TorchScript and state-dict weights with the
    architecture source, and a README."""
    import torch
    import yaml

    predictor = _load(run_dir)
    name = name or f"EM Workbench {predictor.info.title}"
    torch_version = torch.__version__.split("+")[0]
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmpd:
        d = Path(tmpd)
        shape = _example_shape(predictor)
        rng = np.random.default_rng(0)
        lo, hi = predictor.normalisation["low"], predictor.normalisation["high"]
        test_in = (lo + (hi - lo) * rng.random(shape)).astype(np.float32)
        norm_in = torch.from_numpy((test_in - np.float32(lo)) / np.float32(hi - lo))
        traced = _trace(predictor, norm_in)
        with torch.no_grad():
            test_out = _wrapped(predictor)(norm_in).numpy().astype(np.float32)
        np.save(d / "test_input.npy", test_in)
        np.save(d / "test_output.npy", test_out)
        _save_torchscript(traced, predictor, d / "weights_torchscript.pt")
        torch.save(predictor.model.state_dict(), d / "weights.pt")
        (d / "architecture.py").write_text(_ARCHITECTURE_SOURCE)
        (d / "README.md").write_text(
            f"# {name}\n\n{predictor.info.description}\n\nReference: {predictor.info.paper}\n\n"
            f"Trained with EM Workbench: target {predictor.target}, outputs {', '.join(predictor.channel_names)}, "
            f"{predictor.iteration} iterations. Inputs are scaled with (raw - {lo:g}) / ({hi:g} - {lo:g}).\n\n"
            "## Validation\n\nSee metrics.jsonl in the training run (validation loss, accuracy and F1 on "
            "held-out annotations); the test tensors were produced by these weights.\n")
        files = {"documentation": "README.md", "test_input": "test_input.npy", "test_output": "test_output.npy",
                 "state_dict": "weights.pt", "architecture": "architecture.py", "torchscript": "weights_torchscript.pt"}
        for key in list(files):
            files[f"{key}_sha256"] = _sha256(d / files[key])
        rdf = build_rdf(predictor, files, name, torch_version)
        (d / "rdf.yaml").write_text(yaml.safe_dump(rdf, sort_keys=False, allow_unicode=True))

        def write(tmp):
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                for p in sorted(d.iterdir()):
                    zf.write(p, p.name)

        return _write_atomic(out, write)


def export_run(run_dir, fmt: str, out) -> Path:
    """Export ``run_dir`` as ``fmt`` (torchscript, onnx, bioimageio) to ``out``."""
    if fmt == "torchscript":
        return export_torchscript(run_dir, out)
    if fmt == "onnx":
        return export_onnx(run_dir, out)
    if fmt == "bioimageio":
        return export_bioimageio(run_dir, out)
    raise WorkbenchError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


__all__ = ["FORMATS", "build_rdf", "export_bioimageio", "export_onnx", "export_run", "export_torchscript"]

"""Models from files, read as data: a run folder, a BioImage Model Zoo zip, a TorchScript file, a workbench ONNX
export or a state-dict checkpoint, each resolved to one description (:class:`ModelSource`) that training and prediction start from.

Weights are data, never code: checkpoints and state dicts are read with ``torch.load(weights_only=True)`` (plain
tensors and values; a pickle that would build any other object is refused), a Zoo package's ``rdf.yaml`` with
``yaml.safe_load`` and validated with ``bioimageio.spec`` (sizes and sha256 of every file it names), and its
members are read straight from the zip; a zip with a member whose path leaves its folder (``../``, an absolute
path, a link) is refused before anything is read. A Zoo model whose architecture is Python code of its own is
rebuilt only when the registry knows it (the packages ``workbench export`` writes); otherwise its TorchScript
weights are used. A TorchScript file is TorchScript's own restricted program format (``torch.jit.load``,
no Python pickles).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from workbench.errors import WorkbenchError
from workbench.models.registry import get_architecture

#: the ``extra_files`` entry of a workbench TorchScript export (what the network is, as JSON)
TORCHSCRIPT_META = "workbench.json"
#: where a workbench Zoo package keeps the same description (``config.workbench`` of ``rdf.yaml``)
RDF_CONFIG_KEY = "workbench"
FORMATS = ("run", "bioimageio", "torchscript", "onnx", "checkpoint")


@dataclass
class ModelSource:
    """What a model file holds, as plain data.

    Attributes:
        path: the file or folder it came from.
        format: ``run``, ``bioimageio``, ``torchscript``, ``onnx`` or ``checkpoint``.
        arch, arch_options: the registered architecture that rebuilds it (None: not known, TorchScript only).
        dims: 2 or 3 (None: not known).
        in_channels, out_channels, channel_names: the network's channels (out_channels None: not known).
        target: what the outputs are (``semantic``, ``boundaries``, ``affinities``, ``pretext`` or None).
        normalisation: ``{"low", "high"}`` the inputs are scaled with, or None (the data's own percentiles).
        state_dict: the network's weights (logits out) or None.
        torchscript: the TorchScript program's bytes (probabilities out) or None.
        divisor, halo: (z, y, x) when the file says.
        pretext: the warm-up's pretext options (a self-supervised run) or {}.
        iteration: iterations trained.
        offsets: affinity offsets.
        extra: format-specific details (the run's config, the Zoo's preprocessing).
    """

    path: Path
    format: str
    arch: str | None = None
    arch_options: dict = field(default_factory=dict)
    dims: int | None = None
    in_channels: int = 1
    out_channels: int | None = None
    channel_names: list[str] = field(default_factory=list)
    target: str | None = None
    normalisation: dict | None = None
    state_dict: dict | None = None
    torchscript: bytes | None = None
    divisor: tuple[int, int, int] | None = None
    halo: tuple[int, int, int] | None = None
    pretext: dict = field(default_factory=dict)
    iteration: int = 0
    offsets: list | None = None
    extra: dict = field(default_factory=dict)

    @property
    def rebuildable(self) -> bool:
        """True when the registry can rebuild the network and the weights are a state dict."""
        return self.arch is not None and self.state_dict is not None

    def describe(self) -> str:
        what = self.arch or "TorchScript network"
        chans = f"{self.out_channels} output channel{'s' if self.out_channels != 1 else ''}" if self.out_channels else "outputs"
        return f"{what} ({self.dims or '?'}D, {self.in_channels} input channel, {chans})"


# -- reading bytes as data ---------------------------------------------------------------------------------------
def load_weights(data: bytes | str | Path, path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` of a file or bytes: tensors and plain values only.

    Raises:
        WorkbenchError: the pickle would build other objects (run code), or the file is not a torch file.
    """
    import torch

    f = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for anything beyond plain data, or not a torch file at all
        if "GLOBAL" in str(err) or "Unsupported global" in str(err):
            raise WorkbenchError("refused: the file's pickle holds Python objects, not only weights "
                                 "(loading it would run code)", path) from None
        raise WorkbenchError(f"not a readable torch file ({type(err).__name__})", path) from None


def check_zip_members(zf: zipfile.ZipFile, path: str | Path) -> None:
    """Refuse a zip whose members leave its folder (absolute paths, ``..``, drive letters, symbolic links).

    Raises:
        WorkbenchError: naming the first such member.
    """
    for info in zf.infolist():
        name = info.filename
        parts = PurePosixPath(name.replace("\\", "/")).parts
        is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":") or is_link:
            raise WorkbenchError(f"refused: zip member {name!r} leaves the package folder", path)


def _is_torchscript_zip(names: list[str]) -> bool:
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names) and not any(
        n.endswith(("rdf.yaml", "bioimageio.yaml")) for n in names)


# -- the formats ---------------------------------------------------------------------------------------------------
def _from_checkpoint(state: dict, path: Path, fmt: str, config: dict | None) -> ModelSource:
    """A workbench checkpoint (``model`` + ``arch`` + ...) or a bare state dict with its ``config.json``."""
    if isinstance(state, dict) and "model" in state and "arch" in state:
        config = state.get("config") or config or {}
        if state.get("kind", "torch") != "torch" or "model" not in state:
            raise WorkbenchError(f"a {state.get('kind')} model has no network weights to start from", path)
        sd = state["model"]
    elif isinstance(state, dict) and state and all(hasattr(v, "shape") for v in state.values()):
        if not config:
            raise WorkbenchError("a bare state dict needs its config.json beside it (architecture and options)", path)
        sd, state = state, {"arch": config.get("arch"), "arch_options": config.get("arch_options", {})}
    else:
        raise WorkbenchError("not a model checkpoint (neither a workbench checkpoint nor a state dict)", path)
    arch = state.get("arch")
    info = get_architecture(arch)  # an unknown name: the one-line error with the valid ones
    if not info.is_network:
        raise WorkbenchError(f"architecture {arch!r} is not a neural network: it has no weights to start from", path)
    options = info.options(**(state.get("arch_options") or (config or {}).get("arch_options", {})))
    names = list(state.get("channel_names") or [])
    head = _head_out_channels(sd)
    return ModelSource(
        path=path, format=fmt, arch=arch, arch_options=options, dims=info.dims, in_channels=_first_in_channels(sd),
        out_channels=len(names) or head, channel_names=names, target=state.get("target"),
        normalisation=dict(state["normalisation"]) if state.get("normalisation") else None, state_dict=sd,
        divisor=info.divisor(**options), halo=info.halo(**options), pretext=dict((config or {}).get("pretext") or {}),
        iteration=int(state.get("iteration", 0)), offsets=state.get("offsets"), extra={"config": config or {}})


def _first_in_channels(sd: dict) -> int:
    for v in sd.values():
        if getattr(v, "ndim", 0) in (4, 5):
            return int(v.shape[1])
    return 1


def _head_out_channels(sd: dict) -> int | None:
    for v in reversed(list(sd.values())):
        if getattr(v, "ndim", 0) in (4, 5):
            return int(v.shape[0])
    return None


def _read_run(path: Path) -> ModelSource:
    config_path, ckpt = path / "config.json", path / "checkpoint.pt"
    if not config_path.exists():
        raise WorkbenchError("not a training run folder (no config.json)", path)
    if not ckpt.exists():
        raise WorkbenchError("no checkpoint.pt: this run has not saved a model yet", path)
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise WorkbenchError(f"unreadable training config ({err})", config_path) from None
    source = _from_checkpoint(load_weights(ckpt, ckpt), path, "run", config)
    source.extra["run_dir"] = str(path)
    return source


def _read_torchscript(data: bytes, path: Path, meta: dict | None = None) -> ModelSource:
    import torch

    extra = {TORCHSCRIPT_META: ""}
    try:
        torch.jit.load(io.BytesIO(data), map_location="cpu", _extra_files=extra)
    except Exception as err:
        raise WorkbenchError(f"not a readable TorchScript file ({type(err).__name__})", path) from None
    if meta is None and extra[TORCHSCRIPT_META]:
        meta = json.loads(extra[TORCHSCRIPT_META])
    source = ModelSource(path=path, format="torchscript", torchscript=data)
    _apply_meta(source, meta or {})
    return source


def _apply_meta(source: ModelSource, meta: dict) -> None:
    """The workbench's description of a network (TorchScript extra file, Zoo ``config.workbench``)."""
    if not meta:
        return
    arch = meta.get("arch")
    if arch:
        info = get_architecture(arch)
        source.arch, source.arch_options = arch, info.options(**meta.get("arch_options", {}))
        source.dims = info.dims
        source.divisor, source.halo = info.divisor(**source.arch_options), info.halo(**source.arch_options)
    source.channel_names = list(meta.get("channel_names", source.channel_names))
    source.out_channels = len(source.channel_names) or source.out_channels
    source.target = meta.get("target", source.target)
    source.normalisation = meta.get("normalisation", source.normalisation)
    source.iteration = int(meta.get("iteration", source.iteration))
    source.offsets = meta.get("offsets", source.offsets)
    source.pretext = dict(meta.get("pretext") or {})


def network_meta(predictor) -> dict:
    """What an export records about a run's network (read back by :func:`open_model`)."""
    return {"arch": predictor.info.name, "arch_options": dict(predictor.info.options(**predictor.config.arch_options)),
            "channel_names": list(predictor.channel_names), "target": predictor.target,
            "normalisation": dict(predictor.normalisation), "iteration": int(predictor.iteration),
            "offsets": (predictor.config.effective_offsets(predictor.spatial_dims)
                        if predictor.target == "affinities" else None), "activation": predictor.activation}


def _validate_rdf(path: Path) -> None:
    try:
        from bioimageio.spec import InvalidDescr, load_description
    except ImportError:
        raise WorkbenchError("reading a BioImage Model Zoo package needs bioimageio.spec: "
                             "pip install 'em-workbench[export]'", path) from None

    try:
        descr = load_description(path, perform_io_checks=True)
    except Exception as err:  # a package bioimageio.spec cannot even open
        raise WorkbenchError(f"refused: not a valid BioImage Model Zoo package ({type(err).__name__}: "
                             f"{str(err).splitlines()[0][:120]})", path) from None
    if isinstance(descr, InvalidDescr) or getattr(descr, "type", None) != "model":
        summary = getattr(descr, "validation_summary", None)
        errors = getattr(summary, "errors", None) or []
        first = (f"{'.'.join(map(str, errors[0].loc))}: {errors[0].msg}" if errors else "see bioimageio validate")
        raise WorkbenchError(f"refused: the package's rdf.yaml fails validation ({first[:160]})", path)


def _axes(tensor: dict) -> list[dict]:
    """Axes of a Zoo tensor as dicts ``{"type", "id", "channels"}`` (spec 0.5 lists, or 0.4 letter strings)."""
    axes = tensor.get("axes", [])
    if isinstance(axes, str):  # spec 0.4: "bcyx" with the shape beside it
        shape = tensor.get("shape")
        sizes = shape if isinstance(shape, list) else [None] * len(axes)
        kinds = {"b": "batch", "c": "channel", "z": "space", "y": "space", "x": "space", "t": "time", "i": "index"}
        return [{"type": kinds.get(a, a), "id": a, "channels": s if a == "c" else None} for a, s in zip(axes, sizes)]
    out = []
    for a in axes:
        kind = a.get("type")
        chans = len(a["channel_names"]) if kind == "channel" and a.get("channel_names") else None
        out.append({"type": kind, "id": a.get("id", {"batch": "b", "channel": "c"}.get(kind, kind)), "channels": chans,
                    "size": a.get("size"), "halo": a.get("halo")})
    return out


def _check_axes(axes: list[dict], what: str, path: Path) -> tuple[int, int | None]:
    """(spatial dims, channels) of a Zoo tensor whose axes a workbench volume fits, else a one-line error."""
    kinds = [a["type"] for a in axes]
    space = [a["id"] for a in axes if a["type"] == "space"]
    other = [a["id"] for a in axes if a["type"] not in ("batch", "channel", "space")]
    if other or space not in (["y", "x"], ["z", "y", "x"]) or kinds.count("channel") > 1:
        raise WorkbenchError(f"the model's {what} axes ({', '.join(map(str, (a['id'] for a in axes)))}) do not fit "
                             "EM volumes: a workbench model has batch, channel, [z,] y, x", path)
    chan = next((a["channels"] for a in axes if a["type"] == "channel"), 1)
    return len(space), chan


def _normalisation_from(pre: list[dict]) -> tuple[dict | None, list[dict]]:
    """``scale_linear`` -> low/high; the other preprocessing steps are returned to be applied per block."""
    norm, rest = None, []
    for step in pre or []:
        op = step.get("id") or step.get("name")
        kw = step.get("kwargs", {}) or {}
        if op == "ensure_dtype":
            continue
        if op == "scale_linear" and not isinstance(kw.get("gain", 1.0), list) and not isinstance(kw.get("offset", 0.0), list) and norm is None and not rest:
            gain, offset = float(kw.get("gain", 1.0)), float(kw.get("offset", 0.0))
            low = -offset / gain
            norm = {"low": low, "high": low + 1.0 / gain}
        elif op in ("scale_range", "zero_mean_unit_variance", "clip", "scale_linear"):
            rest.append({"id": op, "kwargs": kw})
        else:
            raise WorkbenchError(f"the model's preprocessing {op!r} is not one the workbench applies "
                                 "(scale_linear, scale_range, zero_mean_unit_variance, clip)")
    return norm, rest


def _read_bioimageio(path: Path) -> ModelSource:
    import yaml

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise WorkbenchError("not a zip file", path) from None
    with zf:
        check_zip_members(zf, path)
        names = zf.namelist()
        if _is_torchscript_zip(names):
            return _read_torchscript(path.read_bytes(), path)
        rdf_name = next((n for n in ("rdf.yaml", "bioimageio.yaml") if n in names),
                        next((n for n in names if n.endswith(("rdf.yaml", "bioimageio.yaml"))), None))
        if rdf_name is None:
            raise WorkbenchError("not a BioImage Model Zoo package (no rdf.yaml) nor a TorchScript file", path)
        try:
            rdf = yaml.safe_load(zf.read(rdf_name))
        except yaml.YAMLError as err:
            raise WorkbenchError(f"unreadable rdf.yaml ({str(err).splitlines()[0][:100]})", path) from None
        if not isinstance(rdf, dict) or rdf.get("type") != "model":
            raise WorkbenchError("the package's rdf.yaml does not describe a model", path)
        _validate_rdf(path)
        inputs, outputs = rdf.get("inputs") or [], rdf.get("outputs") or []
        if len(inputs) != 1 or len(outputs) != 1:
            raise WorkbenchError(f"the model has {len(inputs)} inputs and {len(outputs)} outputs; the workbench "
                                 "needs one raw image in and one probability map out", path)
        dims, in_ch = _check_axes(_axes(inputs[0]), "input", path)
        out_axes = _axes(outputs[0])
        out_dims, out_ch = _check_axes(out_axes, "output", path)
        if out_dims != dims:
            raise WorkbenchError(f"the model maps {dims}D inputs to {out_dims}D outputs; the workbench needs the same", path)
        norm, pre = _normalisation_from(inputs[0].get("preprocessing"))
        base = str(PurePosixPath(rdf_name).parent)

        def member(src: str) -> bytes:
            name = str(PurePosixPath(base) / src) if base not in ("", ".") else src
            if name not in names:
                raise WorkbenchError(f"the package names {src!r}, which it does not contain", path)
            return zf.read(name)

        out_names = []
        for a in outputs[0].get("axes", []) if isinstance(outputs[0].get("axes"), list) else []:
            if a.get("type") == "channel":
                out_names = list(a.get("channel_names") or [])
        halo = [a.get("halo") or 0 for a in out_axes if a["type"] == "space"]
        source = ModelSource(path=path, format="bioimageio", dims=dims, in_channels=int(in_ch or 1),
                             out_channels=out_ch, channel_names=out_names, normalisation=norm,
                             halo=tuple(([0] if dims == 2 else []) + [int(h) for h in halo]) if any(halo) else None,
                             extra={"preprocessing": pre, "name": rdf.get("name")})
        weights = rdf.get("weights") or {}
        meta = ((rdf.get("config") or {}).get(RDF_CONFIG_KEY)) or {}
        sd_entry = weights.get("pytorch_state_dict") or {}
        arch_kwargs = ((sd_entry.get("architecture") or {}).get("kwargs")) or {}
        arch = meta.get("arch") or arch_kwargs.get("arch")
        if sd_entry and arch:
            get_architecture(arch)  # the registry rebuilds it (else: the one-line error naming the valid ones)
            _apply_meta(source, meta or {"arch": arch, "arch_options": arch_kwargs.get("options", {})})
            if not meta:
                source.channel_names = out_names
            source.state_dict = load_weights(member(sd_entry["source"]), path)
            if not isinstance(source.state_dict, dict):
                raise WorkbenchError("the package's state-dict weights are not a state dict", path)
            source.in_channels = _first_in_channels(source.state_dict)
        elif weights.get("torchscript"):
            ts = _read_torchscript(member(weights["torchscript"]["source"]), path, meta or None)
            source.torchscript = ts.torchscript
            if meta:
                _apply_meta(source, meta)
        else:
            kinds = ", ".join(weights) or "none"
            raise WorkbenchError(f"the package's weights ({kinds}) need Python code of their own to rebuild; the "
                                 "workbench runs registered architectures or TorchScript weights", path)
        if not source.channel_names and source.out_channels:
            source.channel_names = [f"channel {i}" for i in range(source.out_channels)]
        return source


def _read_onnx(path: Path) -> ModelSource:
    """An ONNX file (a protobuf: data) whose weights map onto a registered architecture: a workbench export,
    whose ``metadata_props`` say which. The graph itself is not run (no ONNX runtime here)."""
    import numpy as np
    import torch

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise WorkbenchError("reading an ONNX file needs the 'onnx' package: pip install 'em-workbench[export]'",
                             path) from None

    try:
        model = onnx.load(str(path))
    except Exception as err:
        raise WorkbenchError(f"not a readable ONNX file ({type(err).__name__})", path) from None
    meta = next((json.loads(p.value) for p in model.metadata_props if p.key == RDF_CONFIG_KEY), None)
    if not meta or not meta.get("arch"):
        raise WorkbenchError("this ONNX file does not say which architecture its weights belong to; the workbench "
                             "rebuilds workbench exports only (or use a TorchScript or bioimageio file)", path)
    source = ModelSource(path=path, format="onnx")
    _apply_meta(source, meta)
    info = get_architecture(source.arch)
    with torch.device("meta"):
        wanted = info.build(1, source.out_channels or 1, **source.arch_options).state_dict()
    weights = {}
    for init in model.graph.initializer:
        name = init.name[len("model."):] if init.name.startswith("model.") else init.name
        if name in wanted:
            weights[name] = torch.from_numpy(np.array(numpy_helper.to_array(init)))
    for name, t in wanted.items():
        if name.endswith("num_batches_tracked") and name not in weights:
            weights[name] = torch.zeros((), dtype=t.dtype)
    absent = [k for k in wanted if k not in weights]
    if absent:
        raise WorkbenchError(f"the ONNX file's weights do not map onto {source.arch} ({len(absent)} tensors missing, "
                             f"e.g. {absent[0]!r}); use the run's TorchScript or bioimageio export", path)
    source.state_dict = weights
    return source


def open_model(src: str | Path) -> ModelSource:
    """Resolve a model file to a :class:`ModelSource`.

    Args:
        src: a training run folder, a BioImage Model Zoo ``.zip``, a TorchScript file (``workbench export
            --format torchscript``), or a checkpoint (a workbench ``checkpoint.pt``, or a state dict with a
            ``config.json`` beside it).

    Raises:
        WorkbenchError: one line naming the file: missing, unreadable, unsafe (a pickle holding objects, a zip
            member outside its folder), failing Zoo validation, or a model the workbench cannot rebuild or run.
    """
    path = Path(src).expanduser()
    if not path.exists():
        raise WorkbenchError("no such model file or run folder", path)
    if path.is_dir():
        return _read_run(path)
    if path.suffix.lower() == ".onnx":
        return _read_onnx(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            check_zip_members(zf, path)
            names = zf.namelist()
        if _is_torchscript_zip(names):
            return _read_torchscript(path.read_bytes(), path)
        if any(n.endswith(("rdf.yaml", "bioimageio.yaml")) for n in names):
            return _read_bioimageio(path)
    config = None
    beside = path.parent / "config.json"
    if beside.exists():
        try:
            config = json.loads(beside.read_text())
        except json.JSONDecodeError:
            config = None
    return _from_checkpoint(load_weights(path, path), path, "checkpoint", config)


__all__ = ["FORMATS", "RDF_CONFIG_KEY", "TORCHSCRIPT_META", "ModelSource", "check_zip_members", "load_weights",
           "network_meta", "open_model"]

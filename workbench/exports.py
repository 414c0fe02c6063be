"""Results out of the workbench, as files other tools open: class maps as OME-Zarr or TIFF, models as packages.

- :func:`export_classes`: the most likely class of a stored prediction (``1..K``) as an OME-Zarr label-free
  image or an ImageJ TIFF stack, with the voxel size.
- :func:`export_model`: a trained run as a BioImage Model Zoo package, or (a random forest, not a network)
  the run folder as a zip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workbench.errors import WorkbenchError

#: Class-map formats by file ending.
CLASS_FORMATS = {".zarr": "zarr", ".tif": "tiff", ".tiff": "tiff"}


def export_classes(prediction: str | Path, out: str | Path, voxel_size=None, name: str = "classes") -> Path:
    """Write the class map of a stored prediction to ``out`` (``.ome.zarr``/``.zarr`` or ``.tif``/``.tiff``).

    Args:
        prediction: the ``OUT.zarr`` of :func:`~workbench.inference.predict_volume`.
        out: the file or store to write (replaced when it exists).
        voxel_size: (z, y, x) nm; default: the prediction's.
        name: the image's name inside an OME-Zarr.
    Raises:
        WorkbenchError: no finished prediction there, or an unknown file ending.
    """
    from workbench.inference import prediction_class_map
    from workbench.io.volume import Volume

    prediction, out = Path(prediction), Path(out).expanduser()
    fmt = CLASS_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise WorkbenchError(f"class maps are written as {', '.join(CLASS_FORMATS)}; got {out.name}", out)
    if not prediction.exists():
        raise WorkbenchError("predict the volume first", prediction)
    if voxel_size is None:
        from workbench.inference import open_prediction

        voxel_size = open_prediction(prediction, channel=0).voxel_size
    vol = Volume(prediction_class_map(prediction), voxel_size=tuple(voxel_size), name=name, source=str(prediction))
    if fmt == "zarr":
        from workbench.io.omezarr import WriteOptions, write_ome_zarr

        return write_ome_zarr(vol, out, WriteOptions(name=name, voxel_size=vol.voxel_size, overwrite=True))
    from workbench.io.tiff import write_tiff

    return write_tiff(vol, out)


def export_model(run_dir: str | Path, out_dir: str | Path) -> Path:
    """Package the run ``run_dir`` into ``out_dir``: ``<run>.bioimageio.zip`` (networks: TorchScript + weights,
    test tensors, ``rdf.yaml``) or ``<run>-model.zip`` (a random forest: the run folder itself). Returns the path."""
    import json

    run_dir, out_dir = Path(run_dir), Path(out_dir).expanduser()
    config = run_dir / "config.json"
    if not config.exists():
        raise WorkbenchError("not a training run (no config.json)", run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if json.loads(config.read_text()).get("arch") == "forest":
        from workbench.atomic import atomic_path

        out = out_dir / f"{run_dir.name}-model.zip"
        with atomic_path(out) as tmp:  # never half a zip under the final name
            made = shutil.make_archive(str(tmp), "zip", root_dir=run_dir, base_dir=".")
            os.replace(made, tmp)
        return out
    from workbench.training.export import export_run

    return export_run(run_dir, "bioimageio", out_dir / f"{run_dir.name}.bioimageio.zip")


__all__ = ["CLASS_FORMATS", "export_classes", "export_model"]

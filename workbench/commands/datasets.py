"""``workbench datasets [list | info NAME | fetch NAME [--out DIR]]``: the public dataset catalog."""

from __future__ import annotations

import argparse
import sys
import textwrap

NAME = "datasets"
HELP = "the public dataset catalog: list, describe and fetch EM datasets with ground truth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="a table of the catalog (the default)", description="A table of the catalog.")
    info = sub.add_parser("info", help="everything the catalog knows about one dataset")
    info.add_argument("name", metavar="NAME", help="catalog name, e.g. isbi2012")
    fetch = sub.add_parser(
        "fetch",
        help="get a dataset as OME-Zarr (local mirror first, then a verified download); prints its path",
        description="Get a dataset as OME-Zarr: from the local mirror WORKBENCH_DATA_DIR/NAME/ if it holds "
        "the files, else downloaded and verified. Prints the OME-Zarr path.",
    )
    fetch.add_argument("name", metavar="NAME", help="catalog name, e.g. isbi2012")
    fetch.add_argument("--out", metavar="DIR", default=None, help="folder for NAME.zarr (default: the cache)")
    fetch.add_argument("--overwrite", action="store_true", help="convert again even if NAME.zarr exists")


def _fmt_voxel(vs) -> str:
    return "x".join(f"{v:g}" for v in vs)


def _fmt_size(info) -> str:
    shape = "x".join(str(s) for s in info.shape)
    nbytes = info.nbytes
    size = f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.0f} MB"
    return f"{shape} ({size})"


def format_table(infos) -> str:
    """The catalog as an aligned text table."""
    header = ("NAME", "MODALITY", "VOXEL nm (z,y,x)", "SIZE z,y,x", "LICENSE")
    rows = [
        (i.name, i.modality.split(" (")[0], _fmt_voxel(i.voxel_size), _fmt_size(i), i.license.split(";")[0])
        for i in infos
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def format_info(info) -> str:
    """A readable description of one entry."""
    from workbench.datasets import mirror_dir

    wrap = textwrap.TextWrapper(width=100, subsequent_indent="  ")
    out = [
        f"{info.name}: {info.title}",
        "",
        textwrap.fill(info.description, width=100),
        "",
        f"modality:   {info.modality}",
        f"organism:   {info.organism}",
        f"tissue:     {info.tissue}",
        f"voxel size: {_fmt_voxel(info.voxel_size)} nm (z, y, x)",
        f"shape:      {_fmt_size(info)} {info.raw_dtype}",
        f"license:    {info.license}",
        *wrap.wrap(f"citation:   {info.citation} doi:{info.doi}"),
        f"homepage:   {info.homepage}",
        f"mirror:     {mirror_dir(info.name)}",
        "",
        "layouts (tried in order; a mirror holding all files of one layout is used first):",
    ]
    for layout in info.layouts:
        out.append(f"  {layout.name}: {layout.note}")
        for f in layout.files:
            check = f"sha256 {f.sha256}" if f.sha256 else "sha256 unknown (printed at fetch)"
            out.append(f"    file {f.name}  {f.url or '(no download link)'}  {check}")
        out.append(f"    raw: {layout.raw.describe()}")
        for label in layout.labels:
            out.append(f"    labels/{label.name} ({label.kind}): {label.source.describe()}; {label.note}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from workbench.datasets import fetch_dataset, get_dataset, list_datasets

    action = getattr(args, "action", None) or "list"
    if action == "list":
        print(format_table(list_datasets()))
    elif action == "info":
        print(format_info(get_dataset(args.name)))
    elif action == "fetch":
        progress = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            progress = tqdm(unit="B", unit_scale=True, file=sys.stderr, leave=False)
        try:
            path = fetch_dataset(args.name, progress=progress, out=args.out, overwrite=args.overwrite)
        finally:
            if progress is not None:
                progress.close()
        print(path)
    return 0

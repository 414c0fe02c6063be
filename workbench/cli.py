"""The ``workbench`` command line: one sub-command per module in :mod:`workbench.commands`.

Each command module defines ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. A :class:`~workbench.errors.WorkbenchError` becomes a one-line message on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from workbench.errors import WorkbenchError
from workbench.tuning import GLIBC_TUNABLES, reexec_tuned  # noqa: F401  (GLIBC_TUNABLES: public name)


def _command_modules():
    import workbench.commands as pkg

    mods = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        mods.append(importlib.import_module(f"workbench.commands.{info.name}"))
    return mods


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all sub-commands)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="EM Workbench: load EM volumes, train on sparse labels, predict blockwise, view in Neuroglancer.",
    )
    from workbench import __version__

    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _maybe_reexec(argv: list[str]) -> None:
    """Re-execute with glibc malloc tuned (:mod:`workbench.tuning`), once, on Linux (opt out:
    WORKBENCH_NO_REEXEC=1)."""
    reexec_tuned(["-m", "workbench", *argv])


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in {"train", "predict", "app", "segment"}:
        _maybe_reexec(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except WorkbenchError as err:
        print(f"workbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the environment (a full disk, permissions, a file gone): one line, exit 2
        where = f"{err.filename}: " if getattr(err, "filename", None) else ""
        print(f"workbench {args.command}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

"""The ``workbench`` command line: one sub-command per module in :mod:`workbench.commands`.

Each command module defines ``NAME`` (str), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. A :class:`~workbench.errors.WorkbenchError` becomes a one-line message on stderr
and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys

from workbench.errors import WorkbenchError

#: glibc keeps large tensor buffers instead of returning them to the OS at every step (1.3-3x faster
#: training and inference on CPU). It must be set before the interpreter starts, so ``main`` re-executes
#: itself once with it set.
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736"


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
    """Re-execute with glibc malloc tuned, once, on Linux (opt out: WORKBENCH_NO_REEXEC=1)."""
    if (
        sys.platform.startswith("linux")
        and "GLIBC_TUNABLES" not in os.environ
        and not os.environ.get("WORKBENCH_NO_REEXEC")
    ):
        env = dict(os.environ, GLIBC_TUNABLES=GLIBC_TUNABLES, WORKBENCH_NO_REEXEC="1")
        try:
            os.execve(sys.executable, [sys.executable, "-m", "workbench", *argv], env)
        except OSError:
            pass  # keep going without the tuning


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
    except KeyboardInterrupt:
        print(f"workbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())

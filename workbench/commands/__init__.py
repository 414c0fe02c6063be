"""CLI sub-commands, discovered by :mod:`workbench.cli` (one module per command)."""

"""Sharing results: a project's data, runs and scores as a static site folder (data side; the pages are the
UI layer's, :mod:`widgets.site`), and the read-only server of the dashboard (:mod:`workbench.share.server`)."""

from workbench.share.budget import DROP_ORDER, LayerSize, SharePlan, plan_share
from workbench.share.export import (
    MANIFEST,
    ShareOptions,
    ShareResult,
    SitePages,
    check_output,
    is_share,
    select_runs,
    write_share,
)

__all__ = ["DROP_ORDER", "MANIFEST", "LayerSize", "ShareOptions", "ShareResult", "SharePlan", "SitePages",
           "check_output", "is_share", "plan_share", "select_runs", "write_share"]

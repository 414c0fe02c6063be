"""The pages of a shared results site (standalone Bokeh/HoloViews, no kernel) over the core's export
(:mod:`workbench.share`)."""

from __future__ import annotations

from pathlib import Path

from widgets.site.pages import StaticPages, projects_html


def build_site(project, out, options=None, progress=None):
    """Write the static results site of ``project`` to ``out`` (:func:`workbench.share.write_share` with the
    pages); returns the :class:`~workbench.share.ShareResult`."""
    from workbench.share import write_share

    return write_share(project, Path(out), options, pages=StaticPages(), progress=progress)


__all__ = ["StaticPages", "build_site", "projects_html"]

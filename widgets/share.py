"""The Results step's "Share": the project's static results site (:func:`widgets.site.build_site`), where it
is, and a zip of it to download."""

from __future__ import annotations

import base64
import html
import shutil
from pathlib import Path

import ipywidgets as W

from widgets._common import StatusLine, action_button, styled
from widgets.context import AppContext

#: zips up to this size are offered as a download link in the page; larger ones by their path only
DOWNLOAD_LIMIT = 40 * 1024**2
SITE_NAME = "site"


class SharePanel:
    """A button that writes ``<project>/exports/site`` (and ``site.zip``) and says where they are."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.status = StatusLine("share")
        self.button = action_button("share", "Share", icon="share-alt",
                                    tooltip="write a static results site anyone can open (no Python needed), "
                                            "with a zip to download")
        self.button.on_click(self.status.guard(lambda _: self.share()))
        self.result = styled(W.HTML(), "wb-share-result")
        self.widget = styled(W.VBox([W.HBox([self.button, self.result]), self.status.widget]), "wb-share")
        self.last: Path | None = None

    @property
    def site_path(self) -> Path:
        return self.ctx.project.root / "exports" / SITE_NAME

    def share(self, wait: bool = False) -> None:
        """Write the site and its zip in the background (``wait``: block until done)."""
        from widgets.site import build_site

        project = self.ctx.project
        out = self.site_path

        def work(should_stop):
            result = build_site(project, out)
            zip_path = Path(shutil.make_archive(str(out.with_name(SITE_NAME)), "zip", root_dir=out))
            return result, zip_path

        self.button.disabled = True
        self.status.set("writing the results site ...", "busy")
        job = self.ctx.start_job("share", work, on_done=self._done)
        if wait:
            job.wait()

    def _done(self, job) -> None:
        self.button.disabled = False
        if job.error is not None:
            self.status.error(job.error)
            return
        result, zip_path = job.result
        self.last = result.path
        size = zip_path.stat().st_size
        link = ""
        if size <= DOWNLOAD_LIMIT:
            data = base64.b64encode(zip_path.read_bytes()).decode()
            link = (f" · <a class='wb-share-download' download='{html.escape(zip_path.name)}' "
                    f"href='data:application/zip;base64,{data}'>download the zip ({size / 1e6:.1f} MB)</a>")
        self.result.value = (f"<small>site: <code class='wb-share-path'>{html.escape(str(result.path))}</code> "
                             f"({result.bytes / 1e6:.1f} MB); zip: <code>{html.escape(str(zip_path))}</code>{link}</small>")
        self.status.set("results site written: open index.html from any web server "
                        "(python -m http.server), or send the zip", "ok")

"""The app server's heap: a Jupyter server extension that gives freed memory back to the system.

The app server holds no data of its own; it relays messages (widget state, slice images, progress) between
the pages and their kernels. glibc's malloc keeps what those messages freed in its arenas (one per thread
that allocated), so the server's resident memory climbs over a day of sessions although its live Python
objects stay at about ten megabytes. Every :data:`TRIM_SECONDS` the extension calls
``malloc_trim(0)``, which returns the free pages of every arena to the system. Off glibc the extension does
nothing. Jupyter and tornado are imported only when the server loads the extension.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

#: The module name the app server's configuration enables as a Jupyter server extension.
EXTENSION = "widgets.serve.heap"
#: Seconds between two trims of the server's heap.
TRIM_SECONDS = 20.0


def malloc_trim() -> Callable[[], bool] | None:
    """glibc's ``malloc_trim(0)`` as a function returning whether memory was released, or None off glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: bool(trim(0))


def _jupyter_server_extension_points():
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(serverapp) -> None:
    """Trim the server's heap every :data:`TRIM_SECONDS` on its event loop."""
    from tornado.ioloop import PeriodicCallback

    trim = malloc_trim()
    if trim is None:
        serverapp.log.info("workbench heap: no malloc_trim on this system; nothing to do")
        return
    callback = PeriodicCallback(trim, TRIM_SECONDS * 1000.0)
    callback.start()
    serverapp.web_app.settings["workbench_heap_trim"] = callback
    serverapp.log.info("workbench heap: freed memory returned to the system every %.0f s", TRIM_SECONDS)

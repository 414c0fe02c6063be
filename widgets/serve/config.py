"""What the app server runs: its command line, Jupyter configuration, Voila template, kernel environment,
and where the app notebook is (package data: ``widgets/serve/notebooks/workbench.ipynb``).

Pure functions of their arguments (plus the file they write); nothing here starts a process.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

from widgets.serve.guard import EXTENSION as GUARD_EXTENSION
from widgets.serve.heap import EXTENSION as HEAP_EXTENSION
from widgets.serve.proxy import EXTENSION as PROXY_EXTENSION
from workbench.errors import WorkbenchError
from workbench.ports import PROXY_PORTS_ENV

#: The server's Python allocator (kernels keep pymalloc): see :func:`app_environment`.
SERVER_PYTHONMALLOC = "malloc"
#: Environment variables passed to every kernel.
PROJECT_ENV, DATA_ROOT_ENV = "WORKBENCH_PROJECT", "WORKBENCH_DATA_ROOT"
#: The app notebook, relative to the notebook directory.
APP_NOTEBOOK = "workbench.ipynb"
#: A kernel idle (no execution, no output) this long is shut down; checked every CULL_INTERVAL s.
CULL_IDLE_SECONDS, CULL_INTERVAL_SECONDS = 3600, 300
#: Seconds a kernel gets to end after a shutdown request (SIGTERM at half of it, SIGKILL at the end): its
#: session cleanups (stop training with a checkpoint, stop prediction) run in the first half.
KERNEL_SHUTDOWN_SECONDS = 6.0
#: Kernel messages a browser may send to a page's kernel: widget (comm) traffic only, as Voila's own
#: standalone server allows; ``execute_request`` (running code) is dropped by the server.
ALLOWED_KERNEL_MESSAGES = ("comm_open", "comm_close", "comm_msg", "comm_info_request", "kernel_info_request",
                           "shutdown_request")
#: Security headers of every response (Voila's page needs inline scripts and ``eval``: widgets, Bokeh).
#: Frames: same origin only (the Neuroglancer viewer is embedded through the server's own /proxy/).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self' blob: data:",
    "worker-src 'self' blob:",
    "frame-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
#: Jupyter server extensions the app does not use (installed with the app extras): never loaded.
UNUSED_EXTENSIONS = ("jupyterlab", "notebook", "jupyter_lsp", "nbclassic", "notebook_shim")
#: Modules the app server and its kernels need (the ``app`` extras), as import names.
APP_MODULES = ("jupyter_server", "voila", "jupyter_server_proxy", "ipykernel", "ipywidgets", "holoviews",
               "panel", "bokeh", "jupyter_bokeh")

#: Voila template of the app: Voila's "lab" template with Font Awesome served locally instead of from a CDN.
VOILA_TEMPLATE = "workbench"
_CDN_FONTAWESOME = "https://cdn.jsdelivr.net/npm/@fortawesome/fontawesome-free@^5/css/"
_TEMPLATE_J2 = (
    "{%- extends 'lab/index.html.j2' -%}\n"
    "{%- block notebook_css -%}\n"
    "{{ super() | replace('" + _CDN_FONTAWESOME + "', resources.base_url ~ 'panel_dist/bundled/font-awesome/css/') }}\n"
    "{%- endblock notebook_css -%}\n"
)


def default_notebook_dir() -> Path:
    """The folder holding the app notebook, shipped as package data (``widgets/serve/notebooks/``).

    Raises:
        WorkbenchError: the package is not on the file system (e.g. imported from a zip file).
    """
    folder = resources.files("widgets.serve").joinpath("notebooks")
    if not isinstance(folder, Path) or not (folder / APP_NOTEBOOK).is_file():
        raise WorkbenchError(f"the app notebook {APP_NOTEBOOK} is not installed with the widgets package "
                             "(reinstall em-workbench, or pass --notebook-dir)", str(folder))
    return folder


def missing_app_modules() -> list[str]:
    """The modules of :data:`APP_MODULES` that cannot be imported here."""
    from importlib.util import find_spec

    return [name for name in APP_MODULES if find_spec(name) is None]


def config_text() -> str:
    """The Jupyter server configuration file of one app run (Python)."""
    return "\n".join(
        [
            "# written by widgets.serve for one app run",
            "c = get_config()  # noqa: F821",
            "c.ServerApp.jpserver_extensions = {",
            "    'voila': True,",
            f"    {GUARD_EXTENSION!r}: True,   # only the app's routes; the page URL without its token",
            f"    {PROXY_EXTENSION!r}: True,",
            f"    {HEAP_EXTENSION!r}: True,   # returns freed memory to the system (the server relays messages)",
            *[f"    {name!r}: False," for name in UNUSED_EXTENSIONS],
            f"    'jupyter_server_proxy': False,   # unrestricted /proxy/<any port>: replaced by {PROXY_EXTENSION}",
            "    'jupyter_server_terminals': False,",
            "}",
            "c.ServerApp.terminals_enabled = False",
            "c.ServerApp.open_browser = False",
            "c.ServerApp.port_retries = 0",
            f"c.MappingKernelManager.cull_idle_timeout = {CULL_IDLE_SECONDS}",
            f"c.MappingKernelManager.cull_interval = {CULL_INTERVAL_SECONDS}",
            "c.MappingKernelManager.cull_connected = False",
            "# a closed page's kernel is shut down, never reconnected: keep no zmq streams for it",
            "c.MappingKernelManager.buffer_offline_messages = False",
            f"c.KernelManager.shutdown_wait_time = {KERNEL_SHUTDOWN_SECONDS}",
            f"c.MappingKernelManager.allowed_message_types = {list(ALLOWED_KERNEL_MESSAGES)!r}",
            "c.IdentityProvider.cookie_options = {'samesite': 'Lax'}",
            "c.VoilaConfiguration.show_tracebacks = False",
            f"c.VoilaConfiguration.template = {VOILA_TEMPLATE!r}",
            "# no CDN: the math renderer bundled with the page is used; the legacy MathJax URL loads nothing",
            f"c.ServerApp.tornado_settings = {{'mathjax_url': 'data:text/javascript,', 'headers': {SECURITY_HEADERS!r}}}",
            "# labextensions meant for JupyterLab only (they fail to load in a Voila page)",
            "c.VoilaConfiguration.extension_denylist = ['@jupyterhub/jupyter-server-proxy', '@jupyter-lsp/jupyterlab-lsp']",
            "",
        ]
    )


def write_voila_template(data_dir: Path) -> Path:
    """Write the app's Voila template under ``data_dir/voila/templates/`` (a Jupyter data path).

    Voila's lab template links Font Awesome from a CDN (nothing loads offline and the page waits on
    it); this one links the copy that Panel ships and serves at ``{base_url}panel_dist/``.
    """
    tdir = Path(data_dir) / "voila" / "templates" / VOILA_TEMPLATE
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "conf.json").write_text('{"base_template": "lab"}\n')
    (tdir / "index.html.j2").write_text(_TEMPLATE_J2)
    return tdir


def build_command(port: int, bind: str, token: str, notebook_dir: Path, config_file: Path) -> list[str]:
    """The ``jupyter server`` command line (as this Python).

    A token is never on the command line (every local user can read a process list): pass it with
    :func:`token_environment`. An empty ``token`` switches authentication off (``--public``).
    """
    cmd = [
        sys.executable,
        "-m",
        "jupyter_server",
        f"--config={config_file}",
        "--no-browser",
        f"--port={int(port)}",
        f"--ServerApp.ip={bind}",
        f"--ServerApp.root_dir={notebook_dir}",
        "--ServerApp.password=",
    ]
    if not token:  # no token at all (--public); a real token goes in the environment (token_environment)
        cmd.append("--IdentityProvider.token=")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def token_environment(token: str) -> dict:
    """The environment variable carrying the server's token (readable by the same user only)."""
    return {"JUPYTER_TOKEN": token} if token else {}


def app_environment(runtime: Path, project=None, data=None, base=None) -> dict:
    """Environment of the Jupyter server, which every kernel it starts inherits.

    Sets ``WORKBENCH_PROJECT`` / ``WORKBENCH_DATA_ROOT`` (absolute paths) when given, the viewer port
    registry (``WORKBENCH_PROXY_PORTS_DIR``) and a private Jupyter runtime dir. The glibc malloc tuning of
    :mod:`workbench.tuning` is taken out: it keeps a heap at its high-water mark (no trimming, nothing
    mapped apart), right for the kernels' tensors, but the server holds only messages, and with it the
    server's memory grew with the busiest moment it had served. The kernels get it back from their kernel
    spec (:func:`write_kernel_spec`, :func:`kernel_environment`). A user's own ``GLIBC_TUNABLES`` is kept.
    """
    from workbench.tuning import GLIBC_TUNABLES

    env = dict(os.environ if base is None else base)
    if env.get("GLIBC_TUNABLES") == GLIBC_TUNABLES:
        del env["GLIBC_TUNABLES"]
    # Python objects in malloc, not in pymalloc's arenas: an arena is returned only when all of its objects
    # are gone, glibc's free pages are returned by the server's periodic trim (widgets.serve.heap)
    env.setdefault("PYTHONMALLOC", SERVER_PYTHONMALLOC)
    data_dir = str(Path(runtime) / "jupyter-data")
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (data_dir, env.get("JUPYTER_PATH", "")) if p)
    env[PROXY_PORTS_ENV] = str(Path(runtime) / "viewer-ports")
    env["JUPYTER_RUNTIME_DIR"] = str(Path(runtime) / "jupyter-runtime")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if project is not None:
        env[PROJECT_ENV] = str(Path(project).resolve())
    if data is not None:
        env[DATA_ROOT_ENV] = str(Path(data).resolve())
    return env


def kernel_environment(base=None) -> dict:
    """What a kernel adds to the server's environment: the glibc malloc tuning (the user's own
    ``GLIBC_TUNABLES`` if set, else :data:`workbench.tuning.GLIBC_TUNABLES`) and Python's own small-object
    allocator (the server's ``PYTHONMALLOC=malloc`` is for a message relay, not for a kernel)."""
    from workbench.tuning import tuned_env

    base = {} if base is None else base
    own = base.get("PYTHONMALLOC")
    return {"GLIBC_TUNABLES": tuned_env(base)["GLIBC_TUNABLES"],
            "PYTHONMALLOC": own if own and own != SERVER_PYTHONMALLOC else "pymalloc"}


def write_kernel_spec(data_dir: Path, env: dict) -> Path:
    """Write the app's ``python3`` kernel spec under ``data_dir/kernels/`` (a Jupyter data path that comes
    first, so it is the one the app notebook's kernel name finds): ipykernel in this Python, with ``env``
    added to the kernel's environment. Returns the spec's folder."""
    import json

    from ipykernel.kernelspec import get_kernel_dict

    spec = get_kernel_dict()
    spec["env"] = dict(env)
    kdir = Path(data_dir) / "kernels" / "python3"
    kdir.mkdir(parents=True, exist_ok=True)
    (kdir / "kernel.json").write_text(json.dumps(spec, indent=1) + "\n")
    return kdir

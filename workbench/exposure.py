"""Who can reach a server: loopback addresses, and the rule for listening anywhere else.

A server of the workbench (the app, a viewer, a dashboard) listening on a loopback address is reachable
from this machine only. Listening on any other address (``0.0.0.0``, a LAN address, a host name) makes it
reachable from other machines: that needs an explicit choice, either an access token (``--token``) or
``--public`` (no token: whoever reaches the port can use it).

Standard library only.
"""

from __future__ import annotations

import ipaddress

from workbench.errors import WorkbenchError

#: Host names that always mean this machine only.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only (127.0.0.0/8, ``::1``, ``localhost``).

    ``0.0.0.0``, ``::`` and the empty string (every interface), other addresses and other host names are
    not loopback. A bracketed IPv6 address (``[::1]``) and an IPv6 zone (``::1%lo``) are accepted.
    """
    name = str(host or "").strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.split("%", 1)[0].rstrip(".")
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def check_exposure(host: str, token: str | None, public: bool, *, options: str = "--token or --public") -> str | None:
    """Allow, or refuse, listening on ``host``.

    Args:
        host: the address the server will listen on.
        token: the access token the user chose (``--token``), or None.
        public: True when the user asked for no protection at all (``--public``).
        options: the command's options that allow it, as named in the error.
    Returns:
        None for a loopback host (nothing to say), else a one-line warning to print.
    Raises:
        WorkbenchError: ``host`` is not loopback and neither a token nor ``public`` was given.
    """
    if is_loopback(host):
        return None
    shown = host if host else "''"
    if not token and not public:
        raise WorkbenchError(f"--host {shown} is reachable from other machines: give {options}")
    if token:
        return (f"warning: listening on {shown}: anyone who can reach this port and has the token can see the "
                "data and, in the app, run code as this user; prefer an SSH tunnel (the token travels in clear text)")
    return (f"warning: listening on {shown} with --public: anyone who can reach this port can see the data and, "
            "in the app, run code as this user")

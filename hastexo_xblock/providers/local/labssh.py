"""The lab host's SSH server: who may log in, and what a session may ask for.

Public-key authentication with the lab's ``authorized_keys`` only (no
passwords, no keyboard-interactive), the lab's own host key, no agent or X11
forwarding and no SCP; PTY shells and commands are run in the lab by the
lab host (:meth:`LabHost.handle`), and forwarding requests
(``direct-streamlocal``, ``direct-tcpip``: the gateway reaching the lab's VNC
server) are connected from inside the lab (:meth:`LabHost.open_in_lab`),
never from the host.  It listens on ``127.0.0.1`` only.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import asyncssh

from . import statedir

if TYPE_CHECKING:
    from .labhost import LabHost

log = logging.getLogger("hastexo_xblock.labhost")


async def listen(host: LabHost, port: int) -> asyncssh.SSHAcceptor:
    """Serve SSH for ``host`` on ``127.0.0.1:port``, or on an ephemeral port when ``port`` is 0 or taken."""
    host_key = asyncssh.read_private_key(host.dir.file(statedir.HOST_KEY_FILE))
    authorized = asyncssh.read_authorized_keys(host.dir.file(statedir.AUTHORIZED_KEYS_FILE))

    class Server(asyncssh.SSHServer):
        def connection_made(self, conn: Any) -> None:
            log.info("connection from %s", conn.get_extra_info("peername"))

        def connection_lost(self, exc: Exception | None) -> None:
            log.info("connection closed%s", f": {exc}" if exc else "")

        def begin_auth(self, username: str) -> bool:
            return True  # authentication is always required

        def password_auth_supported(self) -> bool:
            return False

        def kbdint_auth_supported(self) -> bool:
            return False

        def unix_connection_requested(self, dest_path: str) -> Any:
            return host.open_in_lab(f"unix:{dest_path}")

        def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
            address = f"[{dest_host}]" if ":" in dest_host else dest_host
            return host.open_in_lab(f"tcp:{address}:{dest_port}")

    options = {
        "server_factory": Server,
        "server_host_keys": [host_key],
        "authorized_client_keys": authorized,
        "process_factory": host.handle,
        "encoding": None,
        # The pty goes straight to the shell: no asyncssh line editor.
        "line_editor": False,
        "allow_scp": False,
        "agent_forwarding": False,
        "x11_forwarding": False,
        "gss_host": None,
        "login_timeout": 60,
        "keepalive_interval": 60,
    }
    if port:
        try:
            return await asyncssh.create_server(host="127.0.0.1", port=port, **options)
        except OSError as exc:
            log.info("port %s is not available (%s); using a new one", port, exc)
    return await asyncssh.create_server(host="127.0.0.1", port=0, **options)

"""Run the gateway under uvicorn with the settings it was measured with.

``python -m hastexo_xblock.gateway --host 0.0.0.0 --port 8095 --workers 2``
(with ``DJANGO_SETTINGS_MODULE`` set, or ``--settings``) is the supported way to
serve it; :func:`uvicorn_options` gives the same settings to anyone who
builds a ``uvicorn.Config`` themselves (the tests, the benchmarks).

Why these settings (see the README's measurements):

* the event loop is uvloop and the HTTP parser httptools when installed
  (``loop``/``http`` ``"auto"``);
* the websocket implementation is uvicorn's ``websockets-sansio`` (no
  deprecated legacy protocol, no drain race between the output pump and
  keepalive pongs, less memory per connection), in the gateway's variant
  that does not pause reading after every message (:mod:`.wsprotocol`);
* permessage-deflate is off: terminal bytes are small, compressing them costs
  far more CPU than the bytes it saves on any network a course runs on;
* the server's keepalive pings allow a browser to stall (a background tab, a
  slow link) for :data:`WS_PING_TIMEOUT` seconds before the session is cut;
* websocket messages are capped at the protocol's input limit, so an oversized
  message is refused by the server with 1009 before the application sees it;
* no access log: websocket URLs carry tickets.

Several workers (``--workers``) or replicas behind a load balancer share
nothing in memory: tickets are spent in the database, activity is written in
batches by each process.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from . import protocol

APP = "hastexo_xblock.gateway.asgi:application"
WS_IMPLEMENTATION = "hastexo_xblock.gateway.wsprotocol:GatewayWebSocketProtocol"
#: Seconds between the server's websocket pings, and how long a browser may take to answer.
WS_PING_INTERVAL = 30.0
WS_PING_TIMEOUT = 60.0


def uvicorn_options(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``/``uvicorn.run`` (without app, host and port)."""
    options: dict[str, Any] = {
        "loop": "auto",
        "http": "auto",
        "ws": WS_IMPLEMENTATION,
        "ws_per_message_deflate": False,
        "ws_ping_interval": WS_PING_INTERVAL,
        "ws_ping_timeout": WS_PING_TIMEOUT,
        "ws_max_size": protocol.MAX_INPUT_BYTES,
        "access_log": False,
        "lifespan": "on",
        "timeout_graceful_shutdown": 10,
    }
    options.update(overrides)
    return options


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the gateway (``python -m hastexo_xblock.gateway --help``)."""
    parser = argparse.ArgumentParser(prog="python -m hastexo_xblock.gateway", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8095)
    parser.add_argument("--uds", help="listen on this Unix socket instead of host:port")
    parser.add_argument("--workers", type=int, default=1, help="processes (about one per core; see the README)")
    parser.add_argument("--settings", help="Django settings module (default: $DJANGO_SETTINGS_MODULE)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--root-path", default="", help="path prefix the load balancer strips, if any")
    parser.add_argument(
        "--ws", default=WS_IMPLEMENTATION, help="uvicorn websocket implementation (default: the measured one)"
    )
    args = parser.parse_args(argv)
    if args.settings:
        os.environ["DJANGO_SETTINGS_MODULE"] = args.settings
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        parser.error("set DJANGO_SETTINGS_MODULE or pass --settings")

    import uvicorn

    uvicorn.run(
        APP,
        host=args.host,
        port=args.port,
        uds=args.uds,
        workers=args.workers,
        root_path=args.root_path,
        log_level=args.log_level,
        **uvicorn_options(ws=args.ws),
    )

"""The RDP desktop in a real browser: guacamole-common-js (vendored) through the real gateway to a Guacamole server.

No real guacd here (Debian 12 does not package it).  A small Guacamole-protocol
server plays guacd: it answers the gateway's handshake, connects to the
tunnel the gateway opened to a real local lab (as guacd would, to reach the
RDP server), then draws a green rectangle on the browser's display and
records every instruction the browser sends.  The page is the block's own
student view (markup and init args from ``student_view``) with the built
bundle, on a small HTTP server that answers the two handlers the page calls
(the lab is up; a fresh gateway ticket per call).  Headless Chromium must show
the rectangle (pixels), and a click, a key and the clipboard box must reach
"guacd" as Guacamole instructions; text guacd puts on the clipboard shows in
the page's clipboard box.  When "guacd" ends the connection, the page follows
the gateway's close code (1000: the session ended) and reconnects on request
with a new ticket.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hastexo_xblock.gateway import guac

from . import test_gateway, test_gateway_vnc
from .test_browser import CHROMIUM, CHROMIUM_ARGS, require_browser
from .test_gateway import ticket_for
from .test_gateway_guac import ARGS, instruction_reader
from .test_gateway_vnc import desktop_stack

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]

gateway = test_gateway.gateway
desktop_lab = test_gateway_vnc.desktop_lab
PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/hastexo_xblock"


class DrawingGuacd:
    """A Guacamole server: guacd's handshake, then a picture for the browser and a record of what it sends."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="drawing-guacd", daemon=True)
        self.received: list[list[str]] = []
        self.problems: list[str] = []
        self.tunnel_greeting = b""
        self.writer: asyncio.StreamWriter | None = None
        self.port = 0

    def start(self) -> None:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self.loop)
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def send(self, *instructions: tuple[str, ...]) -> None:
        text = "".join(guac.encode(*instruction) for instruction in instructions).encode()
        self.loop.call_soon_threadsafe(lambda: self.writer and self.writer.write(text))

    def drop(self) -> None:
        """End the current connection, as a guacd that lost its RDP server would."""
        self.loop.call_soon_threadsafe(lambda: self.writer and self.writer.close())

    def opcodes(self) -> list[str]:
        return [instruction[0] for instruction in list(self.received)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        next_instruction = instruction_reader(reader)
        try:
            if await next_instruction() != ["select", "rdp"]:
                self.problems.append("no select rdp")
            writer.write(guac.encode("args", *ARGS).encode())
            handshake = {}
            for opcode in ("size", "audio", "video", "image", "connect"):
                instruction = await next_instruction()
                handshake[opcode] = instruction[1:]
            values = dict(zip(ARGS, handshake["connect"], strict=True))
            self.size = handshake["size"]
            tunnel_reader, _tunnel_writer = await asyncio.open_connection(values["hostname"], int(values["port"]))
            self.tunnel_greeting = await asyncio.wait_for(tunnel_reader.readexactly(12), 10)
            self.writer = writer
            writer.write(
                (
                    guac.encode("ready", "$drawing")
                    + guac.encode("size", "0", "640", "400")
                    + guac.encode("rect", "0", "40", "40", "320", "200")
                    + guac.encode("cfill", "14", "0", "0", "200", "0", "255")
                    + guac.encode("sync", "1")
                ).encode()
            )
            while True:
                instruction = await next_instruction()
                if instruction[0] == "sync":
                    continue  # the browser's answer to our frames
                self.received.append(instruction)
        except (EOFError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as error:
            self.problems.append(f"ended: {type(error).__name__}")
        finally:
            writer.close()


@pytest.fixture
def drawing_guacd(hastexo_settings) -> Iterator[DrawingGuacd]:
    server = DrawingGuacd()
    server.start()
    hastexo_settings(guacd={"host": "127.0.0.1", "port": server.port})
    yield server
    server.stop()


def student_page() -> tuple[str, Any]:
    """The block's student view for an rdp lab, as a page, and its init args."""
    from workbench.runtime import WorkbenchRuntime

    runtime = WorkbenchRuntime("rdp-learner")
    runtime.id_generator.set_scenario("rdp")
    block = runtime.get_block(
        runtime.parse_xml_string(
            '<hastexo display_name="RDP" stack_template_path="t.yaml" stack_user_name="learner" stack_protocol="rdp"/>'
        )
    )
    frag = block.student_view({})
    head = "".join(
        f'<link rel="stylesheet" href="{r.data}">' if r.mimetype == "text/css" else f'<script src="{r.data}"></script>'
        for r in frag.resources
        if r.kind == "url"
    )
    body = (
        f'<!DOCTYPE html><html><head><meta charset="utf-8">{head}</head><body>'
        f'<div id="block">{frag.body_html()}</div><script>'
        "HastexoXBlock({handlerUrl: (el, name) => '/handler/' + name}, document.getElementById('block'), "
        f"{json.dumps(frag.json_init_args)});</script></body></html>"
    )
    return body, frag.json_init_args


@pytest.fixture
def page_server(gateway, desktop_lab) -> Iterator[dict[str, Any]]:
    stack = desktop_stack(desktop_lab, protocol="rdp", password="rdp-secret-pw")
    minted: list[str] = []
    body, init_args = student_page()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def reply(self, status: int, content: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def do_GET(self) -> None:
            if self.path == "/":
                self.reply(200, body.encode(), "text/html; charset=utf-8")
                return
            prefix = "/resource/hastexo/"
            path = os.path.normpath(os.path.join(PACKAGE, self.path[len(prefix) :].split("?")[0]))
            if (
                not self.path.startswith(prefix)
                or not path.startswith(PACKAGE + "/static/")
                or not os.path.isfile(path)
            ):
                self.reply(404, b"", "text/plain")
                return
            kind = {".js": "text/javascript", ".css": "text/css"}.get(os.path.splitext(path)[1], "text/plain")
            with open(path, "rb") as handle:
                self.reply(200, handle.read(), kind)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            name = self.path.rsplit("/", 1)[-1]
            if name == "get_user_stack_status":
                answer = {"status": "CREATE_COMPLETE", "up": True}
            elif name == "get_ticket":
                token = ticket_for(stack, protocol="rdp")
                minted.append(token)
                answer = {"url": f"{gateway.ws_base}?ticket={token}"}
            else:
                answer = {}
            self.reply(200, json.dumps(answer).encode(), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}/", "init_args": init_args, "tickets": minted}
    server.shutdown()
    thread.join(10)


#: JS: the share of the display's pixels in the green of the rectangle guacd drew.
GREEN_SHARE = """() => {
  let green = 0, total = 0;
  for (const canvas of document.querySelectorAll('.hastexo-desktop canvas')) {
    if (!canvas.width || !canvas.height) continue;
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    for (let i = 0; i < d.length; i += 4) { total += 1; if (d[i] < 20 && d[i + 1] > 180 && d[i + 2] < 20) green += 1; }
  }
  return total ? green / total : 0;
}"""


def test_rdp_desktop_in_the_browser(page_server, drawing_guacd, output_dir):
    require_browser()
    from playwright.sync_api import sync_playwright

    assert page_server["init_args"]["protocol"] == "rdp"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            page.goto(page_server["url"])
            page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=30_000)
            # The picture guacd drew: a 320x200 rectangle on a 640x400 screen, a quarter of it.
            page.wait_for_function(f"({GREEN_SHARE})() > 0.2", timeout=15_000)
            assert drawing_guacd.tunnel_greeting.startswith(b"RFB ")  # guacd reached the lab through the tunnel
            width, height, _dpi = (int(v) for v in drawing_guacd.size)
            assert 320 <= width <= 1000 and 200 <= height <= 800  # the unit's size, asked for by the browser

            box = page.locator(".hastexo-desktop").bounding_box()
            page.mouse.click(box["x"] + 100, box["y"] + 100)
            page.keyboard.press("a")
            page.click(".hastexo-clipboard-toggle")
            page.fill(".hastexo-clipboard-text", "to the lab")
            page.click(".hastexo-clipboard-send")
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                opcodes = drawing_guacd.opcodes()
                if {"mouse", "key", "clipboard", "end"} <= set(opcodes):
                    break
                time.sleep(0.1)
            received = list(drawing_guacd.received)
            assert any(i[0] == "mouse" and i[3] == "1" for i in received), received  # left button down
            assert ["key", "97", "1"] in received and ["key", "97", "0"] in received, received
            clipboard = next(i for i in received if i[0] == "clipboard")
            assert clipboard[2] == "text/plain"
            blob = "".join(i[2] for i in received if i[0] == "blob" and i[1] == clipboard[1])
            assert base64.b64decode(blob).decode() == "to the lab"

            # guacd's clipboard reaches the page's clipboard box.
            drawing_guacd.send(
                ("clipboard", "7", "text/plain"),
                ("blob", "7", base64.b64encode(b"from the lab").decode()),
                ("end", "7"),
            )
            page.wait_for_function(
                "document.querySelector('.hastexo-clipboard-text').value === 'from the lab'", timeout=10_000
            )
            assert "rdp-secret-pw" not in page.content()
            page.locator(".hastexo-xblock").screenshot(path=os.path.join(output_dir, "browser-rdp.png"))

            # guacd ends the connection: the gateway closes normally (1000, as when a shell exits), the page
            # says the session ended and offers "Reconnect", which opens a new session with a new ticket.
            drawing_guacd.drop()
            page.wait_for_selector('.hastexo-xblock[data-state="ended"]', timeout=10_000)
            assert page.locator(".hastexo-reconnect").is_visible()
            page.click(".hastexo-reconnect")
            page.wait_for_selector('.hastexo-xblock[data-state="connected"]', timeout=30_000)
            page.wait_for_function(f"({GREEN_SHARE})() > 0.2", timeout=15_000)
            assert len(page_server["tickets"]) == 2
        finally:
            browser.close()
    assert errors == []

"""A small RFB (VNC) client over a websocket, for the desktop tests and benchmarks.

It speaks what noVNC speaks to the gateway: binary frames carry RFB; text
frames (the gateway's JSON status messages) are collected aside.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from typing import Any

from websockets.asyncio.client import ClientConnection

RAW = 0
KEY_RETURN = 0xFF0D


class RFBClient:
    """The browser's side: handshake, framebuffer updates (raw encoding), key and pointer events."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.buffer = bytearray()
        self.messages: list[dict[str, Any]] = []
        self.width = self.height = 0
        self.name = ""
        self.security_types: list[int] = []
        self.server_version = b""
        #: The framebuffer as 32-bit little-endian BGRX pixels (the format set by :meth:`handshake`).
        self.pixels = bytearray()

    async def _more(self, timeout: float) -> None:
        message = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(message, bytes):
            self.buffer += message
        else:
            self.messages.append(json.loads(message))

    async def read(self, count: int, timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < count:
            await self._more(max(0.01, deadline - time.monotonic()))
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def sync(self, timeout: float = 10) -> None:
        """Round-trip a ping: everything sent before has been processed by the gateway."""
        await self.ws.send(json.dumps({"type": "ping"}))
        deadline = time.monotonic() + timeout
        while {"type": "pong"} not in self.messages:
            await self._more(max(0.01, deadline - time.monotonic()))
        self.messages.remove({"type": "pong"})

    async def send(self, data: bytes) -> None:
        await self.ws.send(data)

    async def handshake(self, *, shared: bool = False) -> None:
        """Version, security "None", ClientInit, ServerInit; then ask for 32-bit pixels and raw encoding."""
        self.server_version = await self.read(12)
        await self.send(b"RFB 003.008\n")
        count = (await self.read(1))[0]
        self.security_types = list(await self.read(count))
        await self.send(bytes([1]))
        assert struct.unpack(">I", await self.read(4))[0] == 0
        await self.send(bytes([1 if shared else 0]))
        self.width, self.height = struct.unpack(">HH", await self.read(4))
        await self.read(16)
        (length,) = struct.unpack(">I", await self.read(4))
        self.name = (await self.read(length)).decode()
        self.pixels = bytearray(self.width * self.height * 4)
        # 32 bpp, depth 24, little-endian, true colour, 255/255/255, shifts 16/8/0.
        await self.send(struct.pack(">BxxxBBBBHHHBBBxxx", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        await self.send(struct.pack(">BxHi", 2, 1, RAW))

    async def request(self, incremental: bool = True) -> None:
        await self.send(struct.pack(">BBHHHH", 3, 1 if incremental else 0, 0, 0, self.width, self.height))

    async def update(self, timeout: float = 10) -> int:
        """Read server messages until one FramebufferUpdate has been applied; return its pixel count."""
        while True:
            kind = (await self.read(1, timeout))[0]
            if kind == 0:
                _, rects = struct.unpack(">BH", await self.read(3, timeout))
                painted = 0
                for _ in range(rects):
                    x, y, w, h, encoding = struct.unpack(">HHHHi", await self.read(12, timeout))
                    if encoding != RAW:
                        # Pseudo-encodings (none requested) carry no pixels.
                        continue
                    data = await self.read(w * h * 4, timeout)
                    for row in range(h):
                        start = ((y + row) * self.width + x) * 4
                        self.pixels[start : start + w * 4] = data[row * w * 4 : (row + 1) * w * 4]
                    painted += w * h
                return painted
            if kind == 1:  # SetColourMapEntries
                _, _, count = struct.unpack(">BHH", await self.read(5, timeout))
                await self.read(6 * count, timeout)
            elif kind == 2:  # Bell
                continue
            elif kind == 3:  # ServerCutText
                _, length = struct.unpack(">3sI", await self.read(7, timeout))
                await self.read(length, timeout)
            elif kind == 248:  # ServerFence
                _, _, length = struct.unpack(">3sIB", await self.read(8, timeout))
                await self.read(length, timeout)
            else:
                raise AssertionError(f"unexpected server message {kind}")

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        offset = (y * self.width + x) * 4
        blue, green, red = self.pixels[offset : offset + 3]
        return red, green, blue

    def colours(self) -> int:
        """Number of distinct colours on screen (a blank screen has one)."""
        return len({bytes(self.pixels[i : i + 3]) for i in range(0, len(self.pixels), 4 * 97)})

    async def key(self, keysym: int) -> None:
        await self.send(struct.pack(">BBxxI", 4, 1, keysym) + struct.pack(">BBxxI", 4, 0, keysym))

    async def type(self, text: str) -> None:
        for char in text:
            await self.key(KEY_RETURN if char == "\n" else ord(char))

    async def pointer(self, x: int, y: int, buttons: int = 0) -> None:
        await self.send(struct.pack(">BBHH", 5, buttons, x, y))

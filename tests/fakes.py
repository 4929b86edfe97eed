"""Small fake providers for lifecycle edge cases that real parts cannot show on demand.

They keep their stacks in a class-level dict, so the instance the lifecycle
gets from the registry and the test see the same state.  ``outputs`` point at
a real SSH server the test starts (see ``conftest.ssh_lab``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

from hastexo_xblock import states, timing
from hastexo_xblock.providers.base import (
    Provider,
    ProviderStack,
    StackOutputs,
    TransientProviderError,
)


class FakeProvider(Provider):
    """An instant, well-behaved provider.

    Config keys: ``lab`` (``(host, port, host_key)`` of a real SSH server),
    ``polls`` (how many ``get`` calls an operation stays ``*_IN_PROGRESS``;
    ``-1`` = forever), ``fail_create`` (a reason: create ends ``CREATE_FAILED``),
    ``transient`` (how many calls raise :class:`TransientProviderError` first),
    ``seconds`` (an operation takes this long on ``timing.CLOCK``, instead of ``polls`` GETs).
    """

    type_name = "fake"
    stacks: dict[str, dict[str, dict[str, Any]]] = {}
    calls: list[tuple[str, str, str]] = []
    parameters: dict[str, dict[str, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, name: str, config: Mapping[str, Any]) -> None:
        super().__init__(name, config)
        self.stacks.setdefault(name, {})
        self._transient = int(config.get("transient", 0))

    @classmethod
    def clear(cls) -> None:
        cls.stacks.clear()
        cls.calls.clear()
        cls.parameters.clear()

    def _record(self, op: str, name: str) -> None:
        with self._lock:
            self.calls.append((self.name, op, name))
            if self._transient > 0:
                self._transient -= 1
                raise TransientProviderError(f"{self.name}: 503 Service Unavailable")

    def _outputs(self) -> StackOutputs:
        host, port, _key = self.config["lab"]
        return StackOutputs(public_ip=host, private_key="-----FAKE PRIVATE KEY-----", ssh_port=port)

    def _start(self, name: str, final: str, reason: str = "") -> ProviderStack:
        action = final.split("_")[0]
        polls = int(self.config.get("polls", 0))
        seconds = float(self.config.get("seconds", 0))
        self.stacks[self.name][name] = {
            "status": f"{action}_IN_PROGRESS" if polls or seconds else final,
            "final": final,
            "left": polls,
            "reason": reason,
            "until": timing.CLOCK.monotonic() + seconds if seconds else None,
            "seconds": seconds,
        }
        return self.get(name)

    def create(self, name, template, environment=None, parameters=None) -> ProviderStack:
        self._record("create", name)
        self.parameters[name] = dict(parameters or {})
        if self.config.get("fail_create"):
            return self._start(name, states.CREATE_FAILED, self.config["fail_create"])
        return self._start(name, states.CREATE_COMPLETE)

    def get(self, name: str) -> ProviderStack:
        self._record("get", name)
        stack = self.stacks[self.name].get(name)
        if stack is None:
            return ProviderStack(name, states.DELETE_COMPLETE)
        fraction = 0.5
        if stack.get("until") is not None and stack["status"].endswith("_IN_PROGRESS"):
            left = stack["until"] - timing.CLOCK.monotonic()
            fraction = 1 - max(0.0, left) / stack["seconds"]
            if left <= 0:
                stack["status"] = stack["final"]
        elif stack["status"].endswith("_IN_PROGRESS") and stack["left"] != -1:
            stack["left"] -= 1
            if stack["left"] <= 0:
                stack["status"] = stack["final"]
        status = stack["status"]
        if status == states.DELETE_COMPLETE:
            del self.stacks[self.name][name]
        up = status in states.UP or status == states.SUSPEND_COMPLETE
        return ProviderStack(
            name,
            status,
            stack["reason"],
            outputs=self._outputs() if up else None,
            progress=fraction if status.endswith("_IN_PROGRESS") else None,
            extra={"host_key": self.config["lab"][2], **self.config.get("extra", {})},
        )

    def suspend(self, name: str) -> ProviderStack:
        self._record("suspend", name)
        return self._start(name, states.SUSPEND_COMPLETE)

    def resume(self, name: str) -> ProviderStack:
        self._record("resume", name)
        return self._start(name, states.RESUME_COMPLETE)

    def delete(self, name: str) -> ProviderStack:
        self._record("delete", name)
        if name not in self.stacks[self.name]:
            return ProviderStack(name, states.DELETE_COMPLETE)
        return self._start(name, states.DELETE_COMPLETE)

    def list(self) -> list[str]:
        return sorted(self.stacks[self.name])


def collect_sends(into: list) -> Any:
    """A ``dispatch.send`` stand-in for the jobs: ``delete`` appends the stack id, ``delete_orphan`` the pair."""

    def send(task_name: str, *args: Any, **_kwargs: Any) -> None:
        if task_name == "delete_orphan":
            into.append(tuple(args))
        else:
            into.append(args[0] if len(args) == 1 else (task_name, *args))

    return send


class ManualClock(timing.Clock):
    """A clock whose time moves only when someone sleeps on it (no real waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0
        super().__init__(monotonic=lambda: self.now, sleep=self._sleep, asleep=self._asleep)

    def _sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds

    async def _asleep(self, seconds: float) -> None:
        self._sleep(seconds)


class SlowFileProvider(Provider):
    """A provider whose creates take ``seconds`` of real time, with its state in files.

    Shared between the test process and worker subprocesses (``root``), so a
    test can kill a worker mid-create and see what the next worker does.
    Every ``create`` call is appended to ``root/creates`` (a duplicate
    create shows there).  ``lab`` is ``(host, port, host_key)`` of a real
    SSH server.
    """

    type_name = "slowfile"

    def _path(self, name: str) -> str:
        return os.path.join(self.config["root"], name + ".json")

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            with open(self._path(name)) as handle:
                return json.load(handle)
        except FileNotFoundError:
            return None

    def create(self, name, template, environment=None, parameters=None) -> ProviderStack:
        os.makedirs(self.config["root"], exist_ok=True)
        with open(os.path.join(self.config["root"], "creates"), "a") as handle:
            handle.write(name + "\n")
        with open(self._path(name), "w") as handle:
            json.dump({"created": time.time()}, handle)
        return self.get(name)

    def get(self, name: str) -> ProviderStack:
        state = self._read(name)
        if state is None:
            return ProviderStack(name, states.DELETE_COMPLETE)
        elapsed = time.time() - state["created"]
        seconds = float(self.config["seconds"])
        if elapsed < seconds:
            return ProviderStack(name, states.CREATE_IN_PROGRESS, progress=elapsed / seconds)
        host, port, key = self.config["lab"]
        outputs = StackOutputs(public_ip=host, private_key="-----FAKE PRIVATE KEY-----", ssh_port=port)
        return ProviderStack(name, states.CREATE_COMPLETE, outputs=outputs, extra={"host_key": key})

    def suspend(self, name: str) -> ProviderStack:
        return self.get(name)

    def resume(self, name: str) -> ProviderStack:
        return self.get(name)

    def delete(self, name: str) -> ProviderStack:
        if os.path.exists(self._path(name)):
            os.unlink(self._path(name))
        return ProviderStack(name, states.DELETE_COMPLETE)

    def list(self) -> list[str]:
        root = self.config["root"]
        return sorted(f[:-5] for f in os.listdir(root) if f.endswith(".json")) if os.path.isdir(root) else []


def creates(root: str) -> list[str]:
    """The stack names :class:`SlowFileProvider` was asked to create under ``root``, in order."""
    try:
        with open(os.path.join(root, "creates")) as handle:
            return handle.read().split()
    except FileNotFoundError:
        return []

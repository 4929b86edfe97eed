"""Small fake providers for lifecycle edge cases that real parts cannot show on demand.

They keep their stacks in a class-level dict, so the instance the lifecycle
gets from the registry and the test see the same state.  ``outputs`` point at
a real SSH server the test starts (see ``conftest.ssh_lab``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from hastexo_xblock import states
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
    ``transient`` (how many calls raise :class:`TransientProviderError` first).
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
        self.stacks[self.name][name] = {
            "status": f"{action}_IN_PROGRESS" if polls else final,
            "final": final,
            "left": polls,
            "reason": reason,
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
        if stack["status"].endswith("_IN_PROGRESS") and stack["left"] != -1:
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
            progress=0.5 if status.endswith("_IN_PROGRESS") else None,
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

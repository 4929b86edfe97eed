"""The outputs contract: what a running lab's template must output, read from Heat's stack."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..base import StackOutputs
from .config import DEFAULT_SSH_PORT
from .config import shorten as _shorten


def parse_outputs(values: Mapping[str, Any], errors: Mapping[str, str]) -> tuple[StackOutputs | None, str]:
    """``(outputs, "")`` or ``(None, why the template's outputs are unusable)``."""
    for key in ("public_ip", "private_key"):
        if key in errors:
            return None, f"the template's {key} output could not be resolved: {_shorten(errors[key], 200)}"
    public_ip = values.get("public_ip")
    if not isinstance(public_ip, str) or not public_ip.strip():
        return None, "the template has no public_ip output"
    # private_key may be missing or empty when the worker made the key pair
    # (stack_key_type); the lifecycle checks that some key exists.
    private_key = values.get("private_key") or ""
    if not isinstance(private_key, str):
        return None, "the template's private_key output is not text"
    port: Any = values.get("ssh_port", DEFAULT_SSH_PORT)
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        return None, "the template's ssh_port output is not a port number"
    password = values.get("password")
    return (
        StackOutputs(
            public_ip=public_ip.strip(),
            private_key=private_key,
            password=str(password) if password not in (None, "") else None,
            ssh_port=port,
        ),
        "",
    )

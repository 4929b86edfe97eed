"""The sandbox settings of a local provider: the operator's keys, their defaults and their checks.

See ``sandbox.py`` for what they mean for a lab, and the README for the table.

This module does not import Django or XBlock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import homefs

SANDBOX_MODES = ("auto", "bwrap", "none")
NETWORK_MODES = ("none", "egress")

#: Default limits per lab (bytes, processes, CPUs); ``None`` in the settings lifts one.
DEFAULT_LIMITS = {
    "memory_limit": 1024**3,
    "pids_limit": 512,
    "cpu_limit": 1.0,
    "disk_limit": 2 * 1024**3,
    "tmp_limit": 256 * 1024**2,
}
#: Root workers give labs uids from here on (one each); the base itself is used by the probe.
DEFAULT_UID_BASE = 1_800_000_000
UID_RANGE = 100_000_000

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(value: Any) -> int | None:
    """Bytes from ``512M``/``2G``/``1.5GiB``/an integer; ``None`` stays ``None``; raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a positive size")
        return value
    if not isinstance(value, str):
        raise ValueError("a size such as 512M or 2G")
    match = _SIZE_RE.match(value)
    if not match:
        raise ValueError(f"a size such as 512M or 2G, not {value!r}")
    number, unit = float(match.group(1)), (match.group(2) or "")[:1].lower()
    size = int(number * _UNITS[unit])
    if size <= 0:
        raise ValueError("a positive size")
    return size


@dataclass(frozen=True)
class SandboxSettings:
    """The operator's sandbox settings of one local provider, validated (see :meth:`from_config`)."""

    mode: str = "auto"
    network: str = "none"
    memory_limit: int | None = DEFAULT_LIMITS["memory_limit"]
    pids_limit: int | None = DEFAULT_LIMITS["pids_limit"]
    cpu_limit: float | None = DEFAULT_LIMITS["cpu_limit"]
    disk_limit: int | None = DEFAULT_LIMITS["disk_limit"]
    tmp_limit: int = DEFAULT_LIMITS["tmp_limit"]
    readonly_paths: tuple[str, ...] = ()
    hidden_paths: tuple[str, ...] = ()
    uid_base: int = DEFAULT_UID_BASE
    cgroup_root: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SandboxSettings:
        """Validate the sandbox keys of a provider's settings; ``ValueError`` names the key."""
        mode = config.get("sandbox", "auto")
        if mode not in SANDBOX_MODES:
            raise ValueError(f"'sandbox' must be one of {', '.join(SANDBOX_MODES)}, not {mode!r}")
        network = config.get("network", "none")
        if network not in NETWORK_MODES:
            raise ValueError(f"'network' must be one of {', '.join(NETWORK_MODES)}, not {network!r}")
        values: dict[str, Any] = {"mode": mode, "network": network}
        for key in ("memory_limit", "disk_limit", "tmp_limit"):
            raw = config.get(key, DEFAULT_LIMITS[key])
            try:
                values[key] = parse_size(raw)
            except ValueError as error:
                raise ValueError(f"{key!r} must be {error}") from None
        if values["tmp_limit"] is None:
            raise ValueError("'tmp_limit' must be a size (the lab's /tmp is memory)")
        if values["disk_limit"] is not None and values["disk_limit"] < homefs.MIN_SIZE:
            raise ValueError(f"'disk_limit' must be at least {homefs.MIN_SIZE // 1024**2}M")
        if values["memory_limit"] is not None and values["memory_limit"] < 64 * 1024**2:
            raise ValueError("'memory_limit' must be at least 64M (the lab host counts too)")
        pids = config.get("pids_limit", DEFAULT_LIMITS["pids_limit"])
        if pids is not None and (isinstance(pids, bool) or not isinstance(pids, int) or pids < 16):
            raise ValueError("'pids_limit' must be a whole number of at least 16, or null")
        values["pids_limit"] = pids
        cpu = config.get("cpu_limit", DEFAULT_LIMITS["cpu_limit"])
        if cpu is not None and (isinstance(cpu, bool) or not isinstance(cpu, (int, float)) or cpu <= 0):
            raise ValueError("'cpu_limit' must be a positive number of CPUs, or null")
        values["cpu_limit"] = None if cpu is None else float(cpu)
        for key in ("readonly_paths", "hidden_paths"):
            paths = config.get(key) or []
            if not isinstance(paths, (list, tuple)):
                raise ValueError(f"{key!r} must be a list of absolute paths")
            for index, path in enumerate(paths):
                if not isinstance(path, str) or not path.startswith("/") or "\0" in path:
                    raise ValueError(f"{key!r}[{index}] must be an absolute path, not {path!r}")
            values[key] = tuple(os.path.normpath(p) for p in paths)
        for path in values["readonly_paths"]:
            if path == "/" or path.split("/")[1] in ("proc", "dev", "sys", "home", "tmp", "run"):
                raise ValueError(f"'readonly_paths' cannot show {path!r} in a lab")
        uid_base = config.get("uid_base", DEFAULT_UID_BASE)
        if isinstance(uid_base, bool) or not isinstance(uid_base, int) or not 65536 <= uid_base <= 2**31 - UID_RANGE:
            raise ValueError(f"'uid_base' must be a whole number from 65536 to {2**31 - UID_RANGE}")
        values["uid_base"] = uid_base
        root = config.get("cgroup_root")
        if root is not None and (not isinstance(root, str) or not root.startswith("/sys/fs/cgroup")):
            raise ValueError("'cgroup_root' must be a directory under /sys/fs/cgroup")
        values["cgroup_root"] = root
        return cls(**values)

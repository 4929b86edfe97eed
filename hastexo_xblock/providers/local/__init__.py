"""The local provider: sandboxed labs on the worker's own machine.

One concern per module:

``provider``   the :class:`LocalProvider` (the provider contract: create, get, suspend, resume, delete, list)
``template``   local lab templates (YAML): parsing, validation, placing the files
``statedir``   a lab's directory on disk: state, keys, locks
``config``     the operator's sandbox settings and their defaults
``sandbox``    the isolation: namespaces, file system, network, limits -- review this one
``probe``      what this machine lets the provider enforce
``launcher``   the lab host processes, from the worker's side: start, watch, kill
``labhost``    the lab host: one lab's SSH server, which starts its sandbox and its sessions
``channels``   an SSH session pumped to and from its command
``enter``      the helper that runs a command inside a running lab (standard library only)
``cgroups``    control groups: limits, freeze, kill
``homefs``     the size-limited home directory (a loop-mounted file system image)
``processes``  process trees, for labs without a cgroup

This package does not import Django or XBlock.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # The provider class is loaded on first use: the lab host and the enter
    # helper import modules of this package without wanting the provider's
    # dependencies.
    if name in ("LocalProvider", "parse_template"):
        from . import provider, template

        return {"LocalProvider": provider.LocalProvider, "parse_template": template.parse_template}[name]
    raise AttributeError(name)

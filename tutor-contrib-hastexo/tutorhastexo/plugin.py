"""Tutor plugin for hastexo_xblock.

Why a distribution of its own: operators install Tutor plugins where Tutor
runs (a laptop, a CI runner), next to nothing but Tutor.  The XBlock itself
(Django, XBlock, asyncssh, heatclient, …) belongs in the ``openedx`` image,
which this plugin builds it into; pulling it into the Tutor environment would
only add conflicts.

What it adds (``patches/``): the package in the image; ``XBLOCK_SETTINGS["hastexo"]``
for the LMS and Studio from ``HASTEXO_*`` values; the gateway as its own
service behind ``/hastexo-gateway/`` on the LMS host; a lab worker on its own
queue; the suspender and the reaper.  With the ``local`` provider the labs
are processes of the lab worker, so the gateway, the suspender and the
reaper share the worker's network and process namespaces (one pod on
Kubernetes); with cloud providers they are separate and the gateway scales.
"""

from __future__ import annotations

import os

from tutor import hooks

from . import __version__

HERE = os.path.dirname(os.path.abspath(__file__))

hooks.Filters.CONFIG_DEFAULTS.add_items(
    [
        ("HASTEXO_VERSION", __version__),
        # What the openedx image installs: a PyPI requirement, a Git URL or a path in the build context.
        ("HASTEXO_PIP_REQUIREMENT", "hastexo-xblock-ng=={{ HASTEXO_VERSION }}"),
        ("HASTEXO_TASK_QUEUE", "hastexo.labs"),
        ("HASTEXO_WORKER_CONCURRENCY", 4),
        ("HASTEXO_GATEWAY_PORT", 8095),
        ("HASTEXO_GATEWAY_REPLICAS", 1),
        # Gateway processes per replica: one per core it may use (see "Gateway capacity" in the README).
        ("HASTEXO_GATEWAY_WORKERS", 1),
        ("HASTEXO_LABS_ROOT", "/openedx/data/hastexo/labs"),
        ("HASTEXO_LABS_STORAGE_SIZE", "10Gi"),
        # name -> provider settings, as in XBLOCK_SETTINGS["hastexo"]["providers"].
        ("HASTEXO_PROVIDERS", {"default": {"type": "local", "root": "{{ HASTEXO_LABS_ROOT }}", "sandbox": "auto"}}),
        # Fernet keys for lab secrets at rest, newest first; empty: one derived from HASTEXO_ENCRYPTION_SECRET.
        ("HASTEXO_ENCRYPTION_KEYS", []),
        # Any other XBLOCK_SETTINGS["hastexo"] key (timeouts, layout, usage limits, ...).
        ("HASTEXO_SETTINGS", {}),
    ]
)
hooks.Filters.CONFIG_UNIQUE.add_items(
    [
        ("HASTEXO_GATEWAY_SECRET", "{{ 48|random_string }}"),
        ("HASTEXO_ENCRYPTION_SECRET", "{{ 48|random_string }}"),
    ]
)

for name in sorted(os.listdir(os.path.join(HERE, "patches"))):
    with open(os.path.join(HERE, "patches", name), encoding="utf-8") as handle:
        hooks.Filters.ENV_PATCHES.add_item((name, handle.read()))

"""Credentials for the tests that run against a real OpenStack Heat.

The test Heat is the one ``../shared/openstack/start-heat.sh`` runs on
loopback (see that directory's README).  Its ``--env [PROJECT]`` mode prints
``export OS_...=...`` lines; we run it and parse them.  Without the script
(or when it fails), ``OS_*`` variables already in the environment are used.

``HASTEXO_HEAT_SCRIPT`` names another script.  When Heat cannot be reached
the tests are skipped, unless ``HASTEXO_REQUIRE_HEAT`` or ``CI`` is set:
then they fail, saying why.

Use :func:`provider_config` in a fixture::

    @pytest.fixture(scope="module")
    def demo_config():
        return heat_env.provider_config("demo")
"""

from __future__ import annotations

import functools
import os
import shlex
import subprocess
import urllib.error
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: ``OS_*`` variable → provider config key.
KEYS = {
    "OS_AUTH_URL": "os_auth_url",
    "OS_USERNAME": "os_username",
    "OS_USER_ID": "os_user_id",
    "OS_PASSWORD": "os_password",
    "OS_USER_DOMAIN_NAME": "os_user_domain_name",
    "OS_USER_DOMAIN_ID": "os_user_domain_id",
    "OS_PROJECT_NAME": "os_project_name",
    "OS_PROJECT_ID": "os_project_id",
    "OS_PROJECT_DOMAIN_NAME": "os_project_domain_name",
    "OS_PROJECT_DOMAIN_ID": "os_project_domain_id",
    "OS_REGION_NAME": "os_region_name",
    "OS_INTERFACE": "os_interface",
    "OS_CACERT": "os_cacert",
}


def script_path() -> str:
    """The start-heat.sh to ask (``$HASTEXO_HEAT_SCRIPT`` or the shared one next to the repo)."""
    return os.environ.get("HASTEXO_HEAT_SCRIPT") or os.path.join(REPO, "..", "shared", "openstack", "start-heat.sh")


def required() -> bool:
    """Whether a missing Heat fails the tests instead of skipping them."""
    return bool(os.environ.get("HASTEXO_REQUIRE_HEAT") or os.environ.get("CI"))


def parse_exports(text: str) -> dict[str, str]:
    """The ``OS_*`` variables of ``export OS_X=value`` lines (shell quoting understood)."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export OS_"):
            continue
        name, sep, value = line[len("export ") :].partition("=")
        if not sep:
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        found[name] = words[0] if words else ""
    return found


@functools.cache
def _from_script(project: str) -> tuple[dict[str, str], str]:
    """``(variables, "")`` from the script, or ``({}, why not)``."""
    path = script_path()
    if not os.path.isfile(path):
        return {}, f"{path} does not exist"
    args = ["bash", path, "--env"] + ([project] if project != "demo" else [])
    try:
        result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {}, f"{' '.join(args)} failed: {exc}"
    if result.returncode != 0:
        return {}, f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()[-300:]}"
    variables = parse_exports(result.stdout)
    if not variables.get("OS_AUTH_URL"):
        return {}, f"{' '.join(args)} printed no OS_AUTH_URL"
    return variables, ""


def credentials(project: str = "demo") -> tuple[dict[str, str], str]:
    """``OS_*`` variables for ``project`` ("demo" or "demo2"), or ``({}, why there are none)``.

    From the script first; else from the environment (with the project name
    replaced for a project other than the environment's).
    """
    variables, why = _from_script(project)
    if variables:
        return variables, ""
    env = {k: v for k, v in os.environ.items() if k.startswith("OS_")}
    if env.get("OS_AUTH_URL") and env.get("OS_PASSWORD"):
        if env.get("OS_PROJECT_NAME") != project:
            env.pop("OS_PROJECT_ID", None)
            env["OS_PROJECT_NAME"] = project
        return env, ""
    return {}, f"no OpenStack credentials ({why}; no OS_AUTH_URL/OS_PASSWORD in the environment)"


def config_from(variables: dict[str, str]) -> dict[str, object]:
    """A HeatProvider config (``type`` and ``os_*`` keys) from ``OS_*`` variables."""
    config: dict[str, object] = {"type": "openstack"}
    for var, key in KEYS.items():
        if variables.get(var):
            config[key] = variables[var]
    return config


@functools.cache
def _reachable(project: str) -> str:
    """``""`` when Keystone authenticates ``project`` and Heat answers, else why not."""
    variables, why = credentials(project)
    if not variables:
        return why
    # keystoneauth1 directly (not the provider under test), so that a bug
    # in the provider fails the tests instead of skipping them.
    from keystoneauth1 import exceptions as ks_exc
    from keystoneauth1 import session as ks_session
    from keystoneauth1.identity import v3

    config = config_from(variables)
    try:
        auth = v3.Password(
            auth_url=str(config["os_auth_url"]),
            username=variables.get("OS_USERNAME"),
            user_id=variables.get("OS_USER_ID"),
            password=variables.get("OS_PASSWORD"),
            user_domain_name=variables.get("OS_USER_DOMAIN_NAME"),
            user_domain_id=variables.get("OS_USER_DOMAIN_ID"),
            project_name=variables.get("OS_PROJECT_NAME"),
            project_id=variables.get("OS_PROJECT_ID"),
            project_domain_name=variables.get("OS_PROJECT_DOMAIN_NAME"),
            project_domain_id=variables.get("OS_PROJECT_DOMAIN_ID"),
        )
        session = ks_session.Session(auth=auth, timeout=10)
        endpoint = session.get_endpoint(
            service_type="orchestration", interface="public", region_name=variables.get("OS_REGION_NAME")
        )
    except ks_exc.ClientException as exc:
        return f"Keystone at {config['os_auth_url']} did not authenticate project {project!r}: {exc}"
    try:
        with urllib.request.urlopen(endpoint.rsplit("/v1", 1)[0] + "/", timeout=10):
            pass
    except urllib.error.HTTPError:
        pass  # it answered
    except OSError as exc:
        return f"Heat at {endpoint} does not answer: {exc}"
    return ""


def require(project: str = "demo") -> None:
    """Skip the calling test (or fail it, see :func:`required`) unless Heat works for ``project``."""
    why = _reachable(project)
    if not why:
        return
    message = f"OpenStack Heat is not available: {why}"
    if required():
        pytest.fail(
            message + " (HASTEXO_REQUIRE_HEAT or CI is set; start it with: sudo ../shared/openstack/start-heat.sh)",
            pytrace=False,
        )
    pytest.skip(message)


def provider_config(project: str = "demo", **overrides: object) -> dict[str, object]:
    """A HeatProvider config for ``project`` ("demo" or "demo2"); skips/fails the test without Heat.

    ``overrides`` are merged in (e.g. ``os_timeout=2``, ``heat_endpoint=...``).
    """
    require(project)
    config = config_from(credentials(project)[0])
    config.update(overrides)
    return config

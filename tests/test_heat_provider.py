"""The OpenStack Heat provider against a real Keystone + Heat, plus injected faults.

The Heat is the loopback one from ``../shared/openstack`` (see
``tests/heat_env.py``: skipped without it, failed with ``HASTEXO_REQUIRE_HEAT``
or ``CI``).  It has no Nova or Neutron, so the templates use only
``OS::Heat::*`` resources that need no other service.

Heat creates take seconds, so the stacks the module needs are started at
once in background threads (the ``background`` fixture) while the main
stack is created and watched in the foreground.  Every stack has a unique
``hx-test-`` name and is deleted at the end of the module (waiting until
Heat no longer knows it).  The fault tests put a small TCP proxy of our own
between the provider and Heat (``heat_endpoint``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlparse

import pytest
from heatclient import exc as heat_exc
from keystoneauth1 import exceptions as ks_exc

from hastexo_xblock import states
from hastexo_xblock.providers import provider_class
from hastexo_xblock.providers.base import (
    ProviderAuthError,
    ProviderConfigError,
    ProviderError,
    ProviderStack,
    TemplateError,
    TransientProviderError,
)
from hastexo_xblock.providers.heat import HeatProvider, parse_document

from . import heat_env

PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHhhc3RleG8tdGVzdC1rZXktbm90LXJlYWwtYXQtYWxsAA hx-test"

# The main lab: outputs from parameters and a RandomString; the TestResource
# waits 2 s after the others so a partial progress is observable.
MAIN_TEMPLATE = """\
heat_template_version: 2018-08-31
description: hastexo provider test lab
parameters:
  run: {type: string}
  public_ip: {type: string}
  ssh_port: {type: number, default: 22}
  private_key: {type: string, hidden: true}
resources:
  password:
    type: OS::Heat::RandomString
    properties: {length: 20}
  ip:
    type: OS::Heat::Value
    properties: {type: string, value: {get_param: public_ip}}
  port:
    type: OS::Heat::Value
    properties: {type: number, value: {get_param: ssh_port}}
  server:
    type: OS::Heat::TestResource
    depends_on: [password, ip, port]
    properties:
      value: {get_param: run}
      action_wait_secs: {create: 2}
outputs:
  public_ip: {value: {get_attr: [ip, value]}}
  ssh_port: {value: {get_attr: [port, value]}}
  password: {value: {get_attr: [password, value]}}
  private_key: {value: {get_param: private_key}}
  reboot_on_resume: {value: true}
"""

# JSON on purpose (Heat accepts both); no public_key parameter.
NO_PUBLIC_KEY_TEMPLATE = json.dumps(
    {
        "heat_template_version": "2018-08-31",
        "parameters": {"run": {"type": "string"}},
        "resources": {"marker": {"type": "OS::Heat::None"}},
        "outputs": {
            "public_ip": {"value": "192.0.2.20"},
            "private_key": {"value": PRIVATE_KEY},
        },
    }
)

# Declares public_key and echoes it; ssh_port comes out as a string.
PUBLIC_KEY_TEMPLATE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  public_key: {type: string}
resources:
  marker: {type: OS::Heat::None}
outputs:
  public_ip: {value: 192.0.2.21}
  ssh_port: {value: "2200"}
  seen_public_key: {value: {get_param: public_key}}
  private_key: {value: %PRIVATE_KEY%}
""".replace("%PRIVATE_KEY%", json.dumps(PRIVATE_KEY))  # a JSON string is a YAML double-quoted scalar

KEY_NAME_TEMPLATE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
  key_name: {type: string}
resources:
  marker: {type: OS::Heat::None}
outputs:
  public_ip: {value: 192.0.2.22}
  private_key: {value: unused}
"""

FAILING_TEMPLATE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  ok: {type: OS::Heat::RandomString}
  boom:
    type: OS::Heat::TestResource
    depends_on: [ok]
    properties: {fail: true, value: x}
"""

NO_OUTPUTS_TEMPLATE = """\
heat_template_version: 2018-08-31
parameters:
  run: {type: string}
resources:
  marker: {type: OS::Heat::None}
outputs:
  private_key: {value: something}
"""

WAIT_TIMEOUT = 60.0


def unique(label: str) -> str:
    return f"hx-test-{label}-{uuid.uuid4().hex[:8]}"


def wait_final(
    provider: HeatProvider,
    name: str,
    timeout: float = WAIT_TIMEOUT,
    on_poll: Callable[[ProviderStack], None] | None = None,
) -> ProviderStack:
    """Poll ``get`` until the stack is not ``*_IN_PROGRESS``; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        current = provider.get(name)
        if on_poll is not None:
            on_poll(current)
        if not current.status.endswith("_IN_PROGRESS"):
            return current
        assert time.monotonic() < deadline, f"{name} still {current.status} after {timeout} s"
        time.sleep(0.2)


def create_and_wait(provider: HeatProvider, name: str, template: str, **parameters: Any) -> ProviderStack:
    provider.create(name, template, parameters={"run": name, **parameters})
    return wait_final(provider, name)


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> HeatProvider:
    return HeatProvider("heat-demo", heat_env.provider_config("demo"))


@pytest.fixture(scope="module")
def demo2() -> HeatProvider:
    return HeatProvider("heat-demo2", heat_env.provider_config("demo2"))


@pytest.fixture(scope="module")
def cleanup(demo: HeatProvider) -> Iterator[list[tuple[HeatProvider, str]]]:
    """Stacks to delete at the end: deleted in parallel, then waited for until Heat no longer knows them."""
    made: list[tuple[HeatProvider, str]] = []
    yield made

    def remove(provider: HeatProvider, name: str) -> str | None:
        try:
            provider.delete(name)
            final = wait_final(provider, name)
        except ProviderError as error:
            return f"{name}: {error}"
        return None if final.status == states.DELETE_COMPLETE else f"{name}: {final.status}"

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        problems = [p for p in pool.map(lambda item: remove(*item), made) if p]
    assert not problems, f"stacks left behind: {problems}"


@pytest.fixture(scope="module")
def background(demo: HeatProvider, cleanup: list) -> Iterator[dict[str, SimpleNamespace]]:
    """Stacks created in parallel with the rest of the module: label → (``name``, ``future`` of the final state)."""
    stacks = {
        "failing": (unique("fail"), FAILING_TEMPLATE, {}),
        "no_public_key": (unique("nopk"), NO_PUBLIC_KEY_TEMPLATE, {"public_key": PUBLIC_KEY}),
        "public_key": (unique("pk"), PUBLIC_KEY_TEMPLATE, {"public_key": PUBLIC_KEY}),
        "no_outputs": (unique("noout"), NO_OUTPUTS_TEMPLATE, {}),
    }
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(stacks))
    started = {}
    for label, (name, template, params) in stacks.items():
        cleanup.append((demo, name))
        started[label] = SimpleNamespace(name=name, future=pool.submit(create_and_wait, demo, name, template, **params))
    yield started
    pool.shutdown(wait=True)


@pytest.fixture(scope="module")
def main_stack(demo: HeatProvider, cleanup: list, background: dict) -> SimpleNamespace:
    """The main lab, created and watched (every poll recorded) until it is final."""
    name = unique("main")
    cleanup.append((demo, name))
    started = time.monotonic()
    first = demo.create(
        name,
        MAIN_TEMPLATE,
        parameters={"run": name, "public_ip": "192.0.2.10", "ssh_port": 2222, "private_key": PRIVATE_KEY},
    )
    polls: list[ProviderStack] = []
    final = wait_final(demo, name, on_poll=polls.append)
    return SimpleNamespace(name=name, first=first, polls=polls, final=final, seconds=time.monotonic() - started)


# --------------------------------------------------------------------------
# Against the real Heat
# --------------------------------------------------------------------------


def test_create_reports_progress_and_outputs(demo: HeatProvider, main_stack: SimpleNamespace) -> None:
    assert main_stack.first.status == states.CREATE_IN_PROGRESS
    assert main_stack.first.extra["stack_id"]
    final = main_stack.final
    assert final.status == states.CREATE_COMPLETE, final.status_reason
    assert final.outputs is not None
    assert final.outputs.public_ip == "192.0.2.10"
    assert final.outputs.ssh_port == 2222 and isinstance(final.outputs.ssh_port, int)
    assert final.outputs.private_key == PRIVATE_KEY
    assert final.outputs.password and len(final.outputs.password) == 20
    assert final.extra["reboot_on_resume"] is True
    assert final.extra["stack_id"] == main_stack.first.extra["stack_id"]
    in_progress = [p for p in main_stack.polls if p.status == states.CREATE_IN_PROGRESS]
    assert in_progress, "never saw CREATE_IN_PROGRESS"
    fractions = [p.progress for p in in_progress if p.progress is not None]
    assert all(0.0 <= f <= 1.0 for f in fractions), fractions
    assert any(0.0 < f < 1.0 for f in fractions), f"no partial progress seen: {fractions}"
    assert all(p.outputs is None for p in in_progress)
    # Secrets stay out of reprs (and so out of logs).
    assert PRIVATE_KEY not in repr(final) and final.outputs.password not in repr(final)


def test_create_of_an_existing_stack_returns_it(demo: HeatProvider, main_stack: SimpleNamespace) -> None:
    again = demo.create(main_stack.name, MAIN_TEMPLATE, parameters={"run": "x", "public_ip": "192.0.2.99"})
    assert again.status == states.CREATE_COMPLETE
    assert again.outputs is not None and again.outputs.public_ip == "192.0.2.10"


def test_projects_are_separate(demo: HeatProvider, demo2: HeatProvider, main_stack: SimpleNamespace) -> None:
    assert main_stack.name in demo.list()
    assert main_stack.name not in demo2.list()
    assert demo2.get(main_stack.name).status == states.DELETE_COMPLETE


def test_suspend_resume_delete(demo: HeatProvider, main_stack: SimpleNamespace) -> None:
    name = main_stack.name
    started = time.monotonic()
    suspending = demo.suspend(name)
    assert suspending.status.startswith("SUSPEND_")
    suspended = wait_final(demo, name)
    assert suspended.status == states.SUSPEND_COMPLETE, suspended.status_reason
    assert demo.suspend(name).status == states.SUSPEND_COMPLETE  # again: a no-op

    resuming = demo.resume(name)
    assert resuming.status.startswith("RESUME_")
    resumed = wait_final(demo, name)
    assert resumed.status == states.RESUME_COMPLETE, resumed.status_reason
    assert resumed.outputs is not None and resumed.outputs.public_ip == "192.0.2.10"
    assert resumed.outputs.password == main_stack.final.outputs.password
    assert time.monotonic() - started < 15

    deleting = demo.delete(name)
    assert deleting.status in (states.DELETE_IN_PROGRESS, states.DELETE_COMPLETE)
    assert demo.delete(name).status in (states.DELETE_IN_PROGRESS, states.DELETE_COMPLETE)  # again: harmless
    assert wait_final(demo, name).status == states.DELETE_COMPLETE
    deadline = time.monotonic() + 15
    while name in demo.list():
        assert time.monotonic() < deadline, "deleted stack still listed"
        time.sleep(0.3)
    # Operations on a stack that is gone say so instead of failing.
    assert demo.delete(name).status == states.DELETE_COMPLETE
    assert demo.suspend(name).status == states.DELETE_COMPLETE


def test_failing_resource_gives_create_failed_with_heats_reason(background: dict) -> None:
    final = background["failing"].future.result(timeout=WAIT_TIMEOUT)
    assert final.status == states.CREATE_FAILED
    assert "Resource CREATE failed" in final.status_reason
    assert final.outputs is None


def test_missing_parameter_is_a_template_error(demo: HeatProvider, cleanup: list) -> None:
    name = unique("noparam")
    cleanup.append((demo, name))
    with pytest.raises(TemplateError) as info:
        demo.create(name, MAIN_TEMPLATE, parameters={"public_ip": "192.0.2.1", "private_key": PRIVATE_KEY})
    assert "run" in str(info.value) and "heat-demo" in str(info.value)
    assert PRIVATE_KEY.strip() not in str(info.value)
    assert demo.get(name).status == states.DELETE_COMPLETE


def test_bad_template_text_is_a_template_error(demo: HeatProvider) -> None:
    with pytest.raises(TemplateError, match="not valid YAML"):
        demo.create(unique("badyaml"), "heat_template_version: [unclosed\n")
    with pytest.raises(TemplateError, match="mapping"):
        demo.create(unique("badyaml"), "- just\n- a list\n")
    # Heat's own validation (an unknown resource type) comes back as a TemplateError too.
    with pytest.raises(TemplateError, match="OS::Nope"):
        demo.create(
            unique("badtype"),
            "heat_template_version: 2018-08-31\nresources:\n  x: {type: OS::Nope::Nothing}\n",
        )


def test_template_without_public_ip_output_fails_clearly(background: dict) -> None:
    final = background["no_outputs"].future.result(timeout=WAIT_TIMEOUT)
    assert final.status == states.CREATE_FAILED
    assert final.status_reason == "the template has no public_ip output"


def test_public_key_passed_only_when_declared(demo: HeatProvider, background: dict) -> None:
    undeclared = background["no_public_key"].future.result(timeout=WAIT_TIMEOUT)
    assert undeclared.status == states.CREATE_COMPLETE, undeclared.status_reason
    assert undeclared.outputs.ssh_port == 22

    declared = background["public_key"].future.result(timeout=WAIT_TIMEOUT)
    assert declared.status == states.CREATE_COMPLETE, declared.status_reason
    assert declared.outputs.ssh_port == 2200  # a string output, converted
    name = background["public_key"].name
    raw = demo._client().stacks.get(name)
    seen = {o["output_key"]: o["output_value"] for o in raw.outputs}["seen_public_key"]
    assert seen == PUBLIC_KEY


def test_no_keypair_attempt_without_key_name(demo: HeatProvider, cleanup: list, monkeypatch) -> None:
    # The template has no key_name: the compute API must not even be looked up.
    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("keypair path taken for a template without key_name")

    monkeypatch.setattr(demo, "_has_compute", forbidden)
    monkeypatch.setattr(demo, "_create_keypair", forbidden)
    name = unique("nokey")
    cleanup.append((demo, name))
    started = demo.create(name, NO_PUBLIC_KEY_TEMPLATE, parameters={"run": "x", "public_key": PUBLIC_KEY})
    assert started.status == states.CREATE_IN_PROGRESS


def test_key_name_without_compute_is_a_template_error(demo: HeatProvider, cleanup: list) -> None:
    name = unique("keyname")
    cleanup.append((demo, name))
    with pytest.raises(TemplateError, match="declares key_name but this cloud has no compute service"):
        demo.create(name, KEY_NAME_TEMPLATE, parameters={"run": "x", "public_key": PUBLIC_KEY})
    assert demo.get(name).status == states.DELETE_COMPLETE


def test_wrong_password_is_an_auth_error_quickly() -> None:
    config = heat_env.provider_config("demo", os_password="wrong-password-for-the-test")
    provider = HeatProvider("heat-wrongpw", config)
    started = time.monotonic()
    with pytest.raises(ProviderAuthError) as info:
        provider.list()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "heat-wrongpw" in message and "authentication failed" in message
    assert "wrong-password-for-the-test" not in message
    with pytest.raises(ProviderAuthError):
        provider.get(unique("any"))


# --------------------------------------------------------------------------
# Faults between the provider and Heat (a proxy of our own)
# --------------------------------------------------------------------------


class FaultProxy:
    """A TCP proxy on 127.0.0.1:0 in front of Heat that can misbehave.

    ``mode="fail"``: the first ``failures`` connections get one
    ``503 Service Unavailable`` and are closed; later ones are piped to the
    upstream as they are (the Host header is kept, so Heat's redirects come
    back through the proxy).  ``mode="hang"``: every connection is accepted
    and read, and never answered.
    """

    def __init__(self, upstream: tuple[str, int], mode: str, failures: int = 0) -> None:
        self.upstream = upstream
        self.mode = mode
        self.failures = failures
        self.served_503 = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "hang":
                while not self._closed.is_set() and conn.recv(65536):
                    pass
                return
            with self._lock:
                fail = self.failures > 0
                if fail:
                    self.failures -= 1
            if fail:
                self._read_request(conn)
                body = json.dumps({"error": {"message": "proxy: Heat is busy", "type": "Test"}}).encode()
                with self._lock:
                    self.served_503 += 1
                conn.sendall(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
                )
                conn.close()
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets.append(upstream)
            threading.Thread(target=self._pipe, args=(upstream, conn), daemon=True).start()
            self._pipe(conn, upstream)
        except OSError:
            pass

    @staticmethod
    def _read_request(conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            body += chunk

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        with self._lock:
            for s in self._sockets:
                s.close()


@pytest.fixture(scope="module")
def heat_url(demo: HeatProvider) -> str:
    """Heat's endpoint for project demo, from the catalog (``http://host:port/v1/<project id>``)."""
    return demo.session().get_endpoint(service_type="orchestration", interface="public")


def via(url: str, port: int) -> str:
    parsed = urlparse(url)
    return parsed._replace(netloc=f"127.0.0.1:{port}").geturl()


@pytest.fixture
def proxy_factory(heat_url: str) -> Iterator[Callable[..., FaultProxy]]:
    made: list[FaultProxy] = []
    parsed = urlparse(heat_url)

    def make(mode: str, failures: int = 0) -> FaultProxy:
        proxy = FaultProxy((parsed.hostname, parsed.port or 80), mode, failures)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


def test_503_is_transient_and_the_retry_succeeds(proxy_factory, heat_url: str) -> None:
    proxy = proxy_factory("fail", failures=1)
    config = heat_env.provider_config("demo", heat_endpoint=via(heat_url, proxy.port))
    provider = HeatProvider("heat-proxied", config)
    with pytest.raises(TransientProviderError) as info:
        provider.list()
    assert "heat-proxied" in str(info.value) and "503" in str(info.value)
    assert proxy.served_503 == 1
    assert isinstance(provider.list(), list)  # the retry goes through
    # A GET by name is redirected by Heat; the redirect comes back through the proxy too.
    assert provider.get(unique("absent")).status == states.DELETE_COMPLETE


def test_connection_refused_is_transient(heat_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    provider = HeatProvider("heat-refused", heat_env.provider_config("demo", heat_endpoint=via(heat_url, port)))
    started = time.monotonic()
    with pytest.raises(TransientProviderError) as info:
        provider.get(unique("any"))
    assert "heat-refused" in str(info.value)
    assert time.monotonic() - started < 5


def test_hanging_heat_times_out_as_transient(proxy_factory, heat_url: str) -> None:
    proxy = proxy_factory("hang")
    config = heat_env.provider_config("demo", heat_endpoint=via(heat_url, proxy.port), os_timeout=2)
    provider = HeatProvider("heat-hang", config)
    provider.session().get_token()  # authenticate first (Keystone is not behind the proxy)
    started = time.monotonic()
    with pytest.raises(TransientProviderError) as info:
        provider.list()
    elapsed = time.monotonic() - started
    assert "heat-hang" in str(info.value)
    assert 1.5 < elapsed < 3.5, elapsed


# --------------------------------------------------------------------------
# Without Heat: configuration, error mapping, output rules
# --------------------------------------------------------------------------

BASE_CONFIG = {
    "type": "openstack",
    "os_auth_url": "http://127.0.0.1:9/v3",
    "os_username": "u",
    "os_password": "s3cret-password",
    "os_project_name": "p",
}


def test_registered_under_both_type_names() -> None:
    assert provider_class("openstack") is HeatProvider
    assert provider_class("heat") is HeatProvider
    assert HeatProvider.type_name == "openstack"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"os_auth_url": ""}, "os_auth_url"),
        ({"os_auth_url": "keystone:5000"}, "os_auth_url"),
        ({"os_password": None}, "os_password"),
        ({"os_username": None}, "os_username"),
        ({"os_project_name": None}, "os_project_id"),
        ({"os_interface": "private"}, "os_interface"),
        ({"os_verify": "no"}, "os_verify"),
        ({"os_cacert": "/nonexistent/ca.pem"}, "os_cacert"),
        ({"os_timeout": 0}, "os_timeout"),
        ({"os_timeout": "60"}, "os_timeout"),
        ({"heat_endpoint": "not a url"}, "heat_endpoint"),
        ({"os_region_name": 5}, "os_region_name"),
        ({"os_application_credential_id": "abc"}, "os_application_credential_secret"),
        (
            {"os_application_credential_name": "n", "os_application_credential_secret": "x", "os_username": None},
            "os_username",
        ),
    ],
)
def test_validate_config_names_the_key(change: dict, key: str) -> None:
    config = {**BASE_CONFIG, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ProviderConfigError) as info:
        HeatProvider.validate_config("bad", config)
    assert key in str(info.value) and "'bad'" in str(info.value)
    assert "s3cret-password" not in str(info.value)


@pytest.mark.parametrize(
    "config",
    [
        BASE_CONFIG,
        {**BASE_CONFIG, "os_password": None, "os_auth_token": "tok"},
        {"os_auth_url": "http://k:5000", "os_application_credential_id": "id", "os_application_credential_secret": "s"},
        {**BASE_CONFIG, "os_verify": False, "os_interface": "internal", "os_timeout": 5, "heat_endpoint": ""},
    ],
)
def test_valid_configs_pick_the_right_auth(config: dict) -> None:
    config = {k: v for k, v in config.items() if v is not None}
    provider = HeatProvider("ok", config)
    auth = provider._auth()
    expected = {"os_auth_token": "Token", "os_application_credential_id": "ApplicationCredential"}
    kind = next((v for k, v in expected.items() if k in config), "Password")
    assert type(auth).__name__ == kind
    assert auth.auth_url.endswith("/v3")


def _raises(exc: BaseException) -> Callable[[], None]:
    def call() -> None:
        raise exc

    return call


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as error:
            raise outer from error
    except BaseException as error:
        return error


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (heat_exc.HTTPUnauthorized(), ProviderAuthError, "authentication failed"),
        (ks_exc.Unauthorized(), ProviderAuthError, "authentication failed"),
        (ks_exc.AuthorizationFailure("no"), ProviderAuthError, "authentication failed"),
        (heat_exc.HTTPForbidden(), ProviderAuthError, "permission denied"),
        (ks_exc.Forbidden(), ProviderAuthError, "permission denied"),
        (ks_exc.ConnectFailure("refused"), TransientProviderError, "cannot reach"),
        (ks_exc.ConnectTimeout("slow"), TransientProviderError, "cannot reach"),
        (_chained(ks_exc.DiscoveryFailure("no versions"), ks_exc.ConnectFailure("x")), TransientProviderError, ""),
        (heat_exc.HTTPInternalServerError(), TransientProviderError, "HTTP 500"),
        (heat_exc.HTTPBadGateway(), TransientProviderError, "HTTP 502"),
        (heat_exc.HTTPServiceUnavailable(), TransientProviderError, "HTTP 503"),
        (heat_exc.HTTPException(b'{"error": {"message": "odd"}}', 599), TransientProviderError, "odd"),
        (ks_exc.ServiceUnavailable(), TransientProviderError, "HTTP 503"),
        (ks_exc.TooManyRequests(), TransientProviderError, "HTTP 429"),
        (heat_exc.HTTPConflict(), TransientProviderError, "conflict"),
        (ks_exc.DiscoveryFailure("bad document"), ProviderError, "discovery"),
        (ks_exc.EndpointNotFound("no orchestration"), ProviderConfigError, "no orchestration"),
        (ks_exc.SSLError("bad cert"), ProviderConfigError, "TLS"),
        (heat_exc.HTTPBadRequest(b'{"error": {"message": "bad s3cret-password"}}'), ProviderError, "bad ***"),
        (heat_exc.HTTPMethodNotAllowed(), ProviderError, "HTTP 405"),
    ],
)
def test_error_mapping(exc: BaseException, expected: type, text: str) -> None:
    provider = HeatProvider("mapped", BASE_CONFIG)
    with pytest.raises(ProviderError) as info:
        provider._call("do something", _raises(exc))
    assert isinstance(info.value, expected)
    if expected is ProviderError:  # not one of the more specific kinds
        assert not isinstance(info.value, (TransientProviderError, ProviderAuthError, TemplateError))
    assert "mapped" in str(info.value) and text in str(info.value)
    assert "s3cret-password" not in str(info.value)


def test_bad_request_on_create_is_a_template_error() -> None:
    provider = HeatProvider("mapped", BASE_CONFIG)
    error = heat_exc.HTTPBadRequest(b'{"error": {"message": "The Parameter (run) was not provided."}}')
    with pytest.raises(TemplateError, match=r"The Parameter \(run\) was not provided\."):
        provider._call("create", _raises(error), bad_request=TemplateError)


def test_other_exceptions_pass_unchanged() -> None:
    provider = HeatProvider("mapped", BASE_CONFIG)
    with pytest.raises(ZeroDivisionError):
        provider._call("divide", lambda: 1 / 0)


def _heat_stack(status: str, outputs: dict[str, Any], reason: str = "") -> SimpleNamespace:
    return SimpleNamespace(
        id="abc",
        stack_name="s",
        stack_status=status,
        stack_status_reason=reason,
        outputs=[{"output_key": k, "output_value": v} for k, v in outputs.items()],
    )


def test_output_rules() -> None:
    provider = HeatProvider("rules", BASE_CONFIG)
    ok = provider._to_provider_stack(
        "s",
        _heat_stack(
            "RESUME_COMPLETE",
            {"public_ip": "192.0.2.1", "private_key": "k", "ssh_port": "2022", "reboot_on_resume": "true"},
        ),
    )
    assert ok.status == states.RESUME_COMPLETE
    assert ok.outputs.ssh_port == 2022 and ok.outputs.password is None
    assert ok.extra == {"stack_id": "abc", "reboot_on_resume": True}
    no_ip = provider._to_provider_stack("s", _heat_stack("CREATE_COMPLETE", {"private_key": "k"}))
    assert (no_ip.status, no_ip.status_reason) == (states.CREATE_FAILED, "the template has no public_ip output")
    # The worker may have made the key pair: no private_key output is fine here.
    no_key = provider._to_provider_stack("s", _heat_stack("CREATE_COMPLETE", {"public_ip": "192.0.2.1"}))
    assert no_key.status == states.CREATE_COMPLETE and no_key.outputs.private_key == ""
    bad_port = provider._to_provider_stack(
        "s", _heat_stack("CREATE_COMPLETE", {"public_ip": "h", "private_key": "k", "ssh_port": "ssh"})
    )
    assert bad_port.status == states.CREATE_FAILED and "ssh_port" in bad_port.status_reason
    # A suspended stack without outputs is not a template problem.
    suspended = provider._to_provider_stack("s", _heat_stack("SUSPEND_COMPLETE", {}))
    assert suspended.status == states.SUSPEND_COMPLETE and suspended.outputs is None
    failed = provider._to_provider_stack("s", _heat_stack("CREATE_FAILED", {}, "Resource CREATE failed: x"))
    assert failed.status_reason == "Resource CREATE failed: x"
    # A desktop's endpoint, as the lab's SSH server sees it, and its password.
    desktop = provider._to_provider_stack(
        "s",
        _heat_stack(
            "CREATE_COMPLETE", {"public_ip": "h", "private_key": "k", "vnc": " 127.0.0.1:5901 ", "password": "pw"}
        ),
    )
    assert desktop.extra["vnc"] == "127.0.0.1:5901" and "rdp" not in desktop.extra
    assert desktop.outputs.password == "pw"


def test_hot_dates_stay_strings() -> None:
    doc = parse_document("heat_template_version: 2018-08-31\nresources: {}\n", "template")
    assert doc == {"heat_template_version": "2018-08-31", "resources": {}}
    assert parse_document('{"heat_template_version": "2021-04-16"}', "template") == {
        "heat_template_version": "2021-04-16"
    }
    assert parse_document("", "environment") is None


def test_invalid_stack_names_are_refused() -> None:
    provider = HeatProvider("names", BASE_CONFIG)
    for name in ("", "1abc", "a/b", "a?b", "x" * 300):
        with pytest.raises(ProviderError, match="invalid stack name"):
            provider.get(name)


@pytest.mark.parametrize(("status", "expected"), [("DELETE_COMPLETE", "DELETE_COMPLETE"), ("DELETE_IN_PROGRESS", None)])
def test_no_suspend_or_resume_of_a_deleted_or_deleting_stack(monkeypatch, status: str, expected: str | None) -> None:
    # Heat can still resolve the name of a stack it has just deleted (seen against the real
    # Heat: a suspend then "succeeded" on the empty shell); the provider must not act on it.
    provider = HeatProvider("gone", BASE_CONFIG)

    def refuse(*args: Any) -> None:
        raise AssertionError("Heat was asked to act on a deleted stack")

    heat = SimpleNamespace(
        stacks=SimpleNamespace(get=lambda name: _heat_stack(status, {})),
        actions=SimpleNamespace(suspend=refuse, resume=refuse),
    )
    monkeypatch.setattr(provider, "_client", lambda: heat)
    monkeypatch.setattr(provider, "_progress", lambda *args: None)
    for action in (provider.suspend, provider.resume):
        result = action("hx-gone")
        assert result.status == (expected or status)


def test_create_over_a_name_a_deleted_stack_still_holds_is_retried(monkeypatch) -> None:
    # Seen against the real Heat in a reset: the old stack reads DELETE_COMPLETE, yet creating
    # its successor under the same name got a 409 for a moment.  That must not end the launch
    # as "DELETE_COMPLETE": it is a transient error, which the lifecycle retries.
    provider = HeatProvider("reset", BASE_CONFIG)
    conflict = heat_exc.HTTPConflict(b'{"error": {"message": "The Stack (hx-reset) already exists."}}')

    def create(**fields: Any) -> None:
        raise conflict

    heat = SimpleNamespace(stacks=SimpleNamespace(get=lambda name: _heat_stack("DELETE_COMPLETE", {}), create=create))
    monkeypatch.setattr(provider, "_client", lambda: heat)
    with pytest.raises(TransientProviderError, match="still held by a deleted stack"):
        provider.create("hx-reset", "heat_template_version: 2018-08-31\nresources: {}\n")
    # A stack that really exists is reported as it is.
    heat.stacks.get = lambda name: _heat_stack("CREATE_IN_PROGRESS", {})
    monkeypatch.setattr(provider, "_progress", lambda *args: None)
    assert provider.create("hx-reset", "heat_template_version: 2018-08-31\nresources: {}\n").status == (
        states.CREATE_IN_PROGRESS
    )

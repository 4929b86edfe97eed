"""The Tutor plugin (``tutor-contrib-hastexo/``) with the real ``tutor`` from PyPI: enable, save, read what it rendered.

Tutor lives in its own virtualenv (``make tutor-venv``: ``.venv-tutor``, or
``$HASTEXO_TUTOR``), as it would on an operator's machine; ``tutor config
save`` renders the whole environment (compose files, Kubernetes manifests,
Caddyfile, LMS/Studio settings) without Docker.  The rendered settings are
then executed and validated by the package's own settings checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml
from cryptography.fernet import Fernet

from hastexo_xblock import conf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUTOR = os.environ.get("HASTEXO_TUTOR") or os.path.join(ROOT, ".venv-tutor", "bin", "tutor")
SERVICES = ("hastexo-worker", "hastexo-gateway", "hastexo-suspender", "hastexo-reaper")
CLOUD = {"cloud-a": {"type": "openstack", "os_auth_url": "https://keystone.example.org:5000/v3"}}

if not os.access(TUTOR, os.X_OK):
    if os.environ.get("CI") or os.environ.get("HASTEXO_REQUIRE_TUTOR"):
        raise RuntimeError(f"tutor not found at {TUTOR}: run make tutor-venv")
    pytest.skip(f"tutor not found at {TUTOR} (make tutor-venv)", allow_module_level=True)


def tutor(root, *args):
    env = {**os.environ, "TUTOR_ROOT": str(root), "TUTOR_PLUGINS_ROOT": str(root / "plugins")}
    done = subprocess.run([TUTOR, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Environments rendered with the default (local) provider and with a cloud provider only."""
    result = {}
    for name, settings in (("local", []), ("cloud", ["--set", f"HASTEXO_PROVIDERS={json.dumps(CLOUD)}"])):
        root = tmp_path_factory.mktemp(f"tutor-{name}")
        tutor(root, "plugins", "enable", "hastexo")
        extra = {"suspend_timeout": 300, "instructions_layout": "left"}
        tutor(root, "config", "save", "--set", f"HASTEXO_SETTINGS={json.dumps(extra)}", *settings)
        result[name] = root / "env"
    return result


def read(env, path):
    return (env / path).read_text()


def test_the_plugin_is_listed_and_enabled(tmp_path):
    tutor(tmp_path, "plugins", "enable", "hastexo")
    assert re.search(r"^hastexo\s+✅ enabled", tutor(tmp_path, "plugins", "list"), re.M)


def test_the_image_installs_the_package(rendered):
    dockerfile = read(rendered["local"], "build/openedx/Dockerfile")
    assert "pip install -c /tmp/hastexo-platform-pins.txt 'hastexo-xblock-ng==0.1.0'" in dockerfile
    assert "pip freeze --exclude-editable" in dockerfile  # the platform's own pins constrain the install


def test_local_labs_get_their_sandbox_in_the_image_and_the_worker(rendered):
    dockerfile = read(rendered["local"], "build/openedx/Dockerfile")
    assert "apt install -y bubblewrap slirp4netns" in dockerfile
    # Installed as root, before the image switches to the unprivileged app user.
    assert dockerfile.index("bubblewrap slirp4netns") < dockerfile.index("USER ${APP_USER_ID}")
    assert "bubblewrap" not in read(rendered["cloud"], "build/openedx/Dockerfile")
    compose = yaml.safe_load(read(rendered["local"], "local/docker-compose.prod.yml"))["services"]
    assert compose["hastexo-worker"]["security_opt"] == ["seccomp:unconfined", "apparmor:unconfined"]
    assert "security_opt" not in compose["hastexo-gateway"]
    cloud = yaml.safe_load(read(rendered["cloud"], "local/docker-compose.prod.yml"))["services"]
    assert "security_opt" not in cloud["hastexo-worker"]
    docs = [d for d in yaml.safe_load_all(read(rendered["local"], "k8s/deployments.yml")) if d]
    pod = next(d for d in docs if d["metadata"]["name"] == "hastexo-labs")["spec"]["template"]["spec"]
    worker = next(c for c in pod["containers"] if c["name"] == "hastexo-worker")
    assert worker["securityContext"]["seccompProfile"] == {"type": "Unconfined"}
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize("variant", ["lms", "cms"])
def test_lms_and_studio_settings_are_valid_for_the_package(rendered, variant):
    text = read(rendered["local"], f"apps/openedx/settings/{variant}/production.py")
    start = text.index("# hastexo_xblock (tutor-contrib-hastexo)")
    end = text.index("\n######## ", start)
    namespace = {"XBLOCK_SETTINGS": {"hastexo": {"enable_fullscreen": True}}}
    exec(compile(text[start:end], f"{variant}/production.py", "exec"), namespace)
    raw = namespace["XBLOCK_SETTINGS"]["hastexo"]
    settings = conf.load(raw, secret_key="x")  # the package's own checks, as at LMS start-up
    assert settings["gateway_url"] == "/hastexo-gateway/ws" and settings["task_queue"] == "hastexo.labs"
    assert settings["providers"]["default"]["type"] == "local" and settings["suspend_timeout"] == 300
    assert settings["enable_fullscreen"] is True  # operators' own keys survive
    Fernet(raw["encryption_keys"][0])  # a real Fernet key, derived from the install's unique secret
    assert len(raw["gateway_secret"]) >= 32


def test_compose_runs_worker_gateway_and_jobs(rendered):
    services = yaml.safe_load(read(rendered["local"], "local/docker-compose.prod.yml"))["services"]
    assert set(SERVICES) <= set(services)
    worker = services["hastexo-worker"]
    assert "--queues=hastexo.labs" in worker["command"] and "--app=lms.celery" in worker["command"]
    gateway = services["hastexo-gateway"]
    assert gateway["command"].startswith("python -m hastexo_xblock.gateway --host 0.0.0.0 --port 8095")
    # Local labs: the gateway and the jobs live in the worker's namespaces, reachable as hastexo-gateway.
    assert gateway["network_mode"] == "service:hastexo-worker"
    assert worker["networks"]["default"]["aliases"] == ["hastexo-gateway"]
    assert services["hastexo-suspender"]["pid"] == "service:hastexo-worker"
    assert "hastexo_reaper --loop" in services["hastexo-reaper"]["command"]
    for name in SERVICES:
        assert services[name]["environment"]["DJANGO_SETTINGS_MODULE"] == "lms.envs.tutor.production"
    cloud = yaml.safe_load(read(rendered["cloud"], "local/docker-compose.prod.yml"))["services"]
    assert "network_mode" not in cloud["hastexo-gateway"] and "networks" not in cloud["hastexo-worker"]


def test_caddy_routes_the_gateway_on_the_lms_host(rendered):
    caddyfile = read(rendered["local"], "apps/caddy/Caddyfile")
    lms = caddyfile.index("local.openedx.io{$default_site_port}")
    cms = caddyfile.index("studio.local.openedx.io{$default_site_port}")
    route = caddyfile.index("handle /hastexo-gateway/* {")
    assert lms < route < cms  # in the LMS host's block
    block = caddyfile[route : caddyfile.index("}", route)]
    assert "reverse_proxy hastexo-gateway:8095" in block and "log_skip" in block


def deployments(env):
    documents = [doc for doc in yaml.safe_load_all(read(env, "k8s/deployments.yml")) if doc]
    return {doc["metadata"]["name"]: doc for doc in documents if doc["kind"] == "Deployment"}


def test_kubernetes_cloud_labs_get_scalable_deployments_and_a_service(rendered):
    found = deployments(rendered["cloud"])
    assert set(SERVICES) <= set(found)
    gateway = found["hastexo-gateway"]["spec"]["template"]
    container = gateway["spec"]["containers"][0]
    assert container["args"][:3] == ["python", "-m", "hastexo_xblock.gateway"]
    assert container["args"][-2:] == ["--workers", "1"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    services = [doc for doc in yaml.safe_load_all(read(rendered["cloud"], "k8s/services.yml")) if doc]
    service = next(doc for doc in services if doc["metadata"]["name"] == "hastexo-gateway")
    assert service["spec"]["ports"][0]["port"] == 8095
    labels = gateway["metadata"]["labels"]
    assert all(labels.get(key) == value for key, value in service["spec"]["selector"].items())
    worker = found["hastexo-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert "--queues=hastexo.labs" in worker["args"]


def test_kubernetes_local_labs_share_one_pod_and_a_volume(rendered):
    found = deployments(rendered["local"])
    pod = found["hastexo-labs"]["spec"]["template"]
    assert pod["spec"]["shareProcessNamespace"] is True
    assert {c["name"] for c in pod["spec"]["containers"]} == set(SERVICES)
    assert pod["spec"]["volumes"][-1]["persistentVolumeClaim"]["claimName"] == "hastexo-labs"
    volumes = [doc for doc in yaml.safe_load_all(read(rendered["local"], "k8s/volumes.yml")) if doc]
    assert any(doc["metadata"]["name"] == "hastexo-labs" for doc in volumes)

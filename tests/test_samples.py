"""The sample templates: the local demo template and the real-cloud Heat template.

The Heat sample is validated by the local Heat (``stacks.validate``).  That
Heat has no Nova or Neutron in its catalog, and Heat refuses to validate
resource types whose service is missing, so the cloud resource types are
mapped to ``OS::Heat::None`` in the environment used for validation: what is
checked is everything else (parameters, intrinsic functions, conditions,
references between resources, outputs).
"""

import os

import pytest
import yaml

from hastexo_xblock.providers.local import parse_template

from . import heat_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(REPO, "samples")


def load(name):
    with open(os.path.join(SAMPLES, name), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def heat_client():
    from heatclient import client
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    config = heat_env.provider_config("demo")
    auth = v3.Password(
        auth_url=config["os_auth_url"],
        username=config.get("os_username"),
        password=config.get("os_password"),
        project_name=config.get("os_project_name"),
        user_domain_name=config.get("os_user_domain_name", "Default"),
        project_domain_name=config.get("os_project_domain_name", "Default"),
    )
    return client.Client("1", session=session.Session(auth=auth), region_name=config.get("os_region_name"))


def stubbed(template, environment):
    cloud_types = sorted({r["type"] for r in template["resources"].values() if not r["type"].startswith("OS::Heat::")})
    assert cloud_types, "the sample should describe real cloud resources"
    return {**environment, "resource_registry": {t: "OS::Heat::None" for t in cloud_types}}


def test_heat_sample_passes_heat_validation():
    template, environment = load("heat-lab.yaml"), load("heat-lab-env.yaml")
    result = heat_client().stacks.validate(template=template, environment=stubbed(template, environment))
    assert {"run", "public_key", "image", "flavor", "private_network", "public_network"} <= set(result["Parameters"])
    assert {"public_ip", "private_key", "password", "ssh_port"} <= set(template["outputs"])
    types = {r["type"] for r in template["resources"].values()}
    assert {"OS::Nova::Server", "OS::Neutron::FloatingIP", "OS::Nova::KeyPair", "OS::Heat::RandomString"} <= types


def test_validation_catches_a_broken_sample():
    from heatclient import exc

    template, environment = load("heat-lab.yaml"), load("heat-lab-env.yaml")
    template["outputs"]["public_ip"]["value"] = {"get_attr": ["no_such_resource", "floating_ip_address"]}
    with pytest.raises(exc.HTTPBadRequest, match="no_such_resource"):
        heat_client().stacks.validate(template=template, environment=stubbed(template, environment))


def test_demo_template_is_a_valid_local_template():
    path = os.path.join(REPO, "hastexo_xblock", "demo", "templates", "linux-basics.yaml")
    with open(path, encoding="utf-8") as handle:
        template = parse_template(handle.read())
    assert [f.path for f in template.files] == ["welcome.txt"] and "mkdir" in template.setup


def test_heat_desktop_sample_passes_heat_validation():
    from hastexo_xblock.gateway.vnc import parse_endpoint

    template, environment = load("heat-desktop.yaml"), load("heat-lab-env.yaml")
    result = heat_client().stacks.validate(template=template, environment=stubbed(template, environment))
    assert {"run", "public_key", "image", "flavor", "private_network", "public_network"} <= set(result["Parameters"])
    assert {"public_ip", "private_key", "password", "vnc"} <= set(template["outputs"])
    # The desktop is reachable from the server itself only: the gateway goes through SSH.
    endpoint = parse_endpoint(template["outputs"]["vnc"]["value"])
    assert endpoint.host == "127.0.0.1"
    rules = template["resources"]["security_group"]["properties"]["rules"]
    assert [(r["port_range_min"], r["port_range_max"]) for r in rules if r["protocol"] == "tcp"] == [(22, 22)]
    unit = template["resources"]["cloud_config"]["properties"]["cloud_config"]["write_files"][0]
    assert "-interface 127.0.0.1 -SecurityTypes VncAuth" in unit["content"]["str_replace"]["template"]

"""The original's settings: every README example starts the LMS, with the notes an operator needs."""

from __future__ import annotations

import copy
import logging
import os

import pytest
import yaml

import hastexo_xblock
from hastexo_xblock import colors, conf
from hastexo_xblock.apps import HastexoXBlockConfig

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "settings", "readme_examples.yaml"), encoding="utf-8") as handle:
    EXAMPLES = yaml.safe_load(handle)

FILLED = {
    "os_auth_url": "https://keystone.example.org:5000/v3",
    "os_username": "labs",
    "os_password": "not-a-real-password",
    "os_project_name": "labs",
    "os_user_domain_name": "Default",
    "os_project_domain_name": "Default",
}


@pytest.fixture
def fresh_log(monkeypatch):
    """Forget which notes were logged already in this process (they are logged once per process)."""
    monkeypatch.setattr(conf, "_logged", set())
    yield
    conf.clear_cache()


def start_lms(settings, xblock_settings):
    """What the LMS does at start-up: load the app, whose ready() checks the settings."""
    settings.XBLOCK_SETTINGS = xblock_settings
    conf.clear_cache()
    HastexoXBlockConfig("hastexo_xblock", hastexo_xblock).ready()
    return conf.get_settings()


def test_the_fixture_holds_every_example_once():
    assert len(EXAMPLES) == 24
    assert len({example["id"] for example in EXAMPLES}) == len(EXAMPLES)
    bodies = [yaml.safe_dump([e["settings_key"], e["settings"]], sort_keys=True) for e in EXAMPLES]
    assert len(set(bodies)) == len(bodies)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["id"] for e in EXAMPLES])
def test_readme_example_starts_the_lms(example, settings, caplog, fresh_log):
    caplog.set_level(logging.WARNING, logger="hastexo_xblock")
    loaded = start_lms(settings, {example["settings_key"]: copy.deepcopy(example["settings"])})
    expect = example["expect"]

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for key in expect.get("deprecated", []):
        named = [m for m in warnings if f'["{key}"]' in m]
        assert len(named) == 1, (key, warnings)
        assert "replaced by" in named[0] or "read as" in named[0] or ":" in named[0].split("]", 2)[-1]

    unavailable = expect.get("unavailable", {})
    assert loaded.unavailable_providers.keys() == unavailable.keys()
    assert not loaded["providers"]  # every example's credentials are empty
    for name, kind in unavailable.items():
        problem = loaded.provider_problem(name)
        assert problem.startswith(f"provider {name} is not configured here")
        if kind == "gcloud":
            [line] = [m for m in errors if f'["providers"]["{name}"]:' in m]
            assert "Google Cloud Deployment Manager" in line and "retired" in line
            assert "Deployment Manager is retired" in problem
        else:
            [line] = [m for m in warnings if f'["providers"]["{name}"]:' in m]
            assert "no credentials" in line
    if example["settings_key"] == "stackamole":
        assert any("rename the key" in m for m in warnings)
        assert all(m.startswith('XBLOCK_SETTINGS["stackamole"]') for m in warnings + errors)

    for key in expect.get("default_instead_of_zero", []):
        assert loaded[key] == conf.DEFAULTS[key], key
    kept_as_given = set(conf.DEFAULTS) - {"providers", "js_timeouts", "terminal_font_size"}
    kept_as_given -= set(expect.get("default_instead_of_zero", []))
    for key, value in example["settings"].items():
        if key in kept_as_given:
            assert loaded[key] == value, key


@pytest.mark.parametrize(
    "example",
    [e for e in EXAMPLES if e["settings"].get("providers")],
    ids=[e["id"] for e in EXAMPLES if e["settings"].get("providers")],
)
def test_filled_in_providers_are_openstack_unless_gcloud(example):
    raw = copy.deepcopy(example["settings"])
    for config in raw["providers"].values():
        if config.get("type") != "gcloud":
            config.update(FILLED)
    loaded = conf.load(raw)
    for name, config in example["settings"]["providers"].items():
        if config.get("type") == "gcloud":
            assert name not in loaded["providers"] and "gcloud" in loaded.provider_problem(name)
        else:
            # No "type" in the oldest examples: OpenStack, as in the original.
            assert loaded["providers"][name]["type"] == "openstack"
            assert loaded.provider_problem(name) is None


def test_top_level_credentials_become_the_default_provider(caplog, fresh_log, settings):
    caplog.set_level(logging.WARNING, logger="hastexo_xblock")
    old = {"os_auth_url": FILLED["os_auth_url"], "os_username": "labs", "os_password": "x", "os_tenant_name": "t1"}
    loaded = start_lms(settings, {"hastexo": {"launch_timeout": 300, **old}})
    provider = loaded["providers"]["default"]
    assert provider["type"] == "openstack" and provider["os_project_name"] == "t1" and "os_tenant_name" not in provider
    assert any('["os_*"]' in r.getMessage() and "move them" in r.getMessage() for r in caplog.records)
    # With providers configured, the old keys are ignored (as in the original), and said so.
    loaded = conf.load({"providers": {"cloud": {"type": "openstack", **FILLED}}, **old})
    assert list(loaded["providers"]) == ["cloud"]


def test_each_note_is_logged_once_per_process(settings, caplog, fresh_log):
    caplog.set_level(logging.WARNING, logger="hastexo_xblock")
    for _ in range(3):
        start_lms(settings, {"hastexo": {"guacamole_js_version": "1.5.5", "ssh_connect_timeout": 10}})
    messages = [r.getMessage() for r in caplog.records]
    assert sum('["guacamole_js_version"]' in m for m in messages) == 1
    assert sum('["ssh_connect_timeout"]' in m for m in messages) == 1


def test_a_misspelt_key_still_stops_the_lms(settings):
    with pytest.raises(conf.ConfigurationError, match="guacamole_js_verison"):
        start_lms(settings, {"hastexo": {"guacamole_js_verison": "1.5.5"}})


def test_a_half_filled_provider_is_still_an_error():
    with pytest.raises(conf.ConfigurationError, match="os_password"):
        conf.load({"providers": {"default": {"os_auth_url": FILLED["os_auth_url"], "os_username": "u"}}})


# --- custom colour schemes in the original's (Guacamole's) format ----------------

with open(os.path.join(HERE, "settings", "color_schemes.yaml"), encoding="utf-8") as handle:
    SCHEMES = yaml.safe_load(handle)


@pytest.mark.parametrize("case", SCHEMES["valid"], ids=[c["id"] for c in SCHEMES["valid"]])
def test_custom_color_scheme_becomes_a_terminal_theme(case):
    loaded = conf.load({"terminal_color_scheme": case["scheme"]})
    assert loaded["terminal_color_scheme"] == case["scheme"].strip()
    theme = loaded.terminal_theme
    for key, value in case["theme"].items():
        assert theme[key] == value, key
    for key in ("foreground", "background", *colors.ANSI_KEYS):
        assert len(theme[key]) == 7 and theme[key].startswith("#")


@pytest.mark.parametrize("case", SCHEMES["invalid"], ids=[c["id"] for c in SCHEMES["invalid"]])
def test_a_broken_color_scheme_stops_the_lms_naming_the_part(case):
    with pytest.raises(conf.ConfigurationError) as info:
        conf.load({"terminal_color_scheme": case["scheme"]})
    assert info.value.key == "terminal_color_scheme"
    assert case["names"] in str(info.value)


def test_named_schemes_stay_names():
    for name in colors.NAMED:
        loaded = conf.load({"terminal_color_scheme": name})
        assert loaded.terminal_theme is None and loaded["terminal_color_scheme"] == name

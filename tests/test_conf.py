"""Settings: the original's keys and defaults, partial configs, errors that name the key."""

import pytest

from hastexo_xblock import conf

ORIGINAL_DEFAULTS = {
    "terminal_url": "/hastexo-xblock/",
    "launch_timeout": 900,
    "remote_exec_timeout": 300,
    "suspend_timeout": 120,
    "suspend_interval": 60,
    "suspend_concurrency": 4,
    "suspend_task_timeout": 900,
    "check_timeout": 120,
    "delete_age": 14,
    "delete_interval": 3600,
    "delete_attempts": 3,
    "delete_task_timeout": 900,
    "sleep_timeout": 10,
    "js_timeouts": {"status": 15000, "keepalive": 30000, "idle": 3600000, "check": 5000},
    "providers": {},
    "instructions_layout": "above",
    "enable_fullscreen": False,
    "lab_usage_limit": None,
    "lab_usage_limit_breach_policy": None,
    "terminal_color_scheme": "white-black",
    "terminal_font_name": "monospace",
    "terminal_font_size": "10",
    "lab_resize_method": "display-update",
}


def test_every_original_key_has_its_default():
    settings = conf.load({})
    for key, value in ORIGINAL_DEFAULTS.items():
        assert settings[key] == value, key


def test_partial_config_merges_over_defaults():
    settings = conf.load({"launch_timeout": 60, "js_timeouts": {"status": 1000}})
    assert settings.launch_timeout == 60
    assert settings.suspend_timeout == 120
    assert settings.js_timeouts == {"status": 1000, "keepalive": 30000, "idle": 3600000, "check": 5000}
    assert conf.DEFAULTS["js_timeouts"]["status"] == 15000  # defaults untouched


def test_values_from_yaml_or_env_strings_are_accepted():
    settings = conf.load({"launch_timeout": "300", "enable_fullscreen": "true", "terminal_font_size": 12})
    assert settings.launch_timeout == 300 and settings.enable_fullscreen is True
    assert settings.terminal_font_size == "12"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"launch_timeout": "soon"}, "launch_timeout"),
        ({"launch_timeout": -5}, "launch_timeout"),
        ({"suspend_concurrency": True}, "suspend_concurrency"),
        ({"js_timeouts": {"status": -1}}, "js_timeouts.status"),
        ({"js_timeouts": {"statsu": 1}}, "js_timeouts.statsu"),
        ({"instructions_layout": "middle"}, "instructions_layout"),
        ({"lab_usage_limit_breach_policy": "shout"}, "lab_usage_limit_breach_policy"),
        ({"providers": {"default": {"type": "nova-direct"}}}, "providers.default.type"),
        ({"providers": {"default": {"type": 5}}}, "providers.default.type"),
        ({"providers": {"default": "local"}}, "providers.default"),
        ({"providers": {"default": {"type": "local", "sandbox": "chroot"}}}, "providers.default"),
        ({"lauch_timeout": 5}, "lauch_timeout"),
        ({"encryption_keys": ["", "x"]}, "encryption_keys"),
        ({"guacd": "guacd:4822"}, "guacd"),
        ({"guacd": {"host": "guacd", "port": 70000}}, "guacd.port"),
        ({"guacd": {"port": 4822}}, "guacd.host"),
        ({"guacd": {"host": "guacd", "prot": 1}}, "guacd"),
    ],
)
def test_wrong_values_fail_naming_the_key(raw, key):
    with pytest.raises(conf.ConfigurationError) as info:
        conf.load(raw)
    assert info.value.key == key
    assert f'["{key}"]' in str(info.value)


def test_guacd_defaults():
    assert conf.load({}).guacd is None
    guacd = conf.load({"guacd": {"host": "guacd.internal"}}).guacd
    assert guacd == {"host": "guacd.internal", "port": 4822, "tunnel_host": "127.0.0.1", "tunnel_bind": "127.0.0.1"}


def test_unknown_provider_type_lists_the_known_ones():
    with pytest.raises(conf.ConfigurationError, match=r"known types: .*local"):
        conf.load({"providers": {"x": {"type": "nova-direct"}}})


def test_django_start_up_fails_on_a_bad_setting(settings):
    import hastexo_xblock
    from hastexo_xblock.apps import HastexoXBlockConfig

    settings.XBLOCK_SETTINGS = {"hastexo": {"suspend_timeout": "never"}}
    try:
        with pytest.raises(conf.ConfigurationError, match="suspend_timeout"):
            HastexoXBlockConfig("hastexo_xblock", hastexo_xblock).ready()
    finally:
        conf.clear_cache()


def test_secret_derivations_differ_by_purpose():
    settings = conf.load({}, secret_key="k")
    assert settings.derived_key("a") != settings.derived_key("b")
    assert settings.ticket_secret == settings.derived_key("gateway-ticket")
    assert conf.load({"gateway_secret": "s3"}, secret_key="k").ticket_secret == b"s3"


def test_beat_schedule_follows_the_intervals():
    schedule = conf.beat_schedule({"suspend_interval": 15, "delete_interval": 600, "task_queue": "labs"})
    assert schedule == {
        "hastexo-suspender": {"task": "hastexo_xblock.suspender", "schedule": 15.0, "options": {"queue": "labs"}},
        "hastexo-reaper": {"task": "hastexo_xblock.reaper", "schedule": 600.0, "options": {"queue": "labs"}},
    }

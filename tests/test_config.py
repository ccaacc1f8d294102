"""The configuration file, its profiles, and where each effective setting came from."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamcli.config import Config, Settings, default_path, load_config, resolve, show
from streamcli.exit import ExitStatus, UsageError
from streamcli.redact import mask

ENV_NAMES = {"url": "MELVIN_URL", "api_key": "MELVIN_API_KEY", "timeout": "MELVIN_TIMEOUT"}
BUILTIN = {"url": "ws://localhost:8394", "api_key": None, "timeout": 30.0, "punctuate": True}
NO_OPTIONS = {"url": None, "api_key": None, "timeout": None, "punctuate": None}

LAYERED = """\
[melvin]
url = "ws://file:8394"
api_key = "file-key-0123456789"
timeout = 10
punctuate = false

[profiles.lab.melvin]
url = "ws://lab:8394"
api_key = "lab-key-0123456789"

[profiles.home.melvin]
url = "ws://home:8394"
"""


def write_config(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def melvin(config: Config, profile=None, options=None, env=None) -> Settings:
    return resolve(
        config, "melvin", profile, {**NO_OPTIONS, **(options or {})}, env or {}, ENV_NAMES, BUILTIN
    )


@pytest.fixture
def layered(tmp_path) -> Config:
    return load_config(str(write_config(tmp_path / "config.toml", LAYERED)))


# -- where the file is -----------------------------------------------------------------------


def test_default_path_honours_xdg_config_home(tmp_path):
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert default_path(env) == tmp_path / "xdg" / "streamcli" / "config.toml"


def test_default_path_falls_back_to_dot_config(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_path({}) == tmp_path / ".config" / "streamcli" / "config.toml"
    # The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored.
    assert default_path({"XDG_CONFIG_HOME": "rel"}) == default_path({})


def test_load_config_reads_the_file_under_xdg_config_home(tmp_path, monkeypatch):
    write_config(tmp_path / "xdg" / "streamcli" / "config.toml", LAYERED)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = load_config(None)
    assert config.path == str(tmp_path / "xdg" / "streamcli" / "config.toml")
    assert config.defaults("melvin")["url"] == "ws://file:8394"


def test_a_missing_default_file_is_an_empty_config(tmp_path):
    config = load_config(None, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert config == Config()
    assert melvin(config).origins["url"] == "default"


def test_a_missing_explicit_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError) as caught:
        load_config(str(tmp_path / "absent.toml"))
    assert caught.value.message == f"config file {tmp_path / 'absent.toml'} does not exist"
    assert caught.value.status == ExitStatus.USAGE


def test_malformed_toml_names_the_line(tmp_path):
    path = write_config(tmp_path / "config.toml", '[melvin]\nurl = "ws://x"\napi_key = \n')
    with pytest.raises(UsageError) as caught:
        load_config(str(path))
    assert str(path) in caught.value.message
    assert "line 3" in caught.value.message
    assert "\n" not in caught.value.message


def test_profiles_must_be_tables(tmp_path):
    path = write_config(tmp_path / "config.toml", 'profiles = "lab"\n')
    with pytest.raises(UsageError, match="'profiles' must be a table"):
        load_config(str(path))


def test_top_level_values_are_ignored_with_a_warning(tmp_path):
    path = write_config(tmp_path / "config.toml", "timeout = 5\n[melvin]\n")
    assert load_config(str(path)).warnings == (
        f"config file {path}: ignoring 'timeout': settings belong in a [backend] table",
    )


# -- secrets ---------------------------------------------------------------------------------


def test_secrets_readable_by_others_get_a_warning(tmp_path):
    path = write_config(tmp_path / "config.toml", LAYERED, mode=0o644)
    assert load_config(str(path)).warnings == (
        f"config file {path} holds secrets (api_key) but others can read it: chmod 600 {path}",
    )


@pytest.mark.parametrize("key", ["subscription_key", "client_secret", "token", "my_secret"])
def test_every_kind_of_secret_counts_even_in_a_profile(tmp_path, key):
    text = f'[profiles.x.phebi]\n{key} = "s"\n'
    path = write_config(tmp_path / "config.toml", text, mode=0o640)
    assert len(load_config(str(path)).warnings) == 1


def test_a_private_file_or_one_without_secrets_gets_no_warning(tmp_path):
    private = write_config(tmp_path / "a.toml", LAYERED, mode=0o600)
    public = write_config(tmp_path / "b.toml", '[melvin]\nurl = "ws://x"\n', mode=0o644)
    assert load_config(str(private)).warnings == ()
    assert load_config(str(public)).warnings == ()


# -- precedence ------------------------------------------------------------------------------


def test_each_layer_wins_over_the_ones_below(layered):
    env = {"MELVIN_API_KEY": "env-key-0123456789", "MELVIN_TIMEOUT": "45"}
    settings = melvin(layered, "lab", {"url": "ws://option:1"}, env)
    assert settings.values == {
        "url": "ws://option:1",
        "api_key": "env-key-0123456789",
        "timeout": 45.0,
        "punctuate": False,
    }
    assert settings.origins == {
        "url": "option",
        "api_key": "env MELVIN_API_KEY",
        "timeout": "env MELVIN_TIMEOUT",
        "punctuate": "config file",
    }


@pytest.mark.parametrize(
    ("profile", "options", "env", "value", "origin"),
    [
        ("lab", {"url": "ws://option:1"}, {"MELVIN_URL": "ws://env:1"}, "ws://option:1", "option"),
        ("lab", {}, {"MELVIN_URL": "ws://env:1"}, "ws://env:1", "env MELVIN_URL"),
        ("lab", {}, {}, "ws://lab:8394", "profile lab"),
        (None, {}, {}, "ws://file:8394", "config file"),
        (None, {}, {"MELVIN_URL": ""}, "ws://file:8394", "config file"),  # empty = unset
    ],
)
def test_url_comes_from_the_highest_layer_having_it(layered, profile, options, env, value, origin):
    settings = melvin(layered, profile, options, env)
    assert (settings["url"], settings.origins["url"]) == (value, origin)


def test_built_in_defaults_fill_the_rest():
    settings = melvin(Config())
    assert settings.values == BUILTIN
    assert set(settings.origins.values()) == {"default"}


def test_a_profile_without_this_backend_falls_through_to_the_file(tmp_path):
    text = '[melvin]\nurl = "ws://file:1"\n[profiles.lab.phebi]\nurl = "ws://phebi:1"\n'
    config = load_config(str(write_config(tmp_path / "c.toml", text)))
    assert melvin(config, "lab").origins["url"] == "config file"


def test_an_unknown_profile_lists_the_known_ones(layered):
    with pytest.raises(UsageError) as caught:
        melvin(layered, "work")
    assert caught.value.message == (
        f"unknown profile 'work': known profiles in {layered.path}: home, lab"
    )


def test_an_unknown_profile_without_any_profiles_says_so():
    with pytest.raises(UsageError, match="unknown profile 'lab': known profiles: none"):
        melvin(Config(), "lab")


def test_environment_values_take_the_type_of_the_default(layered):
    assert melvin(layered, env={"MELVIN_TIMEOUT": "2.5"})["timeout"] == 2.5
    with pytest.raises(UsageError, match="MELVIN_TIMEOUT='soon': expected a number"):
        melvin(layered, env={"MELVIN_TIMEOUT": "soon"})


def test_file_values_of_the_wrong_type_are_a_usage_error(tmp_path):
    config = load_config(str(write_config(tmp_path / "c.toml", '[melvin]\ntimeout = "ten"\n')))
    with pytest.raises(UsageError, match=r"\[melvin\] timeout = 'ten': expected float, got str"):
        melvin(config)


def test_an_int_in_the_file_is_fine_for_a_float_setting(layered):
    timeout = melvin(layered)["timeout"]
    assert timeout == 10.0 and isinstance(timeout, float)


def test_unknown_settings_in_the_file_are_reported(tmp_path):
    text = '[melvin]\nurll = "x"\n[profiles.lab.melvin]\ntimout = 3\n'
    config = load_config(str(write_config(tmp_path / "c.toml", text)))
    settings = melvin(config, "lab")
    assert settings.warnings == (
        "config file [melvin]: unknown setting 'urll'",
        "config file [profiles.lab.melvin]: unknown setting 'timout'",
    )
    assert "urll" not in settings.values


# -- show ------------------------------------------------------------------------------------


def test_show_masks_secrets_and_names_origins(layered):
    settings = melvin(layered, "lab", env={"MELVIN_TIMEOUT": "45"})
    assert show(settings) == [
        ("url", "ws://lab:8394", "profile lab"),
        ("api_key", "lab-…", "profile lab"),
        ("timeout", "45.0", "env MELVIN_TIMEOUT"),
        ("punctuate", "false", "config file"),
    ]


def test_show_says_when_a_value_is_not_set():
    assert ("api_key", "(not set)", "default") in show(melvin(Config()))


@pytest.mark.parametrize(
    ("secret", "shown"),
    [("abcdefghijkl", "abcd…"), ("abcdefghijk", "…"), ("", "…"), ("a-much-longer-secret", "a-mu…")],
)
def test_mask_shows_four_characters_only_of_long_secrets(secret, shown):
    assert mask(secret) == shown

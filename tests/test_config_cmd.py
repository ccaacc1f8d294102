"""``streamcli config show``: precedence visible in the origins, secrets masked, errors exit 2."""

from __future__ import annotations

import inspect
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from streamcli.commands import config_cmd
from streamcli.commands.config_cmd import BACKEND_SETTINGS, builtin_defaults, env_names
from streamcli.config import load_config, resolve

FILE_SECRET = "file-secret-0123456789"
PROFILE_SECRET = "lab-secret-0123456789"
ENV_SECRET = "env-secret-0123456789"

LAYERED = """\
[melvin]
url = "ws://file:8394"
api_key = "file-secret-0123456789"
timeout = 12

[profiles.lab.melvin]
url = "ws://lab:8394"
connect_timeout = 3

[profiles.lab.phebi]
subscription_key = "lab-secret-0123456789"
project = "[bold]demo[/bold]"
"""


@pytest.fixture
def app() -> typer.Typer:
    """A bare app holding only the config group, as cli.py registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """streamcli"""

    config_cmd.register(app)
    return app


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for known in BACKEND_SETTINGS.values():
        for setting in known.values():
            if setting.env:
                monkeypatch.delenv(setting.env, raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def run(app: typer.Typer, *args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["config", *args], env=env)


def test_each_setting_says_whether_it_came_from_env_profile_file_or_default(app, tmp_path):
    path = write(tmp_path / "config.toml", LAYERED)
    result = run(
        app, "show", "melvin", "--profile", "lab", "--config", str(path),
        env={"MELVIN_API_KEY": ENV_SECRET},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"config file: {path}  profile: lab",
        "melvin.url              ws://lab:8394  profile lab",
        "melvin.api_key          env-…          env MELVIN_API_KEY",
        "melvin.rest_url         (not set)      default",
        "melvin.export_dir       .              default",
        "melvin.timeout          12.0           config file",
        "melvin.connect_timeout  3.0            profile lab",
    ]
    assert result.stderr == ""


def test_without_a_profile_the_file_defaults_apply(app, tmp_path):
    path = write(tmp_path / "config.toml", LAYERED)
    result = run(app, "show", "melvin", "--config", str(path))
    assert result.exit_code == 0
    assert "melvin.url              ws://file:8394  config file" in result.stdout.splitlines()
    assert "melvin.api_key          file…           config file" in result.stdout.splitlines()


def test_the_default_file_is_found_under_xdg_config_home(app, tmp_path):
    path = write(tmp_path / "xdg" / "streamcli" / "config.toml", '[vosk]\nurl = "ws://v:2700"\n')
    result = run(app, "show", "vosk")
    assert result.stdout.splitlines()[:2] == [
        f"config file: {path}",
        "vosk.url              ws://v:2700  config file",
    ]
    assert run(app, "path").stdout == f"{path}\n"


def test_without_a_file_every_backend_shows_its_built_in_defaults(app, tmp_path):
    result = run(app, "show")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == f"config file: {tmp_path / 'xdg' / 'streamcli' / 'config.toml'} (not found)"
    shown = {line.split()[0] for line in lines[1:]}
    assert shown == {f"{b}.{key}" for b, known in BACKEND_SETTINGS.items() for key in known}
    assert all(line.endswith("default") for line in lines[1:])


def test_a_secret_never_appears_in_any_output(app, tmp_path):
    path = write(tmp_path / "config.toml", LAYERED)
    env = {"BODHI_API_KEY": ENV_SECRET, "VERIDAS_TOKEN": ENV_SECRET}
    for extra in ([], ["--json"]):
        result = run(app, "show", "--profile", "lab", "--config", str(path), *extra, env=env)
        assert result.exit_code == 0
        for secret in (FILE_SECRET, PROFILE_SECRET, ENV_SECRET):
            assert secret[:5] not in result.stdout + result.stderr
    config = load_config(str(path))
    console = Console(file=io.StringIO(), width=100, record=True)
    settings = resolve(
        config, "melvin", None, {}, {}, env_names("melvin"), builtin_defaults("melvin")
    )
    console.print(config_cmd.settings_table("melvin", settings, str(path), None))
    table = console.export_text()
    assert FILE_SECRET[:5] not in table
    assert "file…" in table


def test_json_keeps_value_types_and_masks_secrets(app, tmp_path):
    path = write(tmp_path / "config.toml", LAYERED)
    result = run(app, "show", "melvin", "--config", str(path), "--json")
    data = json.loads(result.stdout)
    assert data["config_file"] == str(path)
    assert data["profile"] is None
    melvin = data["backends"]["melvin"]
    assert melvin["timeout"] == {"value": 12.0, "origin": "config file"}
    assert melvin["api_key"] == {"value": "file…", "origin": "config file"}
    assert melvin["rest_url"] == {"value": None, "origin": "default"}


def test_the_table_prints_values_as_typed_not_as_markup(tmp_path):
    config = load_config(str(write(tmp_path / "config.toml", LAYERED)))
    settings = resolve(
        config, "phebi", "lab", {}, {}, env_names("phebi"), builtin_defaults("phebi")
    )
    console = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    console.print(config_cmd.settings_table("phebi", settings, "f.toml", "lab"))
    table = console.export_text()
    assert "[bold]demo[/bold]" in table
    assert "phebi · f.toml · profile lab" in table


def test_a_malformed_file_exits_2_naming_its_line(app, tmp_path):
    path = write(tmp_path / "config.toml", '[melvin]\nurl = "ws://x"\napi_key = \n')
    result = run(app, "show", "--config", str(path))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"streamcli: error: config file {path}: ")
    assert "line 3" in result.stderr
    assert "Traceback" not in result.stderr


def test_secrets_in_a_file_others_can_read_are_warned_about_on_stderr(app, tmp_path):
    path = write(tmp_path / "config.toml", LAYERED, mode=0o644)
    result = run(app, "show", "melvin", "--config", str(path))
    assert result.exit_code == 0
    assert f"streamcli: warning: config file {path} holds secrets" in result.stderr
    assert f"chmod 600 {path}" in result.stderr
    assert "warning" not in result.stdout
    path.chmod(0o600)
    assert run(app, "show", "melvin", "--config", str(path)).stderr == ""


def test_unknown_tables_and_settings_are_warned_about(app, tmp_path):
    text = '[melvn]\nurl = "x"\n\n[vosk]\nurll = "x"\n'
    path = write(tmp_path / "config.toml", text)
    result = run(app, "show", "vosk", "--config", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"streamcli: warning: config file {path}: ignoring [melvn]: not a backend "
        "(melvin, phebi, bodhi, vosk, veridas)",
        "streamcli: warning: config file [vosk]: unknown setting 'urll'",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "nope"], "unknown backend 'nope'"),
        (["show", "--profile", "nope"], "unknown profile 'nope'"),
        (["show", "--config", "/nonexistent/streamcli.toml"], "does not exist"),
    ],
)
def test_bad_usage_exits_2_with_one_line(app, args, message):
    result = run(app, *args)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert message in result.stderr


def test_the_built_in_defaults_are_the_backends_own():
    from streamcli import cli
    from streamcli.backends import bodhi, veridas, vosk

    melvin_url = inspect.signature(cli.melvin).parameters["url"].default
    assert builtin_defaults("melvin")["url"] == melvin_url
    assert builtin_defaults("bodhi")["url"] == bodhi.DEFAULT_URL
    assert builtin_defaults("bodhi")["model"] == bodhi.DEFAULT_MODEL
    assert builtin_defaults("bodhi")["sample_rate"] == bodhi.DEFAULT_SAMPLE_RATE
    assert builtin_defaults("vosk")["url"] == vosk.DEFAULT_URL
    assert builtin_defaults("vosk")["sample_rate"] == vosk.DEFAULT_SAMPLE_RATE
    assert builtin_defaults("veridas")["url"] == veridas.DEFAULT_URL
    assert env_names("melvin") == {"api_key": "MELVIN_API_KEY"}


def _wired() -> bool:
    from streamcli.cli import app

    return any(group.typer_instance.info.name == "config" for group in app.registered_groups)


@pytest.mark.skipif(not _wired(), reason="cli.py does not register the config group yet")
def test_the_real_cli_has_the_config_group(tmp_path):
    path = write(tmp_path / "config.toml", LAYERED)
    done = subprocess.run(
        [sys.executable, "-m", "streamcli", "config", "show", "melvin", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "melvin.url              ws://file:8394  config file" in done.stdout.splitlines()

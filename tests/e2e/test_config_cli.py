"""The config file drives a real run: option > environment > profile > file > default."""

from __future__ import annotations

from .conftest import KEY


def write_config(tmp_path, text: str):
    (tmp_path / "streamcli").mkdir(exist_ok=True)
    path = tmp_path / "streamcli" / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    return {"XDG_CONFIG_HOME": str(tmp_path)}


async def test_the_config_file_gives_url_and_key(cli, melvin, speech_wav, tmp_path):
    env = write_config(tmp_path, f'[melvin]\nurl = "{melvin.url}"\napi_key = "{KEY}"\n')
    r = await cli("melvin", str(speech_wav), "--speed", "8", env=env)
    assert r.code == 0, r.stderr
    assert r.lines == ["Hello streaming world.", "The second sentence ends here."]


async def test_a_profile_overrides_the_file_and_an_option_overrides_the_profile(
    cli, melvin, speech_wav, tmp_path
):
    env = write_config(
        tmp_path,
        f'[melvin]\nurl = "ws://127.0.0.1:1"\napi_key = "{KEY}"\n'
        f'[profiles.lab.melvin]\nurl = "{melvin.url}"\n',
    )
    r = await cli("melvin", str(speech_wav), "--speed", "8", "--profile", "lab", env=env)
    assert r.code == 0, r.stderr
    r = await cli(
        "melvin", str(speech_wav), "--profile", "lab", "--url", "ws://127.0.0.1:1", env=env
    )
    assert r.code == 4 and "ws://127.0.0.1:1/" in r.stderr


async def test_the_environment_key_beats_the_config_key(cli, melvin, speech_wav, tmp_path):
    env = write_config(tmp_path, f'[melvin]\nurl = "{melvin.url}"\napi_key = "wrong"\n')
    r = await cli("melvin", str(speech_wav), "--speed", "8", env={**env, "MELVIN_API_KEY": KEY})
    assert r.code == 0, r.stderr


async def test_a_malformed_config_exits_2_naming_the_line(cli, speech_wav, tmp_path):
    env = write_config(tmp_path, '[melvin]\nurl = "ws://x"\napi_key = \n')
    r = await cli("melvin", str(speech_wav), env=env)
    assert r.code == 2
    (line,) = r.stderr.strip().splitlines()
    assert "line 3" in line


async def test_an_explicit_config_path_and_an_unknown_profile(cli, speech_wav, tmp_path):
    path = tmp_path / "other.toml"
    path.write_text('[profiles.lab.melvin]\nurl = "ws://x:1"\n')
    r = await cli("melvin", str(speech_wav), "--config", str(path), "--profile", "home")
    assert r.code == 2
    assert "unknown profile 'home'" in r.stderr and "lab" in r.stderr

"""``streamcli locustfile``: a ready locustfile for a command line, checked as the command
would check it; credentials typed as options never reach the file."""

from __future__ import annotations

import ast

import pytest

KEY = "melvin-secret-key-0123456789"


@pytest.fixture
def talk(make_wav, speech_wav, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    return speech_wav.name


def user_class(text: str) -> tuple[str, str, list[str]]:
    """(class name, backend, args) of the one class the file defines."""
    tree = ast.parse(text)
    (cls,) = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    values = {
        target.id: ast.literal_eval(node.value)
        for node in cls.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    assert [ast.unparse(b) for b in cls.bases] == ["StreamcliUser"]
    return cls.name, values["backend"], values["args"]


async def test_it_prints_a_locustfile_for_the_command_line(cli, talk):
    r = await cli("locustfile", "melvin", talk, "--url", "ws://127.0.0.1:8394", "--speed", "1.5")
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    name, backend, args = user_class(r.stdout)
    assert (name, backend) == ("MelvinUser", "melvin")
    assert args == [talk, "--url", "ws://127.0.0.1:8394", "--speed", "1.5"]
    assert "from streamcli.locust import StreamcliUser" in r.stdout
    assert "locust -f locustfile.py --headless -u 2000 -r 50 --processes 2" in r.stdout
    assert "MELVIN_API_KEY" in r.stdout  # where the workers' credentials come from


async def test_a_typed_key_is_checked_but_not_written(cli, talk, tmp_path):
    r = await cli(
        "locustfile", "melvin", talk, "--api-key", KEY, "-o", str(tmp_path / "lf.py"), "--quiet"
    )
    assert r.code == 0, r.stderr
    text = (tmp_path / "lf.py").read_text()
    assert KEY not in text + r.stdout + r.stderr
    assert user_class(text)[2] == [talk, "--quiet"]
    assert "--api-key is not written into the locustfile: set MELVIN_API_KEY" in r.stderr
    assert "wrote " in r.stderr and r.stdout == ""


async def test_bodhi_and_vosk_and_phebi(cli, talk):
    env = {"BODHI_API_KEY": "k" * 20, "BODHI_CUSTOMER_ID": "123e4567-e89b-12d3-a456-426614174000"}
    r = await cli("locustfile", "bodhi", talk, "--model", "hi-banking-v2-8khz", env=env)
    assert r.code == 0, r.stderr
    assert user_class(r.stdout)[:2] == ("BodhiUser", "bodhi")
    assert "BODHI_API_KEY" in r.stdout
    r = await cli("locustfile", "vosk", talk, "--url", "ws://127.0.0.1:2700")
    assert r.code == 0, r.stderr
    assert user_class(r.stdout)[:2] == ("VoskUser", "vosk")
    phebi = [talk, "--url", "wss://dev.phebi.ai", "--project", "P", "--session", "s1"]
    r = await cli("locustfile", "phebi", *phebi, env={"PHEBI_SUBSCRIPTION_KEY": "s" * 20})
    assert r.code == 0, r.stderr
    assert user_class(r.stdout)[2] == phebi


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["melvin", "missing.wav"], "missing.wav: no such file"),
        (["melvin", "{talk}", "--mic"], "--mic cannot be combined with a Locust user"),
        (["melvin", "{talk}", "--concurrency", "3"], "--concurrency cannot be combined"),
        (["melvin", "{talk}", "--bogus"], "No such option: --bogus"),
        (["veridas", "{talk}"], "needs a transcription backend"),
        (["melvin", "{talk}", "-o", "lf.txt"], "a locustfile is a Python file (.py)"),
        (["melvin", "notes.txt"], "notes.txt"),
    ],
)
async def test_bad_arguments_are_one_line_and_exit_2(cli, talk, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not audio")
    r = await cli("locustfile", *[a.format(talk=talk) for a in args])
    assert r.code == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamcli: error: "), r.stderr
    assert message in lines[0]
    assert r.stdout == ""

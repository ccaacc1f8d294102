"""``commands.plan``: a backend command line parsed by the command itself into a session plan
(what the Locust users and ``streamcli locustfile`` run), never run."""

from __future__ import annotations

import pytest

from streamcli.backends.bodhi import BodhiBackend
from streamcli.backends.melvin import MelvinBackend
from streamcli.backends.vosk import VoskBackend
from streamcli.cli import app
from streamcli.commands.plan import plan_session, public_args
from streamcli.exit import UsageError

CUSTOMER = "123e4567-e89b-12d3-a456-426614174000"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("MELVIN_API_KEY", "BODHI_API_KEY", "BODHI_CUSTOMER_ID", "PHEBI_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))


def test_a_melvin_command_line_becomes_a_plan_with_its_options():
    plan = plan_session(
        app, "melvin", ["talk.wav", "--url", "ws://h:1", "--speed", "2", "--chunk-ms", "40"]
    )
    assert plan.backend == "melvin"
    assert plan.input.path == "talk.wav" and not plan.input.mic
    assert plan.options.speed == 2.0 and plan.options.chunk_ms == 40
    one, two = plan.make_backend(), plan.make_backend()
    assert isinstance(one, MelvinBackend) and one is not two  # a fresh backend per session
    assert one.connect_request().url.startswith("ws://h:1")
    assert plan.args == ("talk.wav", "--url", "ws://h:1", "--speed", "2", "--chunk-ms", "40")


def test_settings_come_from_the_environment_as_in_the_command(monkeypatch):
    monkeypatch.setenv("BODHI_API_KEY", "env-key-0123456789")
    monkeypatch.setenv("BODHI_CUSTOMER_ID", CUSTOMER)
    plan = plan_session(app, "bodhi", ["call.wav", "--url", "ws://h:2"])
    backend = plan.make_backend()
    assert isinstance(backend, BodhiBackend)
    headers = backend.connect_request().headers
    assert headers["x-api-key"] == "env-key-0123456789" and headers["x-customer-id"] == CUSTOMER


def test_vosk_plan_takes_its_sample_rate():
    plan = plan_session(app, "vosk", ["a.wav", "--url", "ws://h:3", "--sample-rate", "8000"])
    backend = plan.make_backend()
    assert isinstance(backend, VoskBackend) and backend.sample_rate == 8000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a.wav", "b.wav"], "several inputs or a batch option cannot be combined"),
        (["-"], "'-' (stdin): a Locust user streams a file"),
        (["--mic"], "--mic cannot be combined with a Locust user"),
        (["a.wav", "--split-channels"], "--split-channels cannot be combined"),
        (["a.wav", "-o", "x.srt"], "--output cannot be combined"),
        (["a.wav", "--concurrency", "5"], "--concurrency cannot be combined"),
        (["a.wav", "--repeat", "2"], "--repeat cannot be combined"),
        (["a.wav", "--reconnect", "2"], "--reconnect cannot be combined"),
        (["a.wav", "--debug"], "--debug cannot be combined"),
        (["a.wav", "--max-wer", "0.2"], "several inputs or a batch option"),
        ([], "missing INPUT"),
        (["a.wav", "--bogus"], "No such option: --bogus"),
        (["a.wav", "--speed", "-1"], "Invalid value for '--speed'"),
        (["a.wav", "--url", "http://h"], "expected ws://HOST[:PORT] or wss://HOST[:PORT]"),
    ],
)
def test_what_a_locust_user_cannot_do_is_refused_with_one_message(args, message, capsys):
    with pytest.raises(UsageError) as caught:
        plan_session(app, "melvin", args)
    assert message in caught.value.message
    assert capsys.readouterr().err == ""  # the caller reports it, once


def test_only_the_transcription_backends_make_plans():
    with pytest.raises(UsageError, match="transcription backend"):
        plan_session(app, "veridas", ["a.wav"])


def test_a_backend_that_refuses_its_settings_refuses_the_plan():
    with pytest.raises(UsageError) as caught:
        plan_session(app, "bodhi", ["a.wav", "--url", "ws://h:2"])  # no credentials anywhere
    assert "BODHI_API_KEY" in caught.value.message or "api" in caught.value.message.lower()


@pytest.mark.parametrize(
    ("args", "kept", "dropped"),
    [
        (
            ["a.wav", "--api-key", "s3cret", "--speed", "2"],
            ["a.wav", "--speed", "2"],
            ["--api-key"],
        ),
        (["a.wav", "--api-key=s3cret"], ["a.wav"], ["--api-key"]),
        (
            ["a.wav", "--subscription-key", "k", "--url", "wss://x"],
            ["a.wav", "--url", "wss://x"],
            ["--subscription-key"],
        ),
        (["a.wav", "--url", "ws://h"], ["a.wav", "--url", "ws://h"], []),
    ],
)
def test_secret_options_are_taken_out_with_their_values(args, kept, dropped):
    assert public_args(args) == (kept, dropped)

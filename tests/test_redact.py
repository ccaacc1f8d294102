"""What a URL shows and what it hides: passwords and secret-looking query values."""

from __future__ import annotations

import pytest

from streamcli.backends.melvin import MelvinBackend
from streamcli.backends.phebi import live_url
from streamcli.redact import is_secret_param, mask, mask_all, public_url, redact_url, url_secrets


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://user:hunter2@host:8394", "ws://user:…@host:8394"),
        ("ws://user@host/", "ws://user@host/"),
        ("ws://h/?token=abc%2Fdef%2B%3D&lang=en", "ws://h/?token=…&lang=en"),
        (
            "wss://h/x?api_key=ABCDEFGHIJKLMNOP&access_token=zz&key=k1&apiKey=q&sig=s&model=m#f",
            "wss://h/x?api_key=ABCD…&access_token=…&key=…&apiKey=…&sig=…&model=m#f",
        ),
        (
            "http://[::1]:80/?x-api-key=1&monkey=banana",
            "http://[::1]:80/?x-api-key=…&monkey=banana",
        ),
        ("ws://h/?token=&flag", "ws://h/?token=&flag"),
    ],
)
def test_redact_url_masks_the_password_and_secret_query_values_only(url, shown):
    assert redact_url(url) == shown


def test_url_secrets_lists_raw_and_decoded_forms():
    assert url_secrets("ws://u:p%40ss@h/?token=a%2Fb&x=1") == ("p%40ss", "p@ss", "a%2Fb", "a/b")
    assert url_secrets("ws://h/?lang=en&model=x") == ()
    assert url_secrets("not a url") == ()


@pytest.mark.parametrize(
    "name", ["token", "access_token", "api_key", "apikey", "X-Api-Key", "client_secret", "sig"]
)
def test_secret_looking_parameter_names(name):
    assert is_secret_param(name)


@pytest.mark.parametrize("name", ["lang", "model", "monkey", "keyboard", "session", "x"])
def test_plain_parameter_names(name):
    assert not is_secret_param(name)


def test_mask_all_masks_the_longest_secret_whole():
    assert mask_all("a ABCDEFGHIJKLMNOP b ABCD", ("ABCD", "ABCDEFGHIJKLMNOP")) == "a ABCD… b …"
    assert mask("short") == "…"


def test_public_url_drops_user_info_query_and_fragment():
    assert public_url("wss://u:p@h:9/p?token=x#f") == "wss://h:9/p"


def test_a_query_in_the_base_url_stays_the_query():
    assert live_url("ws://h:1/base/?token=abc", "p", "s", "r") == (
        "ws://h:1/base/sockets/live/p/s/r?token=abc"
    )
    request = MelvinBackend("ws://h:8394?token=abc").connect_request()
    assert request.url == "ws://h:8394/?token=abc"
    assert request.all_secrets() == ("abc",)

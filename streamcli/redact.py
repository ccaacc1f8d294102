"""Masking secrets for display: header values, config values, and the secret parts of URLs.

A URL can carry a credential two ways: a password in its user info (``ws://user:pw@host``) and a
secret-looking query parameter (``?token=…``, ``?api_key=…``). ``redact_url`` masks both where a URL
is shown whole (the ``--debug`` trace, ``config show``); ``url_secrets`` lists them (raw and
percent-decoded) so free text -- a server's message, a library's exception -- is masked too.
Standard library only: this is imported on every path.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit, urlunsplit

# Query parameter names whose values are credentials: token, access_token, api_key, apikey,
# key, secret, client_secret, password, sig, signature, auth, authorization, credential...
_SECRET_PARAM = re.compile(
    r"(^|[-_.])(token|key|apikey|secret|password|passwd|pwd|pass|sig|signature|auth"
    r"|authorization|credentials?|jwt)($|[-_.])"
    r"|token|apikey|secret|password|signature|credential",
    re.IGNORECASE,
)


def mask(secret: str) -> str:
    """Enough of a secret to tell two apart, never enough to use: ``abcd…`` or ``…``."""
    return secret[:4] + "…" if len(secret) >= 12 else "…"


def mask_all(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every occurrence of each secret masked."""
    wanted = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not wanted:
        return text
    # One pass, longest first: a secret that contains another is masked whole, and a mask
    # ("abcd…") is never masked again.
    pattern = re.compile("|".join(map(re.escape, wanted)))
    return pattern.sub(lambda m: mask(m.group(0)), text)


def is_secret_param(name: str) -> bool:
    return bool(_SECRET_PARAM.search(name))


def _query_pairs(query: str) -> list[tuple[str, str | None]]:
    """``name=value`` pairs as typed, with the percent-decoded value when it is a secret."""
    pairs: list[tuple[str, str | None]] = []
    for pair in query.split("&"):
        name, sep, value = pair.partition("=")
        secret = sep and value and is_secret_param(unquote(name))
        pairs.append((pair, unquote(value.replace("+", " ")) if secret else None))
    return pairs


def url_secrets(url: str) -> tuple[str, ...]:
    """The password and the secret query values of ``url``, as typed and percent-decoded."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return ()
    found: list[str] = []
    if password:
        found += [password, unquote(password)]
    for pair, decoded in _query_pairs(parts.query):
        if decoded is not None:
            found += [pair.partition("=")[2], decoded, quote(decoded, safe="")]
    return tuple(dict.fromkeys(s for s in found if s))


def public_url(url: str) -> str:
    """``url`` without user info, query or fragment: fit for messages and events."""
    p = urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = p.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((p.scheme, netloc, p.path, "", ""))


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values masked; the rest as it was."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return mask_all(url, url_secrets(url))
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{mask(unquote(password))}@{hostport}"
    query = "&".join(
        pair if decoded is None else f"{pair.partition('=')[0]}={mask(decoded)}"
        for pair, decoded in _query_pairs(parts.query)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

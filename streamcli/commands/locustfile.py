"""``streamcli locustfile BACKEND ARGS``: a ready locustfile for the command line a user runs.

The arguments are checked now, by the backend command itself (``commands.plan``), and the audio
file is opened, so a locustfile that is written also runs. Credentials typed as options are
not written (a locustfile is shared and committed): each worker reads them from its
environment, as the command does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from streamcli import __version__
from streamcli.exit import OutputError, UsageError

TEMPLATE = '''"""Locust load test for: streamcli {command}
(written by streamcli {version}; the arguments are those of `streamcli {backend} --help`).

Run it on one machine:
    locust -f {filename} --headless -u 2000 -r 50 --processes 2 --run-time 10m --csv run
or on many: `locust -f {filename} --master` here, and on each worker machine
    locust -f {filename} --worker --master-host MASTER --processes -1
The audio file must be at the same path on every worker
(relative to where locust starts).{credentials}
Needs: pip install 'streamcli[locust]'
"""

from streamcli.locust import StreamcliUser


class {class_name}(StreamcliUser):
    backend = {backend_repr}
    args = [
{args}
    ]
'''


def render(app: Any, backend: str, args: Sequence[str], filename: str = "locustfile.py") -> str:
    """The locustfile's text, after checking the arguments as the command would."""
    from streamcli.commands.config_cmd import env_names
    from streamcli.commands.plan import check_audio, plan_session, public_args
    from streamcli.config import is_secret

    kept, dropped = public_args(args)
    for option in dropped:
        setting = option.lstrip("-").replace("-", "_")
        variable = env_names(backend).get(setting, "its environment variable")
        print(
            f"streamcli: note: {option} is not written into the locustfile: set {variable} "
            "in the environment of every worker",
            file=sys.stderr,
        )
    plan = plan_session(app, backend, args)  # the arguments as given (a key must be accepted)
    assert plan.input.path is not None  # a plan always has one file
    check_audio(plan.input.path, plan.input.audio_stream)
    variables = [v for k, v in env_names(backend).items() if is_secret(k)]
    credentials = (
        f"\nCredentials come from the environment of every worker: {', '.join(variables)}."
        if variables
        else ""
    )
    return TEMPLATE.format(
        command=_docstring_safe(" ".join([backend, *(_shell(a) for a in kept)])),
        version=__version__,
        backend=backend,
        filename=filename,
        credentials=credentials,
        class_name=backend.capitalize() + "User",
        backend_repr=json.dumps(backend),
        args="\n".join(f"        {json.dumps(a, ensure_ascii=False)}," for a in kept),
    )


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"""')


def _shell(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def write(app: Any, backend: str, args: Sequence[str], output: str | None) -> int:
    text = render(app, backend, args, filename=output or "locustfile.py")
    if output is None:
        sys.stdout.write(text)
        return 0
    if not output.endswith(".py"):
        raise UsageError(f"--output {output}: a locustfile is a Python file (.py)")
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise OutputError(f"{output}: cannot write it ({e.strerror or e})") from None
    print(f"streamcli: wrote {output}: locust -f {output} --headless -u 10 -r 2", file=sys.stderr)
    return 0

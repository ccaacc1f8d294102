"""The locustfile of ``bench/locust_workers.py``: ``streamcli.locust.StreamcliUser`` as shipped,
one session per user against the recording sink. Configured by the environment: ``BENCH_WAV``,
``BENCH_URL``. Each worker prints its frames' pacing lateness at the end (stderr)."""

from __future__ import annotations

import os

from streamcli.locust import StreamcliUser


class OneSession(StreamcliUser):
    backend = "melvin"
    args = (os.environ["BENCH_WAV"], "--url", os.environ["BENCH_URL"], "--no-auth")
    sessions = 1

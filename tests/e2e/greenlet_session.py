"""Run one ``streamcli.locust.GreenletSession`` (the Locust users' session) and print its events
as JSON Lines, then a ``record`` line. A subprocess of ``test_locust_session.py``: Locust
monkey-patches the standard library with gevent, which the test process must not have.

    python greenlet_session.py BACKEND ARGS...
"""

from __future__ import annotations

import locust  # noqa: F401  (first: gevent's monkey-patching)

# isort: split
import json
import sys

from streamcli.exit import StreamcliError
from streamcli.locust import GreenletSession, session_plan, shared_audio
from streamcli.metrics import SessionRecord


def main() -> int:
    backend, *args = sys.argv[1:]
    try:
        plan = session_plan(backend, args)
        session_backend = plan.make_backend()
        audio = shared_audio(plan, session_backend)
    except StreamcliError as e:
        print(json.dumps({"type": "refused", "message": e.message}))
        return 2
    record = SessionRecord(index=0, speed=plan.options.speed)

    def on_event(event, now):  # type: ignore[no-untyped-def]
        record.on_event(event, now)
        print(json.dumps(event.to_dict()), flush=True)

    GreenletSession(plan, audio, record, on_event, session_backend).run()
    lateness = record.lateness.summary()  # type: ignore[attr-defined]
    print(
        json.dumps(
            {
                "type": "record",
                "ok": record.ok,
                "frames": lateness["count"],
                "max_lateness": lateness["max"],
                "audio_seconds": audio.seconds,
                "finals": len(record.final_latencies),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

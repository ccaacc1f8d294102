"""``python -m streamcli`` and the ``streamcli`` console script."""

from __future__ import annotations

import sys


def main() -> None:
    from streamcli import helpcache

    argv = sys.argv[1:]
    if helpcache.wanted(argv):
        if helpcache.replay(argv):  # a help page rendered before, with the same inputs
            sys.exit(0)
        from streamcli.cli import run

        helpcache.record(argv, run)
        return
    if "--mic" in argv:
        from streamcli.audio.mic import prestart, wants_prestart

        mic = wants_prestart(argv)
        if mic is not None:
            prestart(*mic)  # capture from launch: nothing said after Enter is lost
    from streamcli.cli import run

    run()


if __name__ == "__main__":
    main()

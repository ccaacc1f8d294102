"""``python -m streamcli`` and the ``streamcli`` console script."""

from __future__ import annotations


def main() -> None:
    from streamcli.cli import run

    run()


if __name__ == "__main__":
    main()

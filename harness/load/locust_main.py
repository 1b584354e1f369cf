"""`python -m harness.load.locust_main ARGS` = `locust -f <this package's locustfile.py> ARGS`.

For images where the harness is an installed package (its path differs from image to image): the Compose
`locust-master` / `locust-worker` services run this. Locust (and its gevent monkey-patching) is imported first.
"""

from __future__ import annotations

import sys
from pathlib import Path

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


def argv(args: list[str]) -> list[str]:
    """Locust's argv for `args` (the locustfile put first)."""
    return ["locust", "-f", str(LOCUSTFILE), *args]


def main() -> None:
    from locust.main import main as locust_main

    sys.argv = argv(sys.argv[1:])
    locust_main()


if __name__ == "__main__":
    main()

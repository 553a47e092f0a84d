"""A gateway process following a live policy in Redis, for tests/test_live_policy_redis.py.

``python -m tests.live_follower URL KEY``: prints one JSON line per version put
in force (``{"serial": N, "at": unix time}``), and answers ``status`` on stdin
with the LivePolicy's status as one JSON line.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from pinengine import LivePolicy, PinPolicy


def main(url: str, key: str) -> int:
    holder: dict[str, Any] = {}

    def on_update(old: PinPolicy, new: PinPolicy) -> None:
        print(json.dumps({"serial": holder["live"].serial, "at": time.time()}), flush=True)

    live = LivePolicy.from_redis(url, key, interval=0.5, timeout=0.5, on_update=on_update)
    holder["live"] = live
    from pinengine import backend

    print(json.dumps({"serial": live.serial, "at": time.time(), "ready": True, "backend": backend()}), flush=True)
    for line in sys.stdin:
        if line.strip() == "status":
            print(json.dumps({"status": live.status()}), flush=True)
        elif line.strip() == "quit":
            break
    return 0  # the watcher threads are daemons: nothing to wait for


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

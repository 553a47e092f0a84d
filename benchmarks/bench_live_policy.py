"""What a LivePolicy costs on the handshake path, next to the PinPolicy it holds (a plain script).

    python benchmarks/bench_live_policy.py [--rounds 9] [--verifies 20000] [--handshakes 200]

Three contestants, measured in interleaved rounds (A, B, C, A, B, C, ...) so
that drift of a shared machine hits them alike:

- ``PinPolicy``: ``policy.verify(host, chain)``;
- ``LivePolicy``: the same policy inside a LivePolicy (one more attribute read
  and call per decision);
- ``LivePolicy+swaps``: the same, while another thread swaps versions
  (two equal policies, alternately) every millisecond.

Reported per operation: median of the rounds, and the spread (min..max of
the rounds). ``verify`` is the decision alone (the part a swap could slow
down); ``handshake`` is a full TLS 1.3 handshake on loopback through a pinned
``ssl`` context, the cost a client actually sees.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pinengine import LivePolicy, Pin, PinPolicy, backend  # noqa: E402
from pinengine.hooks.ssl import create_pinned_context  # noqa: E402

HOST = "localhost"


def _policy(chain: Any, spare: Any) -> PinPolicy:
    pins = [str(Pin.from_certificate(chain.ders[0])), str(Pin.from_certificate(spare.ders[0]))]
    return PinPolicy.from_mapping({"domains": [{"host": HOST, "pins": pins}]})


class Swapper:
    """Swaps ``live`` between two equal versions every ``period`` seconds until stopped."""

    def __init__(self, live: LivePolicy, versions: list[PinPolicy], period: float = 0.001) -> None:
        self.live, self.versions, self.period = live, versions, period
        self.swaps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.live.update(self.versions[self.swaps % 2])
            self.swaps += 1

    def __enter__(self) -> Swapper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _timed(fn: Callable[[], None], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--verifies", type=int, default=20000, help="verify calls per round")
    parser.add_argument("--handshakes", type=int, default=200, help="TLS handshakes per round")
    args = parser.parse_args(argv)

    from tests.certs import cached_chain, make_chain
    from tests.tls import TLSServer

    chain, spare = cached_chain("p256", HOST), make_chain("p256", HOST)
    plain = _policy(chain, spare)
    live = LivePolicy(_policy(chain, spare))
    swapped = LivePolicy(_policy(chain, spare))
    versions = [_policy(chain, spare), _policy(chain, spare)]
    ders = chain.ders
    for p in (plain, live, swapped, *versions):
        assert p.verify(HOST, ders).status == "match"

    results: dict[tuple[str, str], list[float]] = {}
    swaps = 0
    with TLSServer(chain) as server:
        contexts = {name: create_pinned_context(p, cafile=server.cafile)
                    for name, p in (("PinPolicy", plain), ("LivePolicy", live), ("LivePolicy+swaps", swapped))}
        policies = {"PinPolicy": plain, "LivePolicy": live, "LivePolicy+swaps": swapped}

        def handshake(context: Any) -> Callable[[], None]:
            def go() -> None:
                with socket.create_connection(("127.0.0.1", server.port)) as raw, \
                        context.wrap_socket(raw, server_hostname=HOST):
                    pass
            return go

        for _ in range(args.rounds):
            for name, policy in policies.items():
                def verify(p: PinPolicy = policy) -> None:
                    p.verify(HOST, ders)

                if name.endswith("swaps"):
                    with Swapper(swapped, versions) as s:
                        v = _timed(verify, args.verifies)
                        h = _timed(handshake(contexts[name]), args.handshakes)
                    swaps += s.swaps
                else:
                    v = _timed(verify, args.verifies)
                    h = _timed(handshake(contexts[name]), args.handshakes)
                results.setdefault(("verify", name), []).append(v)
                results.setdefault(("handshake", name), []).append(h)

    print(f"backend {backend()}, Python {sys.version.split()[0]}, {args.rounds} interleaved rounds; "
          f"{swaps} swaps during the swapping rounds")
    print(f"{'operation':<10} {'policy':<18} {'median':>10} {'spread (min..max)':>24} {'vs PinPolicy':>13}")
    for op, unit, scale in (("verify", "us", 1e6), ("handshake", "us", 1e6)):
        base = statistics.median(results[(op, "PinPolicy")])
        for name in ("PinPolicy", "LivePolicy", "LivePolicy+swaps"):
            values = results[(op, name)]
            med = statistics.median(values)
            print(f"{op:<10} {name:<18} {med * scale:>8.2f}{unit} "
                  f"{min(values) * scale:>10.2f}..{max(values) * scale:<10.2f}{unit} {med / base:>12.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Measures calls to the host (`rpc`) through the test suite's fake host.

    python3 backends/core/guest/tests/bench_rpc.py [rounds]

Times, inside the guest, 50 proxy calls made together with `asyncio.gather` (the host
answering each at once, and holding all 50 before answering them in reverse order), 50
awaited one after the other, and 50 synchronous calls; and the first run that loads two
servers. `MCP_GUEST_COMMAND` (a JSON list) replaces the interpreter as in the tests, e.g.
to measure a WASI runtime. The fake host is Python in this process, so these are upper
bounds for the guest's side.
"""

from __future__ import annotations

import statistics
import sys
import time

from test_runtime import GUEST_COMMAND, FakeHost, Guest

TIMED = "t0 = time.perf_counter()\n{body}\nprint((time.perf_counter() - t0) * 1000)"
GATHER = "await asyncio.gather(*(mcp_time.get_current_time(timezone='UTC') for _ in range(50)))"
AWAITED = "for _ in range(50):\n    await mcp_time.get_current_time(timezone='UTC')"
SYNC = "for _ in range(50):\n    memory_exists('x')"


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    guest = Guest(catalogue=FakeHost.CATALOGUE)
    started = time.perf_counter()
    guest.ok("pass", ["time", "My-Server 2"])
    first_load = time.perf_counter() - started
    guest.ok("import asyncio, time", ["time"])
    timings: dict[str, list[float]] = {"gather": [], "held": [], "awaited": [], "sync": []}
    for _ in range(rounds):
        for name, body in (("gather", GATHER), ("held", GATHER), ("awaited", AWAITED),
                           ("sync", SYNC)):
            if name == "held":
                guest.host.hold(50)
            result = guest.ok(TIMED.format(body=body), ["time"])
            timings[name].append(float(result["stdout"]))
    guest.close()
    ms = lambda values: f"{statistics.median(values):6.1f} ms"  # noqa: E731
    print(f"command: {' '.join(GUEST_COMMAND)}   ({rounds} rounds, medians)")
    print(f"first run loading 2 servers (2 list_tools), round trip: {first_load * 1000:6.1f} ms")
    print(f"50 calls, asyncio.gather, answered at once:        {ms(timings['gather'])}")
    print(f"50 calls, asyncio.gather, all held, then reversed: {ms(timings['held'])}")
    print(f"50 calls awaited one after the other:              {ms(timings['awaited'])}")
    print(f"50 synchronous calls (memory_exists):              {ms(timings['sync'])}")


if __name__ == "__main__":
    main()

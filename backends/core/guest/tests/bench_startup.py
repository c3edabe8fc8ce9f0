"""Measures guest start-up: process start to the `ready` frame, and to a first result.

    python3 backends/core/guest/tests/bench_startup.py [runs]

Compares against the bare interpreter (`-I -S -c pass`), for the runtime sent as source
(`S`) and as bytecode (`M`, compiled once by the guest interpreter, as the host does).
`MCP_GUEST_COMMAND` (a JSON list) replaces the interpreter as in the tests, e.g. to measure
a WASI runtime.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from test_runtime import COMPILE_RUNTIME, GUEST_COMMAND, INTERPRETER_ARGS, RUNTIME, Guest


def bare_interpreter() -> float:
    started = time.perf_counter()
    subprocess.run([*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", "pass"], check=True)
    return time.perf_counter() - started


def compiled_runtime() -> bytes:
    return subprocess.run(
        [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", COMPILE_RUNTIME],
        input=RUNTIME,
        capture_output=True,
        check=True,
    ).stdout


def session(runtime: bytes) -> tuple[float, float, float]:
    guest = Guest(runtime=runtime)
    ready = guest.ready_after
    guest.ok("x = 1")
    first_run = time.perf_counter() - guest.started
    guest.ok("import asyncio\nawait asyncio.sleep(0)")
    first_await = time.perf_counter() - guest.started
    guest.close()
    return ready, first_run, first_await


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    payloads = {"source (S)": b"S" + RUNTIME, "bytecode (M)": b"M" + compiled_runtime()}
    for runtime in payloads.values():
        session(runtime)  # warm caches
    bare = [bare_interpreter() for _ in range(runs)]
    ms = lambda values: f"{statistics.median(values) * 1000:7.1f} ms"  # noqa: E731
    print(f"command: {' '.join(GUEST_COMMAND)}   ({runs} runs, medians)")
    print(f"bare interpreter ({' '.join(INTERPRETER_ARGS)} -c pass): {ms(bare)}")
    for name, runtime in payloads.items():
        sessions = [session(runtime) for _ in range(runs)]
        print(f"runtime as {name}:")
        print(f"  process start -> ready:             {ms([s[0] for s in sessions])}")
        print(f"    ... -> first result (x = 1):      {ms([s[1] for s in sessions])}")
        print(f"    ... -> first top-level await:     {ms([s[2] for s in sessions])}")


if __name__ == "__main__":
    main()

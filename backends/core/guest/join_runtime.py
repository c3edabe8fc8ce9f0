"""Joins the guest runtime's parts (`runtime/`, in the order `runtime/ORDER` gives) into the
one source that sessions load, exactly as `backends/core/build.rs` does for the host.

    python3 backends/core/guest/join_runtime.py > /tmp/runtime.py

The tests and benchmarks in `tests/` load the runtime through `runtime_source()`.
"""

from __future__ import annotations

import sys
from pathlib import Path

PARTS_DIR = Path(__file__).resolve().parent / "runtime"
SEPARATOR = b"\n\n"  # two blank lines between parts: each part ends with one newline


def part_names(order: str) -> list[str]:
    """The part file names `ORDER` lists, in order (empty and `#` lines skipped)."""
    names = []
    for line in order.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.append(line)
    return names


def runtime_source(parts_dir: Path = PARTS_DIR) -> bytes:
    """The joined runtime, as UTF-8 bytes. Fails if `ORDER` and the `.py` files disagree."""
    names = part_names((parts_dir / "ORDER").read_text(encoding="utf-8"))
    present = sorted(path.name for path in parts_dir.glob("*.py"))
    if sorted(names) != present or len(set(names)) != len(names):
        raise ValueError(
            f"{parts_dir / 'ORDER'} must list each .py file there once:"
            f" lists {names}, found {present}"
        )
    return SEPARATOR.join((parts_dir / name).read_bytes() for name in names)


if __name__ == "__main__":
    sys.stdout.buffer.write(runtime_source())

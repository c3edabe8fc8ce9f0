"""Pack an already built server binary into the wheel `pyproject.toml` describes.

`pip wheel .` or `uv build` builds the wheel from source through maturin (`bindings =
"bin"`). This script makes the same wheel from a binary that is already built, the release
build the test suite runs, so what `uvx` and `pipx` install is exactly what was tested and
nothing is compiled twice: maturin writes the metadata (`pep517 write-dist-info`), and the
binary, stripped of its symbol table, goes in as the wheel's one script.

    python3 deploy/wheel.py --binary target/release/mcp-server-code-execution-mode --out dist
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = "mcp-server-code-execution-mode"


def digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def dist_info(maturin: str, into: Path) -> Path:
    """The `.dist-info` directory maturin writes for pyproject.toml (METADATA, WHEEL)."""
    subprocess.run(
        [maturin, "pep517", "write-dist-info", "--metadata-directory", str(into)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    (found,) = into.glob("*.dist-info")
    return found


def stripped(binary: Path, work: Path) -> Path:
    """A copy of `binary` without its symbol table (the release profile keeps symbols for
    backtraces; an installed command does not need them)."""
    copy = work / SCRIPT
    shutil.copyfile(binary, copy)
    strip = shutil.which("strip")
    if strip:
        subprocess.run([strip, "--strip-all", str(copy)], check=True)
    else:
        print("wheel: no `strip` (binutils); the binary goes in with its symbols", file=sys.stderr)
    return copy


def pack(binary: Path, out: Path, maturin: str) -> Path:
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        info = dist_info(maturin, work / "meta")
        name_version = info.name.removesuffix(".dist-info")
        wheel_text = (info / "WHEEL").read_text()
        tags = [line.split(": ", 1)[1] for line in wheel_text.splitlines() if line.startswith("Tag: ")]
        if len(tags) != 1:
            raise SystemExit(f"wheel: expected one tag in WHEEL, found {tags}")
        out.mkdir(parents=True, exist_ok=True)
        wheel = out / f"{name_version}-{tags[0]}.whl"
        members: list[tuple[str, bytes, int]] = [
            (f"{name_version}.data/scripts/{SCRIPT}", stripped(binary, work).read_bytes(), 0o755),
        ]
        for path in sorted(info.rglob("*")):
            if path.is_file():
                members.append((f"{info.name}/{path.relative_to(info).as_posix()}", path.read_bytes(), 0o644))
        record_name = f"{info.name}/RECORD"
        record = "".join(f"{name},{digest(data)},{len(data)}\n" for name, data, _ in members)
        record += f"{record_name},,\n"
        members.append((record_name, record.encode(), 0o644))
        partial = wheel.with_suffix(".part")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, data, mode in members:
                entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                entry.external_attr = (0o100000 | mode) << 16
                entry.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(entry, data)
        os.replace(partial, wheel)
        return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", type=Path, required=True, help="the built server binary")
    parser.add_argument("--out", type=Path, required=True, help="directory for the wheel")
    parser.add_argument("--maturin", default=shutil.which("maturin") or "maturin")
    args = parser.parse_args()
    wheel = pack(args.binary, args.out, args.maturin)
    print(wheel)


if __name__ == "__main__":
    main()

"""Tests of the guest runtime through its real protocol (backends/core/docs/frames.md).

Run from the repository root:
    python3 -m unittest discover -s backends/core/guest/tests -t backends/core/guest

Each test starts the interpreter exactly as a backend does (`python -I -S -c BOOTSTRAP`),
sends the runtime frame (`S` + source; one test sends `M` + bytecode) and `hello`, and talks
frames. `MCP_GUEST_COMMAND` (a JSON list) replaces the interpreter, e.g. to run the guest
under a WASI runtime or another CPython; tests that need POSIX signals or subprocesses skip
themselves on WASI.
"""

from __future__ import annotations

import ast
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent.parent
BOOTSTRAP = (GUEST_DIR / "bootstrap.py").read_text(encoding="utf-8")
RUNTIME = (GUEST_DIR / "runtime.py").read_bytes()
GUEST_COMMAND: list[str] = json.loads(os.environ.get("MCP_GUEST_COMMAND", "null")) or [
    sys.executable
]
INTERPRETER_ARGS = ["-I", "-S"]  # as backends/core/src/guest.rs passes them
# What the host runs once to precompile the runtime (guest.rs: COMPILE_RUNTIME_SOURCE).
COMPILE_RUNTIME = (
    "import sys, marshal\n"
    "sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.buffer.read().decode(),"
    " '<mcp-runtime>', 'exec')))"
)
MARKER_PREFIX = b"\x00\x1bMCPB"
CATALOGUE = [
    {"name": "github", "alias": "github", "description": "GitHub issues and pull requests"},
    {"name": "my-files", "alias": "my_files", "description": "A file server"},
]
TIMEOUT = float(os.environ.get("MCP_GUEST_TIMEOUT", "60"))


def host_frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


_bare_modules: list[set[str]] = []


def bare_interpreter_modules() -> set[str]:
    """The modules the guest interpreter has loaded before it runs anything."""
    if not _bare_modules:
        proc = subprocess.run(
            [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", "import sys; print(sorted(sys.modules))"],
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        )
        _bare_modules.append(set(ast.literal_eval(proc.stdout.decode())))
    return _bare_modules[0]


class Guest:
    """The host side of one guest session, for tests: frames in, frames and stray bytes out."""

    def __init__(
        self,
        output_limit: int = 64 * 1024,
        catalogue: list | None = None,
        runtime: bytes = b"S" + RUNTIME,
    ) -> None:
        self.nonce = secrets.token_hex(16)
        self.marker = MARKER_PREFIX + self.nonce.encode() + b"\x1f"
        self.output_limit = output_limit
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", BOOTSTRAP],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.frames: queue.Queue = queue.Queue()
        self.payload_sizes: list[int] = []
        self._stray = bytearray()
        self._stderr = bytearray()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.send_raw(host_frame(runtime))
        self.send(
            {
                "type": "hello",
                "nonce": self.nonce,
                "catalogue": CATALOGUE if catalogue is None else catalogue,
                "output_limit": output_limit,
                "state": {},
            }
        )
        self.ready = self.next_frame()
        self.ready_after = time.perf_counter() - self.started
        self.next_id = 1

    # -- host -> guest
    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, frame: dict) -> None:
        self.send_raw(host_frame(json.dumps(frame).encode()))

    def run(self, code: str, servers: list[str] | None = None) -> dict:
        run_id = self.next_id
        self.next_id += 1
        self.send(
            {"type": "run", "id": run_id, "code": code, "servers": servers or [], "timeout_ms": 1}
        )
        result = self.next_frame()
        assert result["type"] == "result" and result["id"] == run_id, result
        return result

    def ok(self, code: str) -> dict:
        """Runs code that must not fail; returns the result."""
        result = self.run(code)
        if result["error"] is not None:
            raise AssertionError(f"run failed: {result['error']}\nstderr: {result['stderr']}")
        return result

    def value(self, expression: str) -> object:
        """Evaluates an expression in the session, through print(repr(...))."""
        return ast.literal_eval(self.ok(f"print(repr({expression}))")["stdout"])

    # -- guest -> host
    def next_frame(self, timeout: float = TIMEOUT) -> dict:
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame within {timeout}s; stderr: {self.stderr()!r}")
        if frame is None:
            raise AssertionError(f"guest output closed; stderr: {self.stderr()!r}")
        return frame

    def take_stray(self) -> bytes:
        with self._lock:
            data = bytes(self._stray)
            self._stray.clear()
        return data

    def stderr(self) -> bytes:
        with self._lock:
            return bytes(self._stderr)

    def stderr_containing(self, text: bytes, timeout: float = 5) -> bytes:
        """stderr once it contains `text` (fd 2 is read by its own thread), or as it is."""
        deadline = time.monotonic() + timeout
        while text not in (data := self.stderr()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return data

    def _read_stdout(self) -> None:
        pending = bytearray()
        fd = self.proc.stdout.fileno()
        while chunk := os.read(fd, 1 << 16):
            pending += chunk
            self._scan(pending)
        self.frames.put(None)

    def _scan(self, pending: bytearray) -> None:
        while True:
            start = pending.find(self.marker)
            if start < 0:
                safe = max(len(pending) - len(self.marker) + 1, 0)
                self._add_stray(pending[:safe])
                del pending[:safe]
                return
            self._add_stray(pending[:start])
            del pending[:start]
            header = len(self.marker) + 4
            if len(pending) < header:
                return
            size = int.from_bytes(pending[len(self.marker) : header], "big")
            if len(pending) < header + size:
                return
            payload = bytes(pending[header : header + size])
            del pending[: header + size]
            self.payload_sizes.append(size)
            self.frames.put(json.loads(payload.decode("utf-8")))

    def _add_stray(self, data: bytes | bytearray) -> None:
        with self._lock:
            self._stray += data

    def _read_stderr(self) -> None:
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 1 << 16):
            with self._lock:
                self._stderr += chunk

    def close(self) -> int:
        """Closes stdin (end of input) and returns the exit status."""
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            for thread in self._threads:
                thread.join(timeout=5)
            self.proc.stdout.close()
            self.proc.stderr.close()


class GuestTestCase(unittest.TestCase):
    output_limit = 64 * 1024

    @classmethod
    def setUpClass(cls) -> None:
        cls.guest = Guest(output_limit=cls.output_limit)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.guest.close()

    def assertTracebackIsClean(self, traceback: str) -> None:
        for runtime_trace in ("<mcp-runtime>", "runtime.py", 'File "<string>"', "asyncio"):
            self.assertNotIn(runtime_trace, traceback)


class StartupTest(unittest.TestCase):
    def test_ready_reports_python_and_implementation(self) -> None:
        guest = Guest()
        try:
            ready = guest.ready
            self.assertEqual(ready["type"], "ready")
            self.assertRegex(ready["python"], r"^3\.\d+\.\d+")
            self.assertTrue(ready["implementation"].startswith("cpython-"))
            expected = guest.value("__import__('sys').implementation.name + '-' + __import__('sys').platform")
            self.assertEqual(ready["implementation"], expected)
        finally:
            self.assertEqual(guest.close(), 0)

    def test_end_of_input_exits_zero(self) -> None:
        guest = Guest()
        guest.ok("x = 1")
        self.assertEqual(guest.close(), 0)

    def test_end_of_input_before_the_runtime_exits_zero(self) -> None:
        proc = subprocess.run(
            [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", BOOTSTRAP],
            input=b"",
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_precompiled_runtime(self) -> None:
        # The guest's own interpreter compiles it, as the host does: marshal is version-bound.
        compiled = subprocess.run(
            [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", COMPILE_RUNTIME],
            input=RUNTIME,
            capture_output=True,
            timeout=TIMEOUT,
            check=True,
        ).stdout
        guest = Guest(runtime=b"M" + compiled)
        try:
            self.assertEqual(guest.ready["type"], "ready")
            self.assertEqual(guest.ok("print(6 * 7)")["stdout"], "42\n")
            error = guest.run("def f():\n    return 1 / 0\nf()")["error"]
            self.assertEqual(error["type"], "ZeroDivisionError")
            self.assertIn("return 1 / 0", error["traceback"])
            self.assertNotIn("<mcp-runtime>", error["traceback"])
        finally:
            self.assertEqual(guest.close(), 0)

    def test_unknown_runtime_tag_fails_loudly(self) -> None:
        proc = subprocess.run(
            [*GUEST_COMMAND, *INTERPRETER_ARGS, "-c", BOOTSTRAP],
            input=host_frame(RUNTIME),  # untagged
            capture_output=True,
            timeout=TIMEOUT,
        )
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b"unknown runtime tag", proc.stderr)

    def test_start_up_imports_little(self) -> None:
        guest = Guest()
        try:  # what the runtime imported up to `ready` and in a first successful run
            imported = set(guest.value("sorted(__import__('sys').modules)"))
            imported -= bare_interpreter_modules()
            self.assertLessEqual(
                imported, {"__mcp_runtime__", "mcp", "mcp.runtime", "_json", "_sitebuiltins"}
            )
        finally:
            guest.close()

    def test_malformed_and_unknown_frames_are_skipped(self) -> None:
        guest = Guest()
        try:
            guest.send_raw(host_frame(b"not json"))
            guest.send_raw(host_frame(b"\xff\xfe"))
            guest.send({"type": "mystery"})
            guest.send({"type": "run", "id": "seven", "code": "pass"})
            guest.send([1, 2])
            self.assertEqual(guest.ok("print('still here')")["stdout"], "still here\n")
            diagnostic = b"mcp-runtime: ignored a host frame"
            self.assertIn(diagnostic, guest.stderr_containing(diagnostic))
        finally:
            self.assertEqual(guest.close(), 0)


class SessionTest(GuestTestCase):
    def test_globals_persist_across_runs(self) -> None:
        self.guest.ok("import math\ncounter = 41\ndef bump(n):\n    return n + 1")
        self.assertEqual(self.guest.ok("print(bump(counter), math.pi > 3)")["stdout"], "42 True\n")

    def test_user_globals_start_clean(self) -> None:
        guest = Guest()
        try:
            names = guest.value("sorted(globals())")
            self.assertEqual(
                names,
                ["__builtins__", "__doc__", "__loader__", "__name__", "__package__", "__spec__"],
            )
            self.assertEqual(guest.value("__name__"), "__main__")
            self.assertEqual(guest.value("__builtins__ is __import__('builtins')"), True)
        finally:
            guest.close()

    def test_user_classes_pickle_through_main(self) -> None:
        self.guest.ok(
            "import pickle, dataclasses\n"
            "@dataclasses.dataclass\n"
            "class Point:\n"
            "    x: int\n"
            "    y: 'int'\n"
            "restored = pickle.loads(pickle.dumps(Point(1, 2)))"
        )
        self.assertEqual(self.guest.ok("print(restored)")["stdout"], "Point(x=1, y=2)\n")

    def test_result_fields(self) -> None:
        result = self.guest.ok("print('out'); import sys; print('err', file=sys.stderr)")
        self.assertEqual(
            set(result),
            {
                "type", "id", "stdout", "stderr", "stdout_cut", "stderr_cut",
                "stdout_cut_at", "stderr_cut_at", "error", "duration_ms",
            },
        )
        self.assertEqual((result["stdout"], result["stderr"]), ("out\n", "err\n"))
        self.assertEqual((result["stdout_cut"], result["stderr_cut"]), (0, 0))
        self.assertIsNone(result["stdout_cut_at"])
        self.assertIsInstance(result["duration_ms"], float)

    def test_input_sees_end_of_file(self) -> None:
        result = self.guest.run("input('prompt> ')")
        self.assertEqual(result["error"]["type"], "EOFError")
        self.assertEqual(result["stdout"], "prompt> ")
        self.assertEqual(self.guest.value("__import__('sys').stdin.read()"), "")
        self.assertEqual(self.guest.value("__import__('sys').__stdin__.read()"), "")

    def test_stdout_replaced_by_user_code_is_restored(self) -> None:
        self.guest.ok("import io, sys\nsys.stdout = io.StringIO()\nprint('hidden')")
        self.assertEqual(self.guest.ok("print('visible')")["stdout"], "visible\n")

    def test_logging_handler_from_an_earlier_run_still_captures(self) -> None:
        self.guest.ok("import logging\nlogging.basicConfig(format='%(levelname)s %(message)s')")
        result = self.guest.ok("logging.warning('later run')")
        self.assertEqual(result["stderr"], "WARNING later run\n")

    def test_closed_or_detached_stdout_is_reopened_next_run(self) -> None:
        result = self.guest.run("import sys\nprint('before')\nsys.stdout.close()")
        self.assertEqual(result["stdout"], "before\n")
        self.assertEqual(self.guest.ok("print('again')")["stdout"], "again\n")
        self.guest.run("import sys\nsys.stdout.detach()")
        self.assertEqual(self.guest.ok("print('and again')")["stdout"], "and again\n")

    def test_future_imports_do_not_leak_between_runs(self) -> None:
        self.guest.ok("from __future__ import annotations\ndef f(x: undefined_name): pass")
        result = self.guest.run("def g(x: undefined_name): pass")
        self.assertEqual(result["error"]["type"], "NameError")


class AsyncTest(GuestTestCase):
    def test_top_level_await_with_gather_and_sleep(self) -> None:
        result = self.guest.ok(
            "import asyncio, time\n"
            "async def job(n):\n"
            "    await asyncio.sleep(0.2)\n"
            "    return n * 2\n"
            "t0 = time.monotonic()\n"
            "values = await asyncio.gather(*(job(n) for n in range(5)))\n"
            "print(values, time.monotonic() - t0 < 0.9)"
        )
        self.assertEqual(result["stdout"], "[0, 2, 4, 6, 8] True\n")

    def test_loop_objects_survive_between_runs(self) -> None:
        self.guest.ok(
            "import asyncio\n"
            "queue = asyncio.Queue()\n"
            "await queue.put('first')\n"
            "async def later():\n"
            "    await asyncio.sleep(0.05)\n"
            "    return 'task result'\n"
            "task = asyncio.create_task(later())"
        )
        result = self.guest.ok("print(await queue.get(), await task)")
        self.assertEqual(result["stdout"], "first task result\n")

    def test_timeouts_and_cancellation(self) -> None:
        result = self.guest.ok(
            "import asyncio\n"
            "try:\n"
            "    await asyncio.wait_for(asyncio.sleep(10), 0.05)\n"
            "except TimeoutError:\n"
            "    print('timed out')\n"
            "async def forever():\n"
            "    await asyncio.sleep(10)\n"
            "t = asyncio.ensure_future(forever())\n"
            "await asyncio.sleep(0)\n"
            "t.cancel()\n"
            "try:\n"
            "    await t\n"
            "except asyncio.CancelledError:\n"
            "    print('cancelled')\n"
            "if hasattr(asyncio, 'timeout'):\n"
            "    try:\n"
            "        async with asyncio.timeout(0.05):\n"
            "            await asyncio.sleep(10)\n"
            "    except TimeoutError:\n"
            "        print('timeout block')"
        )
        self.assertEqual(result["stdout"], "timed out\ncancelled\ntimeout block\n")

    def test_asyncio_run_in_synchronous_code(self) -> None:
        result = self.guest.ok(
            "import asyncio\n"
            "async def main():\n"
            "    await asyncio.sleep(0.01)\n"
            "    return 'ran'\n"
            "print(asyncio.run(main()))"
        )
        self.assertEqual(result["stdout"], "ran\n")
        self.assertEqual(self.guest.ok("await asyncio.sleep(0); print('ok')")["stdout"], "ok\n")

    def test_errors_in_coroutines_show_user_frames_only(self) -> None:
        result = self.guest.run("import asyncio\nawait asyncio.sleep(0)\n1 / 0")
        self.assertEqual(result["error"]["type"], "ZeroDivisionError")
        self.assertIn("1 / 0", result["error"]["traceback"])
        self.assertTracebackIsClean(result["error"]["traceback"])

    def test_system_exit_and_interrupt_in_coroutines(self) -> None:
        result = self.guest.run("import asyncio, sys\nawait asyncio.sleep(0)\nsys.exit(4)")
        self.assertEqual((result["error"]["type"], result["error"]["message"]), ("SystemExit", "4"))
        result = self.guest.run("await asyncio.sleep(0)\nraise KeyboardInterrupt")
        self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
        self.assertEqual(self.guest.ok("await asyncio.sleep(0); print('alive')")["stdout"], "alive\n")


class ErrorTest(GuestTestCase):
    def test_traceback_shows_user_lines_only(self) -> None:
        first = self.guest.ok("def inner(x):\n    return 10 // x\n")
        self.assertIsNone(first["error"])
        result = self.guest.run("value = 0\nanswer = inner(value)\n")
        error = result["error"]
        self.assertEqual(error["type"], "ZeroDivisionError")
        self.assertEqual(error["message"], "integer division or modulo by zero")
        traceback = error["traceback"]
        self.assertTrue(traceback.startswith("Traceback (most recent call last):\n"), traceback)
        self.assertIn('File "<run-', traceback)
        self.assertIn("answer = inner(value)", traceback)
        self.assertIn("return 10 // x", traceback)
        self.assertTrue(traceback.endswith("ZeroDivisionError: integer division or modulo by zero\n"))
        self.assertTracebackIsClean(traceback)

    def test_library_frames_called_by_user_code_are_kept(self) -> None:
        result = self.guest.run("import json\njson.loads('{')")
        traceback = result["error"]["traceback"]
        self.assertEqual(result["error"]["type"], "json.decoder.JSONDecodeError")
        self.assertIn("json.loads('{')", traceback)
        self.assertIn("decoder.py", traceback)
        self.assertTracebackIsClean(traceback)

    def test_chained_exceptions(self) -> None:
        result = self.guest.run(
            "try:\n    {}['missing']\nexcept KeyError as e:\n    raise ValueError('bad') from e"
        )
        traceback = result["error"]["traceback"]
        self.assertIn("KeyError: 'missing'", traceback)
        self.assertIn("direct cause", traceback)
        self.assertTracebackIsClean(traceback)

    def test_syntax_error_shows_line_and_caret(self) -> None:
        result = self.guest.run("x = 1\ny = (2 +\n")
        error = result["error"]
        self.assertEqual(error["type"], "SyntaxError")
        self.assertIn('File "<run-', error["traceback"])
        self.assertIn("y = (2 +", error["traceback"])
        self.assertIn("^", error["traceback"])
        self.assertTracebackIsClean(error["traceback"])
        self.assertEqual(self.guest.value("1 + 1"), 2)

    def test_system_exit_ends_the_run_not_the_session(self) -> None:
        result = self.guest.run("import sys\nprint('before')\nsys.exit(3)\nprint('after')")
        self.assertEqual(result["stdout"], "before\n")
        self.assertEqual((result["error"]["type"], result["error"]["message"]), ("SystemExit", "3"))
        result = self.guest.run("exit()")
        self.assertEqual((result["error"]["type"], result["error"]["message"]), ("SystemExit", ""))
        result = self.guest.run("raise SystemExit('bye')")
        self.assertEqual(result["error"]["message"], "bye")
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_site_builtins_without_site(self) -> None:
        self.assertEqual(self.guest.value("__import__('sys').flags.no_site"), 1)
        result = self.guest.ok("help(len)")
        self.assertIn("len(", result["stdout"])
        self.assertIn("Return the number of items", result["stdout"])
        self.assertEqual(
            self.guest.value("(repr(exit), repr(quit))"),
            ("Use exit() or Ctrl-D (i.e. EOF) to exit", "Use quit() or Ctrl-D (i.e. EOF) to exit"),
        )
        self.assertIn("Python Software Foundation", self.guest.value("repr(copyright)"))
        self.assertIn("CWI", self.guest.value("repr(credits)"))
        self.assertIn("license", self.guest.value("repr(license)"))
        for call in ("exit()", "quit(5)", "exit('bye')"):
            result = self.guest.run(f"print('before')\n{call}\nprint('after')")
            self.assertEqual(result["stdout"], "before\n")
            self.assertEqual(result["error"]["type"], "SystemExit")
        self.assertEqual(result["error"]["message"], "bye")
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_keyboard_interrupt_ends_the_run_not_the_session(self) -> None:
        result = self.guest.run("raise KeyboardInterrupt")
        self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
        self.assertTracebackIsClean(result["error"]["traceback"])
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_other_base_exceptions_and_hostile_errors(self) -> None:
        result = self.guest.run("raise GeneratorExit('odd')")
        self.assertEqual(result["error"]["type"], "GeneratorExit")
        result = self.guest.run(
            "class Nasty(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\n"
            "raise Nasty()"
        )
        self.assertEqual(result["error"]["type"], "Nasty")
        result = self.guest.run("raise ValueError('\\ud800 lone surrogate ' + 'x' * 100000)")
        self.assertEqual(result["error"]["type"], "ValueError")
        self.assertLess(len(result["error"]["message"].encode()), 20 * 1024)
        self.assertIn("bytes cut", result["error"]["message"])
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_mcp_error_from_helpers(self) -> None:
        result = self.guest.run("import mcp.runtime as runtime\nruntime.describe_server('nope')")
        error = result["error"]
        self.assertEqual(error["type"], "mcp.MCPError")
        self.assertIn("'nope'", error["message"])
        self.assertIn("github, my-files", error["message"])
        self.assertIn("runtime.describe_server('nope')", error["traceback"])
        self.assertTracebackIsClean(error["traceback"])

    def test_inspect_sees_user_source(self) -> None:
        self.guest.ok("def shown():\n    return 'source'\n")
        self.assertIn("return 'source'", self.guest.value("__import__('inspect').getsource(shown)"))

    def test_sources_reach_linecache_when_it_is_imported(self) -> None:
        guest = Guest()  # the runtime imports linecache only when it formats an error
        try:
            guest.ok("def early():\n    return 'early source'\n")
            result = guest.ok(
                "import sys\n"
                "print('linecache' in sys.modules)\n"
                "def same_run():\n    return 'same-run source'\n"
                "import inspect\n"
                "print(inspect.getsource(early), inspect.getsource(same_run))"
            )
            if "linecache" not in bare_interpreter_modules():  # 3.13 loads it itself
                self.assertTrue(result["stdout"].startswith("False\n"), result["stdout"])
            self.assertIn("return 'early source'", result["stdout"])
            self.assertIn("return 'same-run source'", result["stdout"])
            result = guest.ok(
                "def later():\n    return 'later source'\n"
                "print(inspect.getsource(later))\n"
                "import warnings\nwarnings.warn('careful')"
            )
            self.assertIn("return 'later source'", result["stdout"])
            self.assertIn("warnings.warn('careful')", result["stderr"])
            guest.ok("def boom():\n    raise ValueError('late')")
            guest.ok("import linecache\nlinecache.clearcache()")
            error = guest.run("boom()")["error"]
            self.assertIn("raise ValueError('late')", error["traceback"])
        finally:
            guest.close()


class OutputTest(GuestTestCase):
    def test_large_output_keeps_head_and_tail(self) -> None:
        limit = self.output_limit
        result = self.guest.ok(
            "import sys\n"
            "data = ''.join(f'{i:07d}\\n' for i in range(655360))\n"  # 5 MiB
            "sys.stdout.write(data)\n"
            "sys.stderr.write(data[:100000])"
        )
        total = 655360 * 8
        stdout = result["stdout"].encode()
        self.assertEqual(len(stdout), limit)
        self.assertEqual(result["stdout_cut"], total - limit)
        self.assertEqual(result["stdout_cut_at"], limit * 3 // 4)
        expected = "".join(f"{i:07d}\n" for i in range(655360)).encode()
        self.assertEqual(stdout[: limit * 3 // 4], expected[: limit * 3 // 4])
        self.assertEqual(stdout[limit * 3 // 4 :], expected[-(limit // 4) :])
        self.assertEqual(result["stderr_cut"], 100000 - limit)
        self.assertEqual(len(result["stderr"].encode()), limit)

    def test_print_of_five_megabytes(self) -> None:
        result = self.guest.ok("print('a' * (5 * 1024 * 1024 - 1) + 'Z')")
        self.assertEqual(result["stdout_cut"], 5 * 1024 * 1024 + 1 - self.output_limit)
        self.assertTrue(result["stdout"].startswith("aaaa"))
        self.assertTrue(result["stdout"].endswith("aZ\n"))

    def test_many_short_lines_are_fast(self) -> None:
        started = time.perf_counter()
        result = self.guest.ok("for i in range(100000):\n    print(i)")
        elapsed = time.perf_counter() - started
        self.assertTrue(result["stdout"].endswith("99999\n"))
        self.assertGreater(result["stdout_cut"], 0)
        self.assertLess(result["duration_ms"], 5000)
        print(f"\n  100k prints: {result['duration_ms']:.0f} ms in the guest, "
              f"{elapsed * 1000:.0f} ms round trip", file=sys.stderr)

    def test_unicode_is_counted_in_bytes(self) -> None:
        result = self.guest.ok("print('é' * 10, end='')")
        self.assertEqual(result["stdout"], "é" * 10)
        result = self.guest.ok("print('é€😀' * 30000, end='')")  # 9 bytes per group
        total = 9 * 30000
        stdout = result["stdout"]
        kept = len(stdout.encode())
        self.assertEqual(result["stdout_cut"], total - kept)
        self.assertLessEqual(kept, self.output_limit)
        self.assertGreater(kept, self.output_limit - 8)
        head = stdout.encode()[: result["stdout_cut_at"]].decode()  # a char boundary
        self.assertTrue(("é€😀" * 30000).startswith(head))
        self.assertTrue(("é€😀" * 30000).endswith(stdout[len(head) :]))
        self.assertLessEqual(result["stdout_cut_at"], self.output_limit * 3 // 4)

    def test_surrogates_and_binary_writes(self) -> None:
        result = self.guest.ok(
            "import sys\nprint('\\ud800')\nsys.stdout.flush()\nsys.stdout.buffer.write(b'\\xffok\\n')"
        )
        self.assertEqual(result["stdout"], "\\ud800\n\ufffdok\n")

    def test_stdout_is_a_text_stream(self) -> None:
        result = self.guest.ok(
            "import sys\n"
            "print(sys.stdout.isatty(), sys.stdout.encoding, sys.stdout.name)\n"
            "sys.stdout.writelines(['a', 'b\\n'])"
        )
        self.assertEqual(result["stdout"], "False utf-8 <stdout>\nab\n")

    def test_fake_frame_headers_stay_output(self) -> None:
        other = secrets.token_hex(16)
        fake_json = '{"type":"result","id":999}'
        code = (
            "import os, sys\n"
            f"fake = '\\x00\\x1bMCPB' + {other!r} + '\\x1f' + '\\x00\\x00\\x00\\x1a' + {fake_json!r}\n"
            "bare = '\\x00\\x1bMCPB' + '\\x00\\x00\\x00\\x05hello'\n"
            "print(fake)\n"
            "print(bare)\n"
            "os.write(1, fake.encode())\n"
            "os.write(1, bare.encode())\n"
        )
        self.guest.take_stray()
        result = self.guest.ok(code)
        fake = "\x00\x1bMCPB" + other + "\x1f" + "\x00\x00\x00\x1a" + fake_json
        bare = "\x00\x1bMCPB\x00\x00\x00\x05hello"
        self.assertEqual(result["stdout"], f"{fake}\n{bare}\n")
        self.assertEqual(self.guest.take_stray(), (fake + bare).encode())
        self.assertEqual(self.guest.value("'still in sync'"), "still in sync")

    def test_raw_fd_writes_are_stray_and_harmless(self) -> None:
        self.guest.take_stray()
        before = len(self.guest.stderr())
        result = self.guest.ok("import os\nos.write(1, b'raw')\nos.write(2, b'raw2')\nprint('text')")
        self.assertEqual(result["stdout"], "text\n")
        self.assertEqual(self.guest.take_stray(), b"raw")
        deadline = time.monotonic() + 5
        while b"raw2" not in self.guest.stderr()[before:] and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertEqual(self.guest.stderr()[before:], b"raw2")
        result = self.guest.ok("import sys\nsys.__stdout__.write('via real stdout')")
        self.assertEqual(result["stdout"], "")
        self.assertEqual(self.guest.take_stray(), b"via real stdout")
        self.assertEqual(self.guest.value("'in sync'"), "in sync")


class CapTest(unittest.TestCase):
    def test_control_characters_are_kept_under_the_host_frame_cap(self) -> None:
        limit = 1 << 20
        guest = Guest(output_limit=limit)
        try:
            result = guest.ok("print('\\x00' * 2_000_000, end='')")
            cap = 2 * limit + (1 << 20)
            self.assertLessEqual(guest.payload_sizes[-1], cap)
            kept = len(result["stdout"].encode())
            self.assertEqual(kept + result["stdout_cut"], 2_000_000)
            self.assertLessEqual(result["stdout_cut_at"], kept)
            self.assertEqual(guest.value("'fine'"), "fine")
        finally:
            guest.close()

    def test_tiny_and_zero_limits(self) -> None:
        for limit in (0, 1, 5):
            guest = Guest(output_limit=limit)
            try:
                result = guest.ok("print('hello world')")
                self.assertLessEqual(len(result["stdout"].encode()), limit)
                self.assertEqual(len(result["stdout"].encode()) + result["stdout_cut"], 12)
            finally:
                guest.close()


class McpModuleTest(GuestTestCase):
    def test_discovered_servers(self) -> None:
        self.assertEqual(
            self.guest.value("__import__('mcp.runtime').runtime.discovered_servers()"),
            ("github", "my-files"),
        )
        result = self.guest.ok(
            "import mcp.runtime as runtime\nprint(runtime.discovered_servers(detailed=True))"
        )
        self.assertEqual(
            result["stdout"],
            str(tuple({"name": e["name"], "description": e["description"]} for e in CATALOGUE))
            + "\n",
        )

    def test_from_mcp_import_runtime(self) -> None:
        result = self.guest.ok(
            "from mcp import runtime\nimport mcp\n"
            "print(runtime is mcp.runtime, mcp.MCPError is runtime.MCPError,"
            " issubclass(mcp.MCPError, RuntimeError))"
        )
        self.assertEqual(result["stdout"], "True True True\n")

    def test_capability_summary(self) -> None:
        summary = self.guest.value("__import__('mcp.runtime').runtime.capability_summary()")
        self.assertIsInstance(summary, str)
        self.assertIn("await", summary)
        self.assertIn("mcp_<alias>", summary)
        self.assertIn("/workspace", summary)
        self.assertLess(len(summary.splitlines()), 25)

    def test_servers_and_description(self) -> None:
        result = self.guest.ok(
            "import mcp.runtime as runtime\n"
            "print(runtime.list_servers_sync(), await runtime.list_servers())\n"
            "print(runtime.describe_server('my_files')['name'])"
        )
        self.assertEqual(result["stdout"], "() ()\nmy-files\n")

    def test_mcp_is_not_preimported(self) -> None:
        guest = Guest()
        try:
            self.assertEqual(guest.value("'mcp' in globals()"), False)
        finally:
            guest.close()


class InterruptTest(GuestTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        if cls.guest.ready["implementation"].endswith(("-wasi", "-emscripten")):
            cls.guest.close()
            raise unittest.SkipTest("needs POSIX signals and subprocesses")

    def interrupt_during(self, code: str) -> dict:
        run_id = self.guest.next_id
        self.guest.next_id += 1
        self.guest.send({"type": "run", "id": run_id, "code": code, "servers": [], "timeout_ms": 1})
        time.sleep(0.5)
        self.guest.proc.send_signal(signal.SIGINT)
        result = self.guest.next_frame()
        self.assertEqual(result["id"], run_id)
        return result

    def test_sigint_interrupts_synchronous_code(self) -> None:
        result = self.interrupt_during("import time\nprint('start', flush=True)\ntime.sleep(30)")
        self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
        self.assertIn("time.sleep(30)", result["error"]["traceback"])
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_sigint_cancels_a_coroutine(self) -> None:
        result = self.interrupt_during("import asyncio\nawait asyncio.sleep(30)")
        self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
        self.assertEqual(self.guest.ok("await asyncio.sleep(0.01); print('ok')")["stdout"], "ok\n")

    def test_sigint_between_runs_is_ignored(self) -> None:
        self.guest.proc.send_signal(signal.SIGINT)
        time.sleep(0.2)
        self.assertEqual(self.guest.value("'alive'"), "alive")

    def test_child_processes_see_empty_stdin(self) -> None:
        result = self.guest.ok(
            "import subprocess, sys\n"
            "child = subprocess.run([sys.executable, '-c', 'import sys; print(repr(sys.stdin.read()))'],"
            " capture_output=True, text=True, timeout=20)\n"
            "print(child.stdout.strip())"
        )
        self.assertEqual(result["stdout"], "''\n")


if __name__ == "__main__":
    unittest.main()

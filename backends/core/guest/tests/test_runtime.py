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
import base64
import json
import os
import queue
import runpy
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

GUEST_DIR = Path(__file__).resolve().parent.parent
BOOTSTRAP = (GUEST_DIR / "bootstrap.py").read_text(encoding="utf-8")
# The runtime as sessions get it: its parts (`runtime/`) joined as `runtime/ORDER` says.
RUNTIME: bytes = runpy.run_path(str(GUEST_DIR / "join_runtime.py"))["runtime_source"]()
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


def alias_of(name: str, taken: object = (), keyword_suffix: bool = False) -> str:
    """REFERENCE §5's alias rule, as the host applies it."""
    import keyword
    import re

    alias = re.sub(r"[^a-z0-9_]+", "_", name.lower()) or "_"
    if alias[0].isdigit():
        alias = "_" + alias
    if keyword_suffix and keyword.iskeyword(alias):
        alias += "_"
    base, number = alias, 2
    while alias in taken:
        alias, number = f"{base}_{number}", number + 1
    return alias


def text_result(text: str, **extra: object) -> dict:
    return {"content": [{"type": "text", "text": text}], **extra}


class FakeHost:
    """The host's side of `rpc` (frames.md, "Calls to the host"), for tests.

    Knows a few servers with realistic tool records, checks every call as the host does
    (run id, unique ids, the run's servers), records the calls, and answers at once, or,
    after `hold(n)`, keeps answers back until `n` calls (other than `list_tools`) came and
    then answers them all in reverse order.
    """

    TIME_TOOLS = [
        {
            "name": "get_current_time",
            "description": "Get current time in a specific timezone.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "timezone": {
                        "type": "string",
                        "description": "IANA timezone name (e.g. 'America/New_York',"
                        " 'Europe/London'). Use 'UTC' if no timezone provided.",
                    }
                },
                "required": ["timezone"],
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "timezone": {"type": "string"},
                    "datetime": {"type": "string"},
                    "is_dst": {"type": "boolean"},
                },
            },
        },
        {
            "name": "convert_time",
            "description": "Convert time between timezones.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "source_timezone": {"type": "string", "description": "Source IANA timezone."},
                    "time": {"type": "string", "description": "Time to convert in 24-hour format (HH:MM)"},
                    "target_timezone": {"type": "string", "description": "Target IANA timezone."},
                },
                "required": ["source_timezone", "time", "target_timezone"],
            },
        },
    ]
    ODD_TOOLS = [
        {
            "name": "class",
            "description": "Books a class.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "user-id": {"type": "integer", "description": "Who books."},
                    "from": {"type": "string", "description": "Start date (YYYY-MM-DD)."},
                    "mode": {"type": "string", "enum": ["fast", "slow"], "default": "fast"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "ratio": {"type": ["number", "null"]},
                },
                "required": ["from"],
            },
        },
        {
            "name": "echo",
            "description": "Echoes its arguments as JSON text.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "text": {"type": "string"},
                    "times": {"type": "integer", "default": 1},
                    "flag": {"type": "boolean"},
                    "data": {"type": "object"},
                },
                "required": ["text"],
            },
        },
        {"name": "plain", "description": "Plain text.", "inputSchema": {"type": "object"}},
        {"name": "multi", "description": "Two texts.", "inputSchema": {"type": "object"}},
        {"name": "mixed", "description": "Text and image.", "inputSchema": {"type": "object"}},
        {"name": "fail", "description": "Always fails.", "inputSchema": {"type": "object"}},
        {"name": "list_tools", "description": "A tool named like the method.", "inputSchema": {}},
    ]
    SERVERS = {"time": TIME_TOOLS, "My-Server 2": ODD_TOOLS, "github": []}
    CATALOGUE = [
        {"name": "time", "alias": "time", "description": "Time and timezone conversion"},
        {"name": "My-Server 2", "alias": "my_server_2", "description": "Odd names"},
        {"name": "github", "alias": "github", "description": "GitHub"},
    ]

    def __init__(self) -> None:
        self.calls: list[dict] = []  # every rpc frame, in arrival order
        self.saved: list[dict] = []
        self.memory: dict[str, object] = {}
        self.installs: list[dict] = []
        self.run_id: int | None = None
        self.servers: list[str] = []
        self.seen_ids: set[int] = set()
        self.held: list[dict] = []
        self.hold_count = 0
        self.list_tools_calls = 0
        self.catalogue: list[dict] = self.CATALOGUE
        self.session = "default"  # the session the runs belong to, for checkpoints
        self.checkpoints: dict[str, bytes] = {}  # checkpoint payloads by session
        self.upload: tuple[str, bytearray] | None = None
        self.restore_failed: list[str] | None = None

    def hold(self, count: int) -> None:
        self.hold_count = count

    def begin(self, run_id: int, servers: list[str]) -> None:
        self.run_id, self.servers = run_id, servers

    def on_rpc(self, guest: "Guest", frame: dict) -> None:
        assert frame["run"] == self.run_id, frame
        assert isinstance(frame["id"], int) and frame["id"] not in self.seen_ids, frame
        self.seen_ids.add(frame["id"])
        self.calls.append(frame)
        if self.hold_count and frame["method"] != "list_tools":
            self.held.append(frame)
            if len(self.held) < self.hold_count:
                return
            held, self.held, self.hold_count = self.held, [], 0
            for frame in reversed(held):
                guest.send(self.answer(frame))
            return
        guest.send(self.answer(frame))

    def answer(self, frame: dict) -> dict:
        try:
            result = getattr(self, "do_" + frame["method"])(**frame["params"])
        except HostError as error:
            return {"type": "rpc_result", "id": frame["id"],
                    "error": {"message": error.args[0], "kind": error.kind}}
        return {"type": "rpc_result", "id": frame["id"], "result": result}

    def records(self, server: str) -> list[dict]:
        taken: set[str] = set()
        records = []
        for tool in self.SERVERS[server]:
            alias = alias_of(tool["name"], taken, keyword_suffix=True)
            taken.add(alias)
            records.append({**tool, "alias": alias})
        return records

    def allowed(self, server: str) -> None:
        if server not in self.SERVERS:
            raise HostError(f"unknown MCP server {server!r}", "unknown_server")
        if server not in self.servers:
            raise HostError(f"server {server!r} is not loaded in this run", "not_allowed")

    def do_list_tools(self, server: str) -> list:
        self.allowed(server)
        self.list_tools_calls += 1
        return self.records(server)

    def do_call_tool(self, server: str, tool: str, arguments: dict) -> dict:
        self.allowed(server)
        if tool not in {t["name"] for t in self.SERVERS[server]}:
            raise HostError(f"unknown tool {tool!r}", "unknown_tool")
        if tool == "get_current_time":
            data = {"timezone": arguments["timezone"], "datetime": "2026-01-01T12:00:00",
                    "is_dst": False}
            return text_result(json.dumps(data), structuredContent=data)
        if tool == "convert_time":
            return text_result(json.dumps({"source": arguments["time"], "difference": "+1.0h"}))
        if tool in ("echo", "class", "list_tools"):
            return text_result(json.dumps({"tool": tool, "arguments": arguments}))
        if tool == "plain":
            return text_result("hello world")
        if tool == "multi":
            return {"content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
        if tool == "mixed":
            image = {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}
            return {"content": [{"type": "text", "text": "see image"}, image]}
        return text_result("boom: bad input", isError=True)

    def docs(self, server: str, tool: dict, detail: str) -> dict:
        record = {"server": server, "serverAlias": alias_of(server), "tool": tool["name"],
                  "toolAlias": tool["alias"], "description": tool["description"]}
        if detail == "full":
            record["inputSchema"] = tool["inputSchema"]
        return record

    def do_query_tool_docs(self, server: str, detail: str, tool: str | None = None) -> object:
        if server not in self.SERVERS:
            raise HostError(f"unknown MCP server {server!r}", "unknown_server")
        records = [self.docs(server, t, detail) for t in self.records(server)]
        if tool is None:
            return records
        for record in records:
            if record["tool"] == tool:
                return record
        raise HostError(f"unknown tool {tool!r} of {server!r}", "unknown_tool")

    def do_search_tool_docs(self, query: str, limit: int, detail: str) -> list:
        assert 1 <= limit <= 20, limit
        words = query.lower().split()
        scored = []
        for server in self.SERVERS:
            for tool in self.records(server):
                text = f"{server} {tool['name']} {tool['description']}".lower()
                score = sum(word in text for word in words)
                if score:
                    scored.append((-score, self.docs(server, tool, detail)))
        return [record for _, record in sorted(scored, key=lambda x: x[0])][:limit]

    def do_describe_servers(self, servers: list | None = None) -> list:
        known = {entry["name"]: entry for entry in self.catalogue}
        for name in servers or ():
            if name not in known:
                raise HostError(f"unknown MCP server {name!r}", "unknown_server")
        # The host describes a server the hello left without a description from what the
        # server says about itself.
        return [
            {**entry, "description": entry["description"] or f"{entry['name']} 1.0, 0 tools"}
            for entry in self.catalogue
            if servers is None or entry["name"] in servers
        ]

    def do_save_tool(self, name: str, source: str) -> None:
        self.saved.append({"name": name, "source": source})
        return None

    def do_memory(self, op: str, key: str | None = None, value: object = None) -> object:
        if op == "save":
            self.memory[key] = value
            return None
        if op == "load":
            if key not in self.memory:
                raise HostError(f"no memory named {key!r}", "not_found")
            return self.memory[key]
        if op == "delete":
            return self.memory.pop(key, None) is not None
        if op == "list":
            return sorted(self.memory)
        if op == "exists":
            return key in self.memory
        return {"keys": len(self.memory), "bytes": len(json.dumps(self.memory)),
                "path": "/state/memory.json"}

    CHECKPOINT_LIMIT = 1 << 20

    def do_checkpoint_begin(self, session: str | None) -> dict:
        self.upload = (session or self.session, bytearray())
        return {"limit": self.CHECKPOINT_LIMIT}

    def do_checkpoint_chunk(self, offset: int, data: str) -> None:
        assert self.upload is not None and offset == len(self.upload[1]), offset
        self.upload[1].extend(base64.b64decode(data))

    def do_checkpoint_commit(self, **params: object) -> dict:
        session, payload = self.upload
        assert len(payload) == params["bytes"], (len(payload), params)
        self.checkpoints[session] = bytes(payload)
        self.upload = None
        return {"session": session, **params, "at": "2026-12-07T00:00:00Z"}

    def do_restore_begin(self) -> dict:
        return {"bytes": len(self.checkpoints[self.session])}

    def do_restore_chunk(self, offset: int) -> dict:
        chunk = self.checkpoints[self.session][offset : offset + 1000]  # many small chunks
        return {"data": base64.b64encode(chunk).decode()}

    def do_restore_done(self, failed: list) -> None:
        self.restore_failed = failed

    def do_install(self, requirements: list, python: str, machine: object, libc: object,
                   provided: list) -> dict:
        self.installs.append({"requirements": requirements, "python": python,
                              "machine": machine, "libc": libc, "provided": provided})
        if requirements == ["nope"]:
            raise HostError("cannot install `nope`: no such project on the package index",
                            "not_found")
        path = "/elsewhere/1" if requirements == ["stray"] else "/mnt/1"
        return {"path": path, "installed": [{"name": "humanize", "version": "4.17.0"}],
                "provided": ["pip 23.2.1"]}


class HostError(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


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


# The manual the host sends in `hello` (rendered from src/mcp/capabilities.md).
MANUAL = "# the manual\n\nUse `await r.search_tool_docs(q)`.\n"


class Guest:
    """The host side of one guest session, for tests: frames in, frames and stray bytes out."""

    def __init__(
        self,
        output_limit: int = 64 * 1024,
        catalogue: list | None = None,
        runtime: bytes = b"S" + RUNTIME,
        host: FakeHost | None = None,
        env: dict[str, str] | None = None,
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
            env=None if env is None else {**os.environ, **env},
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
                "manual": MANUAL,
                "state": {},
            }
        )
        self.ready = self.next_frame()
        self.ready_after = time.perf_counter() - self.started
        self.next_id = 1
        self.host = host or FakeHost()
        self.host.seen_ids = set()  # call ids are per guest
        self.outputs: list[dict] = []
        self.host.catalogue = CATALOGUE if catalogue is None else catalogue

    # -- host -> guest
    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, frame: dict) -> None:
        self.send_raw(host_frame(json.dumps(frame).encode()))

    def run(
        self,
        code: str,
        servers: list[str] | None = None,
        saved_tools: str | None = None,
        keep_output: bool = False,
        action: str | None = None,
    ) -> dict:
        """Runs code (or the runtime `action`), answering the guest's rpc frames with `self.host` meanwhile; `output`
        frames go to `self.outputs`."""
        run_id = self.next_id
        self.next_id += 1
        servers = servers or []
        aliases: set[str] = set()
        named = []
        for name in servers:
            aliases.add(alias := alias_of(name, aliases))
            named.append({"name": name, "alias": alias})
        frame = {"type": "run", "id": run_id, "code": code, "servers": named, "timeout_ms": 1}
        if saved_tools is not None:
            frame["saved_tools"] = saved_tools
        if keep_output:
            frame["keep_output"] = True
        if action is not None:
            frame["action"] = action
        self.host.begin(run_id, servers)
        self.outputs = []
        self.send(frame)
        while (result := self.next_frame())["type"] in ("rpc", "output"):
            if result["type"] == "output":
                self.outputs.append(result)
            else:
                self.host.on_rpc(self, result)
        assert result["type"] == "result" and result["id"] == run_id, result
        return result

    def ok(self, code: str, servers: list[str] | None = None, **options: object) -> dict:
        """Runs code that must not fail; returns the result."""
        result = self.run(code, servers, **options)
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
                "stdout_cut_at", "stderr_cut_at", "error", "duration_ms", "files",
                "stdout_saved", "stderr_saved",
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

    def test_context_variables_last_across_runs(self) -> None:
        self.guest.ok(
            "import asyncio, contextvars\n"
            "var = contextvars.ContextVar('var', default='unset')\n"
            "await asyncio.sleep(0)\n"
            "var.set('set in the first run')"
        )
        result = self.guest.ok("await asyncio.sleep(0)\nprint(var.get())")
        self.assertEqual(result["stdout"], "set in the first run\n")

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

    def test_a_missing_module_says_what_to_do_next(self) -> None:
        error = self.guest.run("import surely_not_a_module_xyz.sub")["error"]
        self.assertEqual(error["type"], "ModuleNotFoundError")
        self.assertIn("not in this sandbox's interpreter", error["message"])
        self.assertIn("await mcp.runtime.install('surely_not_a_module_xyz')", error["message"])
        self.assertIn("mcp.runtime.install", error["traceback"].splitlines()[-1])
        self.assertTracebackIsClean(error["traceback"])

    def test_a_missing_module_is_named_by_its_distribution(self) -> None:
        error = self.guest.run(
            "import sys\nsys.modules['sklearn'] = None\nimport sklearn"
        )["error"]
        # A module set to None in sys.modules is "not found" without any search.
        self.assertEqual(error["type"], "ModuleNotFoundError")
        self.assertIn("install('scikit-learn')", error["message"])

    def test_a_plain_name_error_gets_no_note(self) -> None:
        error = self.guest.run("undefined_name_here")["error"]
        self.assertEqual(error["message"], "name 'undefined_name_here' is not defined")

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
            "sys.stdout.write(data)"
        )
        total = 655360 * 8
        stdout = result["stdout"].encode()
        self.assertEqual(len(stdout), limit)
        self.assertEqual(result["stdout_cut"], total - limit)
        self.assertEqual(result["stdout_cut_at"], limit * 3 // 4)
        expected = "".join(f"{i:07d}\n" for i in range(655360)).encode()
        self.assertEqual(stdout[: limit * 3 // 4], expected[: limit * 3 // 4])
        self.assertEqual(stdout[limit * 3 // 4 :], expected[-(limit // 4) :])

    def test_both_streams_share_the_limit(self) -> None:
        limit = self.output_limit
        # A stream within half the limit keeps everything; the other gets the rest.
        result = self.guest.ok(
            f"import sys\nsys.stdout.write('o' * {limit})\nsys.stderr.write('e' * {limit // 4})"
        )
        self.assertEqual(result["stderr"], "e" * (limit // 4))
        self.assertEqual(result["stderr_cut"], 0)
        self.assertEqual(len(result["stdout"]) + result["stdout_cut"], limit)
        self.assertEqual(len(result["stdout"]), limit - limit // 4)
        # Two large streams get half each, head and end kept, every cut byte counted.
        result = self.guest.ok(
            f"import sys\nsys.stdout.write('a' * {limit} + 'A')\n"
            f"sys.stderr.write('b' * {3 * limit} + 'B')"
        )
        for stream, size, last in (("stdout", limit + 1, "A"), ("stderr", 3 * limit + 1, "B")):
            self.assertEqual(len(result[stream]), limit // 2, stream)
            self.assertTrue(result[stream].endswith(last), stream)
            self.assertEqual(len(result[stream]) + result[f"{stream}_cut"], size, stream)
            self.assertLessEqual(result[f"{stream}_cut_at"], limit // 2, stream)

    def test_a_silent_run_after_a_cut_one_comes_back_empty_and_saves_nothing(self) -> None:
        cut = self.guest.ok(f"print('x' * {2 * self.output_limit})")
        self.assertGreater(cut["stdout_cut"], 0)
        silent = self.guest.ok("pass")
        for stream in ("stdout", "stderr"):
            self.assertEqual(silent[stream], "", stream)
            self.assertEqual(silent[f"{stream}_cut"], 0, stream)
            self.assertIsNone(silent[f"{stream}_cut_at"], stream)
            self.assertIsNone(silent.get(f"{stream}_saved"), stream)

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

    def test_kept_output_reaches_the_host_as_it_is_written(self) -> None:
        """With `keep_output` (backends that stop a run only by killing it), what the run
        wrote is on the host before the run ends: here it never ends, and is killed. The
        head of the output goes at once, whatever the code does next."""
        for then in ("time.sleep(60)", "while True:\n    [str(i) for i in range(100)]"):
            with self.subTest(then=then):
                self._keep_then_kill(then)

    def _keep_then_kill(self, then: str) -> None:
        guest = Guest(output_limit=4096)
        try:
            code = (
                "import sys, time\nfor i in range(40):\n    print(f'step {i}')\n"
                f"sys.stderr.write('warned\\n')\n{then}"
            )
            guest.send(
                {"type": "run", "id": 1, "code": code, "servers": [], "timeout_ms": 1,
                 "keep_output": True}
            )
            got = {"stdout": "", "stderr": ""}
            while "step 39\n" not in got["stdout"] or "warned" not in got["stderr"]:
                frame = guest.next_frame()
                self.assertEqual((frame["type"], frame["skipped"]), ("output", 0), frame)
                got[frame["stream"]] += frame["text"]
            self.assertEqual(got["stdout"], "".join(f"step {i}\n" for i in range(40)))
            self.assertEqual(got["stderr"], "warned\n")
        finally:
            guest.proc.kill()  # the deadline's kill
            guest.close()

    def test_kept_output_sends_the_head_then_the_latest_with_a_count(self) -> None:
        guest = Guest(output_limit=4096)  # 3072 bytes of head, 1024 of latest text
        try:
            lines = "".join(f"{i:07d}\n" for i in range(10000))
            result = guest.ok(f"print({lines!r}, end='')", keep_output=True)
            sent = "".join(f["text"] for f in guest.outputs if f["stream"] == "stdout")
            skipped = sum(f["skipped"] for f in guest.outputs)
            self.assertTrue(sent.startswith(lines[:3072]))
            self.assertTrue(lines.endswith(sent[3072:]))
            self.assertEqual(len(sent) + skipped, len(lines) - self._pending(lines, sent))
            self.assertEqual(result["stdout_cut"], len(lines) - 4096)  # the result as ever
        finally:
            guest.close()

    @staticmethod
    def _pending(lines: str, sent: str) -> int:
        """Bytes written after the last frame: the result carries them, no frame does."""
        return len(lines) - lines.rindex(sent[-16:]) - 16

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
            cap = 2 * limit + (7 << 20)
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


class EgressForwarderTest(unittest.TestCase):
    """The loopback address the proxy variables name, passed on to the proxy's socket."""

    def setUp(self) -> None:
        import socket
        import tempfile

        self.dir = tempfile.mkdtemp()
        self.socket_path = os.path.join(self.dir, "egress.sock")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]

    def tearDown(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def guest(self) -> Guest:
        return Guest(
            env={
                "MCP_BRIDGE_EGRESS_SOCKET": self.socket_path,
                "MCP_BRIDGE_EGRESS_LISTEN": f"127.0.0.1:{self.port}",
            }
        )

    def test_connections_reach_the_socket_both_ways_and_end_cleanly(self) -> None:
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(self.socket_path)
        server.listen(8)

        def answer() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    data = b""
                    while not data.endswith(b"\n"):
                        data += conn.recv(100)
                    conn.sendall(b"upper:" + data.upper())
                    conn.shutdown(socket.SHUT_WR)
                    self.assertEqual(conn.recv(10), b"")  # the sandbox's side ended too

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        guest = self.guest()
        try:
            code = f"""
import socket
def ask(text):
    with socket.create_connection(("127.0.0.1", {self.port}), timeout=5) as s:
        s.sendall(text)
        got = b""
        while chunk := s.recv(100):
            got += chunk
        return got
print(ask(b"first\\n"), ask(b"second" * 20000 + b"\\n")[:20])
"""
            result = guest.ok(code)
            self.assertEqual(result["stdout"], "b'upper:FIRST\\n' b'upper:SECONDSECONDSE'\n")
            thread.join(5)
            self.assertFalse(thread.is_alive())
        finally:
            guest.close()
            server.close()

    def test_many_connections_carry_large_streams_both_ways_at_once(self) -> None:
        import socket

        server = socket.socket(socket.AF_UNIX)
        server.bind(self.socket_path)
        server.listen(64)
        size = 32 << 20

        def echo(conn: socket.socket) -> None:
            # Reads and writes at once, so both directions are full while the other runs.
            with conn:
                total = 0
                while chunk := conn.recv(1 << 16):
                    conn.sendall(chunk)
                    total += len(chunk)
                conn.shutdown(socket.SHUT_WR)

        def serve() -> None:
            for _ in range(8):
                conn, _ = server.accept()
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        guest = self.guest()
        try:
            code = f"""
import socket, threading, hashlib, time
def one(seed, results):
    data = hashlib.sha256(bytes([seed])).digest() * ({size} // 32)
    with socket.create_connection(("127.0.0.1", {self.port}), timeout=30) as s:
        def send():
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        t = threading.Thread(target=send)
        t.start()
        time.sleep(0.3)  # every buffer on the way fills: the forwarder must hold back
        got = bytearray()
        while chunk := s.recv(1 << 16):
            got += chunk
        t.join()
    results[seed] = got == data
results = {{}}
threads = [threading.Thread(target=one, args=(i, results)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print(sorted(results.items()))
"""
            result = guest.ok(code)
            self.assertEqual(result["stdout"], str([(i, True) for i in range(8)]) + "\n")
            guest.close(); print("FLUSHES", bytes(guest._stderr).count(b"FLUSH"))
        finally:
            guest.close()
            server.close()

    def test_an_unreachable_socket_closes_the_connection_and_says_so(self) -> None:
        guest = self.guest()
        try:
            code = f"""
import socket
with socket.create_connection(("127.0.0.1", {self.port}), timeout=5) as s:
    s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    try:
        got = s.recv(100)
    except ConnectionResetError:  # closed with the request unread
        got = b""
    print(repr(got))
"""
            self.assertEqual(guest.ok(code)["stdout"], "b''\n")
            guest.close()
            self.assertIn(b"network proxy's socket cannot be reached", bytes(guest._stderr))
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

    def test_descriptions_come_from_the_host(self) -> None:
        # The hello knew no description for `git`; the host describes it when asked.
        guest = Guest(catalogue=[{"name": "git", "alias": "git", "description": ""}, CATALOGUE[0]])
        try:
            result = guest.ok(
                "import mcp.runtime as runtime\n"
                "print(runtime.discovered_servers(detailed=True))\n"
                "print(runtime.describe_server('git')['description'])\n"
                "print(runtime.discovered_servers())"
            )
            described = ({"name": "git", "description": "git 1.0, 0 tools"},
                         {"name": "github", "description": CATALOGUE[0]["description"]})
            self.assertEqual(
                result["stdout"].splitlines(),
                [str(described), "git 1.0, 0 tools", "('git', 'github')"],
            )
            methods = [call["method"] for call in guest.host.calls]
            self.assertEqual(methods, ["describe_servers", "describe_servers"])
            self.assertEqual(guest.host.calls[1]["params"], {"servers": ["git"]})
        finally:
            guest.close()

    def test_from_mcp_import_runtime(self) -> None:
        result = self.guest.ok(
            "from mcp import runtime\nimport mcp\n"
            "print(runtime is mcp.runtime, mcp.MCPError is runtime.MCPError,"
            " issubclass(mcp.MCPError, RuntimeError))"
        )
        self.assertEqual(result["stdout"], "True True True\n")

    def test_capability_summary_is_the_hosts_manual(self) -> None:
        summary = self.guest.value("__import__('mcp.runtime').runtime.capability_summary()")
        self.assertEqual(summary, MANUAL)

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


class ProxyTest(unittest.TestCase):
    """MCP proxies over `rpc`, against FakeHost (one session for the class)."""

    @classmethod
    def setUpClass(cls) -> None:
        cls.guest = Guest(catalogue=FakeHost.CATALOGUE)
        cls.host = cls.guest.host

    @classmethod
    def tearDownClass(cls) -> None:
        cls.guest.close()

    SERVERS = ["time", "My-Server 2"]

    def ok(self, code: str, servers: list[str] | None = None, **options: object) -> dict:
        return self.guest.ok(code, self.SERVERS if servers is None else servers, **options)

    def out(self, code: str, servers: list[str] | None = None) -> str:
        return self.ok(code, servers)["stdout"]

    def error(self, code: str, servers: list[str] | None = None) -> dict:
        result = self.guest.run(code, self.SERVERS if servers is None else servers)
        self.assertIsNotNone(result["error"], result)
        return result["error"]

    def test_a_proxy_used_without_its_server_says_to_name_it(self) -> None:
        error = self.error("await mcp_github.search(q='x')", servers=[])
        self.assertEqual(error["type"], "NameError")
        self.assertIn("call run_python again with servers=['github']", error["message"])
        self.assertIn("servers=['github']", error["traceback"])
        error = self.error("mcp_nope.tool()", servers=[])
        self.assertIn("no MCP server has the alias 'nope'", error["message"])
        self.assertIn("mcp_time, mcp_my_server_2, mcp_github", error["message"])

    def test_globals_modules_and_aliases(self) -> None:
        out = self.out(
            "print(sorted(k for k in globals() if k.startswith('mcp_')))\n"
            "print(sorted(mcp_servers), mcp_servers['My-Server 2'] is mcp_my_server_2)\n"
            "from mcp.servers import time as t, my_server_2\n"
            "import mcp.servers.time\n"
            "print(t.TOOL_MAP, my_server_2.TOOL_MAP['class_'], t is mcp.servers.time)\n"
            "print([tool['name'] for tool in t.TOOLS], t.get_current_time is mcp_time.get_current_time)\n"
            "print([r['alias'] for r in await mcp_my_server_2.list_tools()])\n"
            "print(await t.get_current_time(timezone='Europe/Paris'))"
        )
        self.assertEqual(
            out,
            "['mcp_my_server_2', 'mcp_servers', 'mcp_time']\n"
            "['My-Server 2', 'time'] True\n"
            "{'get_current_time': 'get_current_time', 'convert_time': 'convert_time'} class True\n"
            "['get_current_time', 'convert_time'] True\n"
            "['class_', 'echo', 'plain', 'multi', 'mixed', 'fail', 'list_tools']\n"
            "{'timezone': 'Europe/Paris', 'datetime': '2026-01-01T12:00:00', 'is_dst': False}\n",
        )

    def test_tool_lists_are_fetched_once_per_session(self) -> None:
        self.ok("pass")
        before = self.host.list_tools_calls
        self.ok("pass")
        self.ok("await mcp_time.get_current_time(timezone='UTC')")
        self.assertEqual(self.host.list_tools_calls, before)

    def test_signatures_and_docstrings(self) -> None:
        out = self.out(
            "import inspect\n"
            "for f in (mcp_time.get_current_time, mcp_time.convert_time, mcp_my_server_2.class_,"
            " mcp_my_server_2.echo, mcp_my_server_2.plain):\n"
            "    print(f.__name__, inspect.signature(f), inspect.iscoroutinefunction(f))\n"
            "print(inspect.signature(mcp_time.get_current_time.raw))"
        )
        self.assertEqual(
            out.splitlines(),
            [
                "get_current_time (*, timezone: str) -> dict True",
                "convert_time (*, source_timezone: str, time: str, target_timezone: str) True",
                "class_ (*, from_: str, user_id: int = None, mode: str = 'fast',"
                " tags: list[str] = None, ratio: float | None = None) True",
                "echo (*, text: str, times: int = 1, flag: bool = None, data: dict = None) True",
                "plain () True",
                "(*, timezone: str) -> dict",
            ],
        )
        shown = self.out("help(mcp_time.get_current_time)")
        self.assertIn("async get_current_time(*, timezone: str) -> dict", shown)
        self.assertIn("Get current time in a specific timezone.", shown)
        self.assertIn("timezone (str, required): IANA timezone name", shown)
        shown = self.out("help(mcp_my_server_2.class_)")
        self.assertIn("from_ (str, required) [JSON name 'from']: Start date", shown)
        self.assertIn("One of: 'fast', 'slow'.", shown)
        self.assertIn("mode (str, optional, default 'fast')", shown)
        shown = self.out("help(mcp_time)")
        self.assertIn("async convert_time(*, source_timezone: str", shown)
        self.assertIn("list_tools", shown)

    def test_arguments_are_checked_before_the_round_trip(self) -> None:
        before = len(self.host.calls)
        cases = {
            "await mcp_time.get_current_time(tz='UTC')":
                "got an unexpected keyword argument: 'tz' (did you mean 'timezone'?); "
                "valid arguments: timezone (required)",
            "await mcp_time.convert_time(time='10:00', source_tz='UTC', target='Europe/Paris', x=1)":
                "got 3 unexpected keyword arguments: 'source_tz' (did you mean "
                "'source_timezone'?), 'target' (did you mean 'target_timezone'?), 'x'; "
                "valid arguments: source_timezone (required), time (required), "
                "target_timezone (required); missing: 'source_timezone', 'target_timezone'",
            "await mcp_time.get_current_time()":
                "missing 1 required keyword argument: 'timezone'",
            "await mcp_time.convert_time(time='10:00')":
                "missing 2 required keyword arguments: 'source_timezone', 'target_timezone'",
            "await mcp_time.get_current_time(timezone=3)":
                "argument 'timezone' must be str, not int",
            "await mcp_time.get_current_time('UTC')": "takes keyword arguments only",
            "await mcp_my_server_2.echo(text='x', times=True)": "'times' must be int, not bool",
            "await mcp_my_server_2.echo(text='x', data=[1])": "'data' must be dict, not list",
            "await mcp_my_server_2.class_(from_='d', ratio='high')":
                "'ratio' must be float | None, not str",
            "await mcp_my_server_2.plain(x=1)": "it takes no arguments",
            "await mcp_time.get_current_time.raw(zone='UTC')": "unexpected keyword argument: 'zone'",
        }
        for code, message in cases.items():
            with self.subTest(code=code):
                error = self.error(code)
                self.assertEqual(error["type"], "TypeError")
                self.assertIn(message, error["message"])
                self.assertIn(code, error["traceback"])
                self.assertTracebackIsClean(error["traceback"])
        self.assertEqual(len(self.host.calls), before)  # nothing was sent

    def test_argument_names_are_mapped_back_to_json(self) -> None:
        out = self.out(
            "print(await mcp_my_server_2.class_(from_='2026-01-01', user_id=7, tags=('a',),"
            " ratio=None))\n"
            "print(await mcp_my_server_2.class_(**{'from': 'x', 'user-id': 8}, ratio=0.5))\n"
            "print(await mcp_my_server_2.echo(text='t', times=2, flag=False, data={'k': [1]}))"
        )
        self.assertEqual(
            out.splitlines(),
            [
                "{'tool': 'class', 'arguments': {'from': '2026-01-01', 'user-id': 7, 'tags': ['a']}}",
                "{'tool': 'class', 'arguments': {'from': 'x', 'user-id': 8, 'ratio': 0.5}}",
                "{'tool': 'echo', 'arguments': {'text': 't', 'times': 2, 'flag': False,"
                " 'data': {'k': [1]}}}",
            ],
        )

    def test_result_shapes(self) -> None:
        out = self.out(
            "print(repr(await mcp_time.get_current_time(timezone='UTC')))\n"  # structured
            "print(repr(await mcp_time.convert_time(source_timezone='a', time='10:00',"
            " target_timezone='b')))\n"  # JSON text
            "print(repr(await mcp_my_server_2.plain()))\n"
            "print(repr(await mcp_my_server_2.multi()))\n"
            "print(repr(await mcp_my_server_2.mixed()))\n"
            "print(repr(await mcp_my_server_2['list_tools']()))\n"
            "raw = await mcp_time.get_current_time.raw(timezone='UTC')\n"
            "print(sorted(raw), raw['content'][0]['type'])"
        )
        self.assertEqual(
            out.splitlines(),
            [
                "{'timezone': 'UTC', 'datetime': '2026-01-01T12:00:00', 'is_dst': False}",
                "{'source': '10:00', 'difference': '+1.0h'}",
                "'hello world'",
                "'one\\ntwo'",
                "['see image', {'type': 'image', 'data': 'iVBORw0KGgo=', 'mimeType': 'image/png'}]",
                "{'tool': 'list_tools', 'arguments': {}}",
                "['content', 'structuredContent'] text",
            ],
        )

    def test_tool_errors_raise_mcp_error_with_the_raw_result(self) -> None:
        out = self.out(
            "import mcp\n"
            "try:\n"
            "    await mcp_my_server_2.fail()\n"
            "except mcp.MCPError as e:\n"
            "    print(str(e), e.kind, e.result['isError'], isinstance(e, RuntimeError))\n"
            "print((await mcp_my_server_2.fail.raw())['isError'])"
        )
        self.assertEqual(out, "boom: bad input tool_error True True\nTrue\n")
        error = self.error("await mcp_my_server_2.fail()")
        self.assertEqual((error["type"], error["message"]), ("mcp.MCPError", "boom: bad input"))
        self.assertIn("await mcp_my_server_2.fail()", error["traceback"])
        self.assertTracebackIsClean(error["traceback"])

    def test_fifty_concurrent_calls_are_in_flight_together(self) -> None:
        self.host.hold(50)  # no answer until all 50 calls came; then in reverse order
        result = self.ok(
            "import asyncio, time\n"
            "t0 = time.perf_counter()\n"
            "values = await asyncio.gather(*(mcp_time.get_current_time(timezone=f'Zone/{i}')"
            " for i in range(50)))\n"
            "elapsed = time.perf_counter() - t0\n"
            "print([v['timezone'] for v in values] == [f'Zone/{i}' for i in range(50)])\n"
            "print(f'{elapsed * 1000:.1f}')"
        )
        ok, elapsed = result["stdout"].split()
        self.assertEqual(ok, "True")
        calls = [c for c in self.host.calls
                 if c["params"].get("arguments", {}).get("timezone", "").startswith("Zone/")]
        self.assertEqual(len(calls), 50)
        print(f"\n  50 concurrent calls: {elapsed} ms in the guest", file=sys.stderr)

    def test_no_more_than_64_calls_in_flight(self) -> None:
        self.ok("pass")  # proxies loaded
        guest, host = self.guest, self.host
        run_id = guest.next_id
        guest.next_id += 1
        host.begin(run_id, self.SERVERS)
        code = (
            "import asyncio\n"
            "values = await asyncio.gather(*(mcp_my_server_2.echo(text=str(i)) for i in range(150)))\n"
            "print([v['arguments']['text'] for v in values] == [str(i) for i in range(150)])\n"
            "async def one():\n"
            "    return await mcp_my_server_2.echo(text='sync')\n"
            "tasks = [asyncio.ensure_future(one()) for _ in range(64)]\n"
            "await asyncio.sleep(0)\n"
            "print(load_memory('none', 'sync call waited for a slot'))\n"
            "print(len(await asyncio.gather(*tasks)))"
        )
        guest.send({"type": "run", "id": run_id, "code": code, "timeout_ms": 1,
                    "servers": [{"name": n, "alias": alias_of(n)} for n in self.SERVERS]})
        # The gather's 150 calls in rounds of 64, 64 and 22, then the 64 tasks, while the
        # synchronous call waits for a slot. Nothing more comes until a round is answered.
        for size in (64, 64, 22, 64):
            held = [guest.next_frame() for _ in range(size)]
            self.assertEqual([frame["method"] for frame in held], ["call_tool"] * size)
            with self.assertRaises(AssertionError):
                guest.next_frame(timeout=0.3)
            for frame in held:
                host.on_rpc(guest, frame)
        while (result := guest.next_frame())["type"] == "rpc":
            host.on_rpc(guest, result)
        self.assertIsNone(result["error"], result["error"])
        self.assertEqual(result["stdout"], "True\nsync call waited for a slot\n64\n")

    def test_calls_overlap_when_no_reader_can_watch_the_fd(self) -> None:
        self.host.hold(20)
        out = self.out(
            "import asyncio, sys\n"
            "calls = sys.modules['__mcp_runtime__'].HostCalls\n"
            "calls.use_reader = False\n"
            "try:\n"
            "    values = await asyncio.gather(*(mcp_my_server_2.echo(text=str(i))"
            " for i in range(20)))\n"
            "finally:\n"
            "    calls.use_reader = True\n"
            "print([v['arguments']['text'] for v in values] == [str(i) for i in range(20)])"
        )
        self.assertEqual(out, "True\n")

    def test_sync_call_while_async_calls_wait(self) -> None:
        self.host.hold(2)  # the memory call's answer comes first, then the tool's
        out = self.out(
            "import asyncio\n"
            "task = asyncio.ensure_future(mcp_time.get_current_time(timezone='UTC'))\n"
            "await asyncio.sleep(0)\n"
            "save_memory('while-waiting', 1)\n"
            "print((await task)['timezone'], load_memory('while-waiting'))"
        )
        self.assertEqual(out, "UTC 1\n")

    def test_calls_in_synchronous_code_and_asyncio_run(self) -> None:
        out = self.out(
            "import asyncio, mcp.runtime as runtime\n"
            "async def main():\n"
            "    return await mcp_time.get_current_time(timezone='Asia/Tokyo')\n"
            "print(asyncio.run(main())['timezone'])\n"
            "print(len(runtime.query_tool_docs_sync('time')))"
        )
        self.assertEqual(out, "Asia/Tokyo\n2\n")

    def test_a_call_left_pending_fails_when_its_run_ends(self) -> None:
        self.host.hold(2)  # never reached: the one call stays unanswered
        self.ok(
            "import asyncio\n"
            "pending = asyncio.ensure_future(mcp_time.get_current_time(timezone='UTC'))\n"
            "await asyncio.sleep(0)"
        )
        late = self.host.held.pop()
        self.host.hold(0)
        self.guest.send(self.host.answer(late))  # crossed the end of its run: dropped
        out = self.out(
            "import mcp\n"
            "try:\n"
            "    await pending\n"
            "except mcp.MCPError as e:\n"
            "    print(e.kind, 'run ended' in str(e))\n"
            "print((await mcp_time.get_current_time(timezone='UTC'))['timezone'])"
        )
        self.assertEqual(out, "cancelled True\nUTC\n")
        self.assertNotIn(b"ignored", self.guest.stderr())

    def test_stale_proxies_fail_clearly(self) -> None:
        self.ok("pass")
        error = self.error("await mcp_time.get_current_time(timezone='UTC')", servers=["github"])
        self.assertEqual(error["type"], "mcp.MCPError")
        self.assertIn("'time' was not loaded for this run; pass servers=['time']", error["message"])
        out = self.out(
            "import mcp\n"
            "print(sorted(mcp_servers))\n"
            "from mcp.servers import time as t\n"
            "try:\n"
            "    await t.convert_time(source_timezone='a', time='1', target_timezone='b')\n"
            "except mcp.MCPError as e:\n"
            "    print(e.kind)\n",
            servers=[],
        )
        self.assertEqual(out, "[]\nnot_allowed\n")

    def test_sync_helpers(self) -> None:
        out = self.out(
            "import mcp.runtime as runtime\n"
            "print(runtime.list_servers_sync(), await runtime.list_servers())\n"
            "print([t['alias'] for t in runtime.list_tools_sync('time')])\n"
            "print([t['name'] for t in await runtime.list_tools('my_server_2')][:2])\n"
            "info = runtime.describe_server('my_server_2')\n"
            "print(info['name'], info['loaded'], len(info['tools']))\n"
            "print([m['name'] for m in runtime.list_loaded_server_metadata()])\n"
            "print(runtime.discovered_servers())\n"
            "doc = runtime.query_tool_docs_sync('time', 'convert_time', detail='full')\n"
            "print(doc['toolAlias'], 'inputSchema' in doc)\n"
            "doc = await runtime.query_tool_docs('my_server_2', 'class_')\n"
            "print(doc['tool'], 'inputSchema' in doc)\n"
            "print([d['tool'] for d in runtime.search_tool_docs_sync('timezone convert', limit=1)])\n"
            "print(len(await runtime.search_tool_docs('time', limit=500)))\n"
            "raw = await runtime.call_tool('My-Server 2', 'class', {'from': 'x'})\n"
            "print(raw['content'][0]['text'])\n"
            "raw = await runtime.call_tool('time', 'get_current_time', {'timezone': 'UTC'})\n"
            "print(raw['structuredContent']['timezone'])"
        )
        self.assertEqual(
            out.splitlines(),
            [
                "('time', 'My-Server 2') ('time', 'My-Server 2')",
                "['get_current_time', 'convert_time']",
                "['class', 'echo']",
                "My-Server 2 True 7",
                "['time', 'My-Server 2']",
                "('time', 'My-Server 2', 'github')",
                "convert_time True",
                "class False",
                "['convert_time']",
                "2",
                '{"tool": "class", "arguments": {"from": "x"}}',
                "UTC",
            ],
        )
        limits = [c["params"]["limit"] for c in self.host.calls if c["method"] == "search_tool_docs"]
        self.assertEqual(limits[-2:], [1, 20])

    def test_unknown_servers_and_tools_raise_mcp_error(self) -> None:
        out = self.out(
            "import mcp, mcp.runtime as runtime\n"
            "for call in (lambda: runtime.call_tool('nope', 'x'),"
            " lambda: runtime.call_tool('time', 'nope'),"
            " lambda: runtime.query_tool_docs('nope'),"
            " lambda: runtime.query_tool_docs('time', 'nope'),"
            " lambda: runtime.call_tool('github', 'x')):\n"
            "    try:\n"
            "        await call()\n"
            "    except mcp.MCPError as e:\n"
            "        print(e.kind, '|', e)\n"
            "try:\n"
            "    runtime.list_tools_sync('nope')\n"
            "except mcp.MCPError as e:\n"
            "    print(e.kind)\n"
            "try:\n"
            "    mcp_time.nope\n"
            "except AttributeError as e:\n"
            "    print(e)"
        )
        lines = out.splitlines()
        self.assertEqual(lines[0].split(" | ")[0], "unknown_server")
        self.assertIn("unknown MCP server 'nope'; known servers: time, My-Server 2, github", lines[0])
        self.assertIn("unknown_tool | MCP server 'time' has no tool 'nope'", lines[1])
        self.assertEqual(lines[2], "unknown_server | unknown MCP server 'nope'")  # the host's
        self.assertEqual(lines[3], "unknown_tool | unknown tool 'nope' of 'time'")
        self.assertIn("not_allowed | MCP server 'github' was not loaded", lines[4])
        self.assertEqual(lines[5], "unknown_server")
        self.assertIn("has no tool 'nope'; its tools: get_current_time, convert_time", lines[6])

    def test_a_server_that_fails_to_load_fails_the_run(self) -> None:
        result = self.guest.run("print('not reached')", ["ghost"])
        self.assertEqual(result["error"]["type"], "mcp.MCPError")
        self.assertIn("'ghost' could not be loaded: unknown MCP server 'ghost'",
                      result["error"]["message"])
        self.assertEqual(result["stdout"], "")
        error = self.error("import mcp.servers.nothing_here", servers=[])
        self.assertEqual(error["type"], "ModuleNotFoundError")
        self.assertIn("pass servers=[...]", error["message"])

    def test_save_tool_of_a_function_from_an_earlier_run(self) -> None:
        self.ok("def greet(name: str) -> str:\n    '''Says hi.'''\n    return f'hi {name}'\n")
        self.ok(
            "if True:\n"
            "    def nested(x):\n"
            "        return x * 2\n"
        )
        result = self.ok(
            "import mcp.runtime as runtime\n"
            "print(save_tool(greet) is greet, runtime.save_tool is save_tool)\n"
            "save_tool(nested)\n"
            "@save_tool\n"
            "def decorated(a, b=1):\n"
            "    return a + b\n"
            "print(decorated(1))"
        )
        self.assertEqual(result["stdout"], "True True\n2\n")
        self.assertEqual(
            self.host.saved[-3:],
            [
                {"name": "greet",
                 "source": "def greet(name: str) -> str:\n    '''Says hi.'''\n    return f'hi {name}'\n"},
                {"name": "nested", "source": "def nested(x):\n    return x * 2\n"},
                {"name": "decorated", "source": "def decorated(a, b=1):\n    return a + b\n"},
            ],
        )
        error = self.error("save_tool(len)")
        self.assertEqual(error["type"], "mcp.MCPError")
        error = self.error("save_tool(lambda: 1)")
        self.assertEqual(error["type"], "TypeError")

    def test_saved_tools_run_before_the_code(self) -> None:
        source = "def from_saved(x):\n    return x + 100\n"
        result = self.ok("print(from_saved(1))", saved_tools=source)
        self.assertEqual(result["stdout"], "101\n")
        result = self.ok("import inspect\nprint(inspect.getsource(from_saved) == "
                         f"{source!r})\nsave_tool(from_saved)")
        self.assertEqual(result["stdout"], "True\n")
        self.assertEqual(self.host.saved[-1], {"name": "from_saved", "source": source})
        result = self.ok(
            "print('code ran', ok_before_the_error())",
            saved_tools="def ok_before_the_error():\n    return 'yes'\nraise ValueError('bad tool')\n",
        )
        self.assertEqual(result["stdout"], "code ran yes\n")
        self.assertIn("warning: your saved tools failed to load (ValueError: bad tool)",
                      result["stderr"])
        result = self.ok("print('still fine')", saved_tools="def broken(:\n")
        self.assertEqual(result["stdout"], "still fine\n")
        self.assertIn("SyntaxError", result["stderr"])

    def test_install_describes_this_interpreter_and_puts_only_its_own_dir_on_sys_path(self) -> None:
        out = self.out(
            "import sys, mcp, mcp.runtime as runtime\n"
            "print(await runtime.install('humanize'))\n"
            "print(sys.path.count('/mnt/1'))\n"
            "runtime.install_sync('stray')\n"
            "print('/elsewhere/1' in sys.path)\n"
            "try:\n"
            "    runtime.install_sync('nope')\n"
            "except mcp.MCPError as e:\n"
            "    print(e.kind, e)\n"
            "for bad in [(), (1,)]:\n"
            "    try:\n"
            "        runtime.install_sync(*bad)\n"
            "    except TypeError:\n"
            "        print('TypeError')",
            servers=[],
        )
        self.assertEqual(
            out.splitlines(),
            [
                "{'installed': ['humanize 4.17.0'], 'already_present': ['pip 23.2.1']}",
                "1",
                "False",
                "not_found cannot install `nope`: no such project on the package index",
                "TypeError",
                "TypeError",
            ],
        )
        call = self.host.installs[0]
        self.assertEqual(call["python"], f"{sys.version_info[0]}.{sys.version_info[1]}")
        self.assertEqual(call["machine"], os.uname().machine)
        # What importlib.metadata finds on the guest's sys.path, as [name, version] pairs.
        for pair in call["provided"]:
            self.assertTrue(len(pair) == 2 and all(isinstance(p, str) for p in pair), pair)

    def test_memory_helpers_round_trip(self) -> None:
        out = self.out(
            "import mcp, mcp.runtime as runtime\n"
            "save_memory('notes', {'a': [1, 2]})\n"
            "print(load_memory('notes'), load_memory('missing'), load_memory('missing', 7))\n"
            "print(memory_exists('notes'), memory_exists('missing'))\n"
            "print(update_memory('count', lambda old: (old or 0) + 1),"
            " update_memory('count', lambda old: (old or 0) + 1))\n"
            "print(runtime.update_memory('plain', 'value'), list_memories())\n"
            "print(delete_memory('plain'), delete_memory('plain'), list_memories())\n"
            "print(get_memory_info()['keys'])\n"
            "try:\n"
            "    save_memory('bad', float('nan'))\n"
            "except ValueError as e:\n"
            "    print('ValueError')\n"
            "try:\n"
            "    save_memory('bad', object())\n"
            "except TypeError as e:\n"
            "    print('TypeError')\n"
            "try:\n"
            "    save_memory('big', 'x' * 3_000_000)\n"
            "except mcp.MCPError as e:\n"
            "    print(e.kind)",
            servers=[],
        )
        self.assertEqual(
            out.splitlines(),
            [
                "{'a': [1, 2]} None 7",
                "True False",
                "1 2",
                "value ['count', 'notes', 'plain']",
                "True False ['count', 'notes']",
                "2",
                "ValueError",
                "TypeError",
                "invalid_params",
            ],
        )
        self.assertEqual(self.host.memory, {"notes": {"a": [1, 2]}, "count": 2})

    def assertTracebackIsClean(self, traceback: str) -> None:
        GuestTestCase.assertTracebackIsClean(self, traceback)  # type: ignore[arg-type]


class ProxyStartupTest(unittest.TestCase):
    def test_a_run_without_servers_sends_no_rpc_and_imports_nothing(self) -> None:
        guest = Guest(catalogue=FakeHost.CATALOGUE)
        try:
            imported = set(guest.value("sorted(__import__('sys').modules)"))
            imported -= bare_interpreter_modules()
            self.assertLessEqual(
                imported, {"__mcp_runtime__", "mcp", "mcp.runtime", "_json", "_sitebuiltins"}
            )
            self.assertEqual(guest.host.calls, [])
            self.assertEqual(guest.value("'save_tool' in dir(__builtins__)"), True)
        finally:
            self.assertEqual(guest.close(), 0)

    def test_proxies_get_signatures_when_inspect_loads(self) -> None:
        guest = Guest(catalogue=FakeHost.CATALOGUE)
        try:
            before = "inspect" in bare_interpreter_modules()
            result = guest.ok("import sys\nprint('inspect' in sys.modules)", ["time"])
            self.assertEqual(result["stdout"], f"{before}\n")
            result = guest.ok(
                "import inspect\nprint(inspect.signature(mcp_time.get_current_time))\n"
                "del sys.modules['inspect']\nimport inspect\n"  # a second copy works too
                "print(inspect.signature(mcp_time.convert_time.raw))", ["time"]
            )
            self.assertEqual(
                result["stdout"],
                "(*, timezone: str) -> dict\n"
                "(*, source_timezone: str, time: str, target_timezone: str) -> dict\n",
            )
        finally:
            self.assertEqual(guest.close(), 0)

    def test_end_of_input_while_a_call_waits(self) -> None:
        guest = Guest(catalogue=FakeHost.CATALOGUE)
        guest.host.hold(2)
        guest.send({"type": "run", "id": 1, "code": "save_memory('k', 1)", "servers": [],
                    "timeout_ms": 1})
        guest.host.begin(1, [])
        self.assertEqual(guest.next_frame()["type"], "rpc")
        guest.proc.stdin.close()
        result = guest.next_frame()
        self.assertEqual(result["error"]["type"], "mcp.MCPError")
        self.assertIn("closed", result["error"]["message"])
        self.assertEqual(guest.proc.wait(timeout=TIMEOUT), 0)
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

    def test_a_second_sigint_ends_a_coroutine_that_ignores_its_cancellation(self) -> None:
        run_id = self.guest.next_id
        self.guest.next_id += 1
        code = (
            "import asyncio\n"
            "try:\n"
            "    await asyncio.sleep(30)\n"
            "except asyncio.CancelledError:\n"
            "    print('cancelled; spinning', flush=True)\n"
            "    while True:\n"
            "        pass"
        )
        self.guest.send({"type": "run", "id": run_id, "code": code, "servers": [], "timeout_ms": 1})
        time.sleep(0.3)
        self.guest.proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        self.guest.proc.send_signal(signal.SIGINT)
        result = self.guest.next_frame()
        self.assertEqual(result["id"], run_id)
        self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
        self.assertEqual(result["stdout"], "cancelled; spinning\n")
        self.assertEqual(self.guest.ok("await asyncio.sleep(0.01); print('ok')")["stdout"], "ok\n")

    def test_sigint_while_a_call_waits_for_the_host(self) -> None:
        guest = self.guest
        for code, servers in (
            ("print('start', flush=True)\nsave_memory('k', 1)", []),  # blocked in a read
            ("await mcp_time.get_current_time(timezone='UTC')", ["time"]),  # in the loop
        ):
            with self.subTest(code=code):
                guest.ok("pass", servers)  # proxies loaded, nothing held
                guest.host.hold(2)
                run_id = guest.next_id
                guest.next_id += 1
                guest.host.begin(run_id, servers)
                guest.send({"type": "run", "id": run_id, "code": code, "timeout_ms": 1,
                            "servers": [{"name": s, "alias": s} for s in servers]})
                call = guest.next_frame()
                self.assertEqual(call["type"], "rpc")
                guest.host.on_rpc(guest, call)  # held
                time.sleep(0.3)
                guest.proc.send_signal(signal.SIGINT)
                result = guest.next_frame()
                self.assertEqual((result["type"], result["id"]), ("result", run_id))
                self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
                guest.host.hold(0)
                guest.send(guest.host.answer(guest.host.held.pop()))  # late: dropped
                self.assertEqual(guest.ok("print(list_memories())")["stdout"], "['k']\n")

    def test_calls_only_from_the_main_thread(self) -> None:
        result = self.guest.ok(
            "import threading, mcp\n"
            "errors = []\n"
            "def worker():\n"
            "    try:\n"
            "        list_memories()\n"
            "    except mcp.MCPError as e:\n"
            "        errors.append(str(e))\n"
            "t = threading.Thread(target=worker)\n"
            "t.start(); t.join()\n"
            "print(errors)"
        )
        self.assertEqual(result["stdout"], "['MCP calls can only be made from the main thread']\n")

    def test_an_interrupt_outside_a_sandbox_ends_no_other_process(self) -> None:
        # Only under the bootstrap's own init as PID 1 does an interrupt end the sandbox's
        # other processes; here (no `--init`, a host) nothing else may be touched.
        bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            result = self.interrupt_during("import time\ntime.sleep(30)")
            self.assertEqual(result["error"]["type"], "KeyboardInterrupt")
            time.sleep(0.2)
            self.assertIsNone(bystander.poll(), "a process outside the guest was ended")
        finally:
            bystander.kill()
            bystander.wait()

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


class CheckpointTest(unittest.TestCase):
    """A session's globals saved as bytes in one guest and put back in a fresh one."""

    def setUp(self) -> None:
        # The interpreters the bridge ships carry cloudpickle; this host-CPython guest runs
        # isolated from site-packages, so it borrows the test process's copy.
        try:
            import cloudpickle
        except ImportError:
            self.skipTest("cloudpickle is not installed for the tests' python3 (.ci/run installs it)")
        self.borrow = (
            f"import sys\nsys.path.append({os.path.dirname(os.path.dirname(cloudpickle.__file__))!r})\n"
        )

    def test_globals_survive_into_a_fresh_guest(self) -> None:
        first, second = Guest(), Guest()
        try:
            saved = first.ok(
                self.borrow + "import json as j\nimport base64\nx = 41\n"
                "def bump(n):\n    return n + 1\n"
                "class Point:\n    def __init__(self, a):\n        self.a = a\n"
                "p = Point(3)\nf = open('/dev/null')\ng = (i for i in range(3))\n"
                "def read_x():\n    return x\n"
                "def set_x(v):\n    global x\n    x = v\n"
                "import _thread\nlock = _thread.allocate_lock()\n"
                "import __mcp_runtime__ as rt\n"
                "parts, names, bad = rt.checkpoint_session(globals(), None, 1 << 20)\n"
                "payload = b''.join(parts)\n"
                "print(base64.b64encode(payload).decode())\nprint(names)\nprint(bad)"
            )["stdout"].splitlines()
            payload, names, bad = saved[0], saved[1], saved[2]
            self.assertIn("'bump'", names)
            self.assertIn("'j'", names)
            self.assertIn("f: an open file", bad)
            self.assertIn("g: TypeError: cannot pickle 'generator' object", bad)
            self.assertIn("lock: TypeError: cannot pickle '_thread.lock' object", bad)
            restored = second.ok(
                self.borrow + "import base64\nimport __mcp_runtime__ as rt\n"
                f"print(rt.restore_session(base64.b64decode({payload!r}), globals(), None))\n"
                "print(bump(x), p.a, j.dumps([1]), type(p).__name__, isinstance(p, Point))\n"
                "x = 7\nprint(read_x())\nset_x(9)\nprint(x)"
            )
            # Restored functions use the live globals, not a copy taken at the checkpoint.
            self.assertEqual(restored["stdout"], "[]\n42 3 [1] Point True\n7\n9\n")
        finally:
            first.close()
            second.close()


    def test_files_survive_and_a_hostile_archive_stays_inside(self) -> None:
        guest = Guest()
        try:
            with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
                result = guest.ok(
                    "import os, base64, io, tarfile\nimport __mcp_runtime__ as rt\n"
                    f"src, dst = {src!r}, {dst!r}\n"
                    "os.makedirs(src + '/data/deep')\n"
                    "open(src + '/data/deep/a.csv', 'w').write('x,y\\n1,2\\n')\n"
                    "os.symlink('deep/a.csv', src + '/data/link')\n"
                    "blobs = rt.SessionBlobs(1 << 20)\nrt.add_files(blobs, src)\n"
                    "blob = bytes(blobs.blobs[0])\n"
                    "rt.restore_files(blob, dst)\n"
                    "print(open(dst + '/data/deep/a.csv').read(), os.readlink(dst + '/data/link'))\n"
                    "try:\n    rt.add_files(rt.SessionBlobs(4), src)\nexcept ValueError as e:\n    print(e)\n"
                    "evil = io.BytesIO()\n"
                    "with tarfile.open(fileobj=evil, mode='w') as t:\n"
                    "    info = tarfile.TarInfo('../escaped')\n    info.size = 1\n"
                    "    t.addfile(info, io.BytesIO(b'x'))\n"
                    "try:\n    rt.restore_files(evil.getvalue(), dst)\n"
                    "except tarfile.TarError as e:\n    print(type(e).__name__)\n"
                    "print(os.path.exists(os.path.dirname(dst) + '/escaped'))\n"
                    # Without tarfile's data filter (older interpreters): the same refusals.
                    "rt.restore_files(blob, dst + '/again', filtered=False)\n"
                    "print(open(dst + '/again/data/deep/a.csv').read() == 'x,y\\n1,2\\n')\n"
                    "out = io.BytesIO()\n"
                    "with tarfile.open(fileobj=out, mode='w') as t:\n"
                    "    link = tarfile.TarInfo('sneaky')\n    link.type = tarfile.SYMTYPE\n"
                    "    link.linkname = '../../etc'\n    t.addfile(link)\n"
                    "for bad in (evil.getvalue(), out.getvalue()):\n"
                    "    try:\n        rt.restore_files(bad, dst, filtered=False)\n"
                    "    except tarfile.TarError as e:\n        print(e)\n"
                    "print(os.path.exists(os.path.dirname(dst) + '/escaped'), os.path.lexists(dst + '/sneaky'))"
                )
                self.assertEqual(
                    result["stdout"].splitlines(),
                    ["x,y", "1,2", " deep/a.csv",
                     "the session's state is more than the 4 bytes a checkpoint may hold (at"
                     " least 1536 bytes); delete large variables or files, or raise"
                     " MCP_BRIDGE_CHECKPOINT_LIMIT",
                     "OutsideDestinationError", "False", "True",
                     f"'../escaped' would be extracted outside {dst}",
                     f"'sneaky' links outside {dst}", "False False"],
                )
        finally:
            guest.close()


    def test_a_whole_session_round_trips_within_its_limit(self) -> None:
        first, second = Guest(), Guest()
        try:
            with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as dst:
                saved = first.ok(
                    self.borrow + "import base64\nimport __mcp_runtime__ as rt\n"
                    f"open({src!r} + '/notes.txt', 'w').write('kept')\nrows = list(range(5))\n"
                    f"parts, names, bad = rt.checkpoint_session(globals(), {src!r}, 1 << 20)\n"
                    "payload = b''.join(parts)\n"
                    "print(base64.b64encode(payload).decode())\n"
                    f"try:\n    rt.checkpoint_session(globals(), {src!r}, 64)\n"
                    "except ValueError as e:\n    print(e)"
                )["stdout"].splitlines()
                self.assertRegex(
                    saved[1], r"^the session's state is more than the 64 bytes a checkpoint may hold"
                )
                restored = second.ok(
                    self.borrow + "import base64\nimport __mcp_runtime__ as rt\n"
                    f"print(rt.restore_session(base64.b64decode({saved[0]!r}), globals(), {dst!r}))\n"
                    f"print(rows, open({dst!r} + '/notes.txt').read())"
                )
                self.assertEqual(restored["stdout"], "[]\n[0, 1, 2, 3, 4] kept\n")
        finally:
            first.close()
            second.close()

    def test_actions_carry_a_session_to_the_host_and_back(self) -> None:
        host = FakeHost()
        first = Guest(host=host)
        try:
            first.ok(self.borrow + "rows = list(range(3000))\ndef total():\n    return sum(rows)\n"
                     "f = open('/dev/null')")
            first.ok("", action="checkpoint")
            self.assertGreater(len(host.checkpoints["default"]), 3000)
            # From user code: a checkpoint of itself, and a copy under another name.
            info = first.value("__import__('mcp.runtime').runtime.checkpoint()")
            self.assertEqual(info["session"], "default")
            self.assertIn("total", info["saved"])
            self.assertEqual(info["unsaveable"], ["f: an open file (open it again after a restore)"])
            first.ok("rows.append(1)\n__import__('mcp.runtime').runtime.fork_session('copy')")
        finally:
            first.close()
        for session, expected in (("default", 4498500), ("copy", 4498501)):
            host.session = session
            second = Guest(host=host)
            try:
                second.ok(self.borrow, action=None)
                second.ok("", action="restore")
                self.assertEqual(host.restore_failed, [])
                self.assertEqual(second.value("total()"), expected)
            finally:
                second.close()

    def test_a_garbage_checkpoint_fails_the_restore_run_and_nothing_else(self) -> None:
        host = FakeHost()
        host.checkpoints["default"] = b"\x80\x05garbage" * 100
        guest = Guest(host=host)
        try:
            result = guest.run("", action="restore")
            self.assertIsNotNone(result["error"])
            self.assertEqual(guest.value("1 + 1"), 2)
        finally:
            guest.close()


if __name__ == "__main__":
    unittest.main()

"""The guest runtime: runs agent-written Python for the host, one session per process.

The host starts `python -I -S -c BOOTSTRAP`, sends this program (source or bytecode) as the
first frame, then talks to `main()` over stdin/stdout with the frame protocol in
`backends/core/docs/frames.md`: `hello` -> `ready`, then any number of `run` -> `result`.

Rules this file keeps:
- Frames go to fd 1 through `os.write` with the session's marker, never through
  `sys.stdout`, so nothing user code does to `sys.stdout` can corrupt them.
- User code never breaks the frame loop: every exception it raises, `SystemExit` and
  `KeyboardInterrupt` included, becomes the `error` of its run.
- Start-up is import-light (imports are slow on WASI): it uses only modules the interpreter
  has already loaded (or builtin / frozen ones: `_json`, `_sitebuiltins`), not `os`, `json`,
  `re`, `types` or `signal`. `asyncio`, `traceback` and `linecache` load on first use, and a
  successful run imports nothing.
- Standard library only; it must also run on the CPython 3.12 WASI build (no threads,
  sockets, signals delivery, `os.dup2`, `fcntl`, ...).
"""

import builtins
import codecs
import io
import sys
import time

try:  # `os` is frozen but not free to import (os.path, stat, _collections_abc)
    import posix as _os

    DEVNULL = "/dev/null"
except ImportError:  # pragma: no cover - not a POSIX platform
    import os as _os

    DEVNULL = _os.devnull

PyCF_ALLOW_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT (3.8+); _ast is slow to load
CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, without importing inspect
ModuleType = type(sys)  # types.ModuleType, without importing types
FunctionType = type(lambda: None)  # types.FunctionType
MARKER_PREFIX = b"\x00\x1bMCPB"
MARKER_SUFFIX = b"\x1f"
NONCE_DIGITS = frozenset("0123456789abcdef")
NONCE_LENGTH = 32
FRAME_CAP_SLACK = 1 << 20  # the host's frame cap: 2 * output_limit + this, ...
FRAME_CAP_CEILING = 64 << 20  # ... and never more than this
MESSAGE_LIMIT = 16 * 1024  # bytes of an error message we send
TRACEBACK_LIMIT = 64 * 1024  # bytes of a traceback we send
READ_CHUNK = 1 << 16
# WASI (and Emscripten) builds deliver no signals and have no socketpair.
NO_SIGNALS_OR_SOCKETS = sys.platform in ("wasi", "emscripten")

# Bound once, so user code that monkeypatches `os` cannot break the frame loop.
_read = _os.read
_write = _os.write


# --------------------------------------------------------------------------- JSON
# The frame codec sits directly on `_json`, the C accelerator behind the `json` module, with
# the settings of `json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))` and
# `json.JSONDecoder()`: the same bytes out and the same values in, without importing `json`
# (which imports `re`, `enum`, `functools`, ...).

JSON_SPACE = " \t\n\r"  # json.decoder.WHITESPACE


def json_error(message: str, text: str, position: int) -> ValueError:
    """A ValueError worded like json.JSONDecodeError's."""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return ValueError(f"{message}: line {line} column {column} (char {position})")


def not_serializable(value: object) -> object:
    """json.JSONEncoder.default."""
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


try:
    import _json

    _make_encoder = _json.make_encoder
    # json.encoder.encode_basestring: escapes `"`, `\` and control characters; everything
    # else (non-ASCII) is kept, as with ensure_ascii=False.
    encode_json_string = _json.encode_basestring

    class DecoderSettings:
        """The attributes `_json.make_scanner` reads: a default json.JSONDecoder's."""

        strict = True
        object_hook = None
        object_pairs_hook = None
        parse_float = float
        parse_int = int
        parse_constant = {
            "-Infinity": float("-inf"),
            "Infinity": float("inf"),
            "NaN": float("nan"),
        }.__getitem__
        memo: dict = {}

    _scan_once = _json.make_scanner(DecoderSettings())

    def encode_json(value: object) -> str:
        """json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode(value)."""
        if isinstance(value, str):
            return encode_json_string(value)
        encoder = _make_encoder(
            {}, not_serializable, encode_json_string, None, ":", ",", False, False, True
        )
        return "".join(encoder(value, 0))

    def decode_json(text: str) -> object:
        """json.JSONDecoder().decode(text); errors are ValueErrors, as there."""
        start = len(text) - len(text.lstrip(JSON_SPACE))
        try:
            value, end = _scan_once(text, start)
        except StopIteration as exc:
            raise json_error("Expecting value", text, exc.value) from None
        if end != len(text.rstrip(JSON_SPACE)):  # a value never ends with white space
            extra = len(text) - len(text[end:].lstrip(JSON_SPACE))
            raise json_error("Extra data", text, extra)
        return value

except (ImportError, AttributeError):  # pragma: no cover - a build without the accelerator
    import json

    encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encode_json_string = json.encoder.encode_basestring
    decode_json = json.JSONDecoder().decode


class BadFrame(Exception):
    """A host frame this runtime cannot act on (it is reported on fd 2 and skipped)."""


def diagnose(message: str) -> None:
    """Writes a one-line diagnostic to fd 2 (the host treats it as stray stderr)."""
    line = f"mcp-runtime: {message[:2000]}\n".encode("utf-8", "backslashreplace")
    try:
        while line:
            line = line[_write(2, line) :]
    except OSError:
        pass


# --------------------------------------------------------------------------- frames


class FrameReader:
    """Reads host frames (u32 big-endian length, then payload) from a file descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()

    def read(self) -> bytes | None:
        """The next frame's payload, or None at end of input."""
        if not self._fill(4):
            return None
        end = 4 + int.from_bytes(self._buffer[:4], "big")
        if not self._fill(end):
            return None
        payload = bytes(self._buffer[4:end])
        del self._buffer[:end]
        return payload

    def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = _read(self._fd, max(size - len(self._buffer), READ_CHUNK))
            if not chunk:
                return False
            self._buffer += chunk
        return True


class FrameWriter:
    """Writes guest frames (marker, u32 big-endian length, payload) to a file descriptor."""

    def __init__(self, fd: int, nonce: str) -> None:
        self._fd = fd
        self._marker = MARKER_PREFIX + nonce.encode("ascii") + MARKER_SUFFIX

    def send(self, payload: bytes) -> None:
        data = memoryview(self._marker + len(payload).to_bytes(4, "big") + payload)
        while data:
            try:
                data = data[_write(self._fd, data) :]
            except BlockingIOError:  # user code made fd 1 non-blocking
                time.sleep(0.001)


def encode_frame(frame: dict[str, object]) -> bytes:
    return encode_json(frame).encode("utf-8")  # strict: never sends invalid UTF-8


def protocol_input_fd() -> int:
    """Moves the host's frames off fd 0 where the platform allows it.

    Child processes (and `os.read(0, ...)` in user code) then see an empty stdin instead of
    stealing protocol bytes. WASI has no `dup2`: there the runtime keeps reading fd 0.
    """
    if not hasattr(_os, "dup2"):
        return 0
    try:
        fd = _os.dup(0)
    except OSError:
        return 0
    try:
        null = _os.open(DEVNULL, _os.O_RDONLY)
        try:
            _os.dup2(null, 0)
        finally:
            _os.close(null)
    except OSError:
        _os.close(fd)
        return 0
    return fd


# --------------------------------------------------------------------------- output capture


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def utf8_prefix(text: str, limit: int) -> str:
    """The longest prefix of `text` that is at most `limit` bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def utf8_suffix(text: str, limit: int) -> str:
    """The longest suffix of `text` that is at most `limit` bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[len(data) - limit :].decode("utf-8", "ignore") if limit else ""


def decode_prefix(data: bytes) -> str:
    """Decodes the start of a UTF-8 stream, leaving out a character cut at its end."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=False)


def decode_suffix(data: bytes) -> str:
    """Decodes the end of a UTF-8 stream, leaving out a character cut at its start."""
    start = 0
    while start < min(3, len(data)) and data[start] & 0xC0 == 0x80:
        start += 1
    return data[start:].decode("utf-8", "replace")


class Output:
    """What a run keeps of one stream: `head + tail`, with `cut` bytes dropped between."""

    __slots__ = ("head", "tail", "cut")

    def __init__(self, head: str, tail: str, cut: int) -> None:
        self.head = head
        self.tail = tail
        self.cut = cut

    @property
    def text(self) -> str:
        return self.head + self.tail

    @property
    def cut_at(self) -> int | None:
        """Byte offset in `text` (UTF-8) where the bytes were dropped; None if none were."""
        return utf8_len(self.head) if self.cut else None

    def drop(self, count: int) -> bool:
        """Drops `count` more characters next to the cut, tail first. False if empty."""
        if not self.head and not self.tail:
            return False
        taken = min(count, len(self.tail))
        if taken:
            self.cut += utf8_len(self.tail[:taken])
            self.tail = self.tail[taken:]
        taken = min(count - taken, len(self.head))
        if taken:
            self.cut += utf8_len(self.head[len(self.head) - taken :])
            self.head = self.head[: len(self.head) - taken]
        return True


class CaptureSink(io.BufferedIOBase):
    """The byte end of a capture stream: keeps a head and a tail, counts everything.

    Memory stays below `output_limit` plus one tail's worth, whatever is written.
    """

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.reset(0)

    def reset(self, limit: int) -> None:
        self._limit = limit
        self._head_limit = limit * 3 // 4
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        size = len(view)
        self._total += size
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if view and self._tail_limit:
            if len(view) >= self._tail_limit:
                self._tail[:] = view[len(view) - self._tail_limit :]
            else:
                self._tail += view
                if len(self._tail) > 2 * self._tail_limit:
                    del self._tail[: len(self._tail) - self._tail_limit]
        return size

    def output(self) -> Output:
        """What was written since `reset`, as text that fits in `output_limit` bytes."""
        head = bytes(self._head)
        tail = bytes(self._tail[max(len(self._tail) - self._tail_limit, 0) :])
        kept_all = len(head) + len(tail) == self._total
        if kept_all:
            text = (head + tail).decode("utf-8", "replace")
            size = utf8_len(text)  # differs from _total only for invalid UTF-8
            head_text = utf8_prefix(text, self._head_limit)
            tail_text = text[len(head_text) :]
        else:
            size = self._total
            head_text = utf8_prefix(decode_prefix(head), self._head_limit)
            tail_text = decode_suffix(tail)
        tail_text = utf8_suffix(tail_text, self._limit - utf8_len(head_text))
        cut = size - utf8_len(head_text) - utf8_len(tail_text)
        return Output(head_text, tail_text, max(cut, 0 if kept_all else 1))


class Capture:
    """One of the session's `sys.stdout` / `sys.stderr` replacements.

    The same stream object serves every run (so a `logging` handler made in one run still
    writes into later runs); each run starts it empty. Writes are buffered by a C-level
    `TextIOWrapper`, so printing many short lines stays cheap.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._open()

    def _open(self) -> None:
        self.sink = CaptureSink(self._name)
        self.stream = io.TextIOWrapper(
            self.sink, encoding="utf-8", errors="backslashreplace", newline="\n"
        )

    def begin(self, limit: int) -> None:
        try:
            usable = not self.stream.closed
        except ValueError:  # detached by user code
            usable = False
        if usable:
            self._flush()
        else:  # user code closed or detached it in an earlier run
            self._open()
        self.sink.reset(limit)

    def finish(self) -> Output:
        self._flush()
        return self.sink.output()

    def _flush(self) -> None:
        try:
            self.stream.flush()
        except Exception:  # closed or broken by user code: keep what the sink has
            pass


def empty_stdin() -> io.TextIOWrapper:
    """A stdin that is always at end of file: `input()` raises EOFError."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8")


# --------------------------------------------------------------------------- errors


def describe_error(exc: BaseException) -> dict[str, str]:
    """The `error` object of a result: type, message and a traceback of user frames."""
    try:
        return {
            "type": type_name(exc),
            "message": clip(error_message(exc), MESSAGE_LIMIT),
            "traceback": clip(format_traceback(exc), TRACEBACK_LIMIT),
        }
    except BaseException as failure:  # a hostile __str__, __repr__ or __module__
        return {
            "type": type(exc).__name__,
            "message": f"<the error could not be described: {type(failure).__name__}>",
            "traceback": "",
        }


RUNTIME_FILE = describe_error.__code__.co_filename


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def error_message(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "" if exc.code is None else str(exc.code)
    try:
        return str(exc)
    except Exception:
        return "<exception str() failed>"


def format_traceback(exc: BaseException) -> str:
    import linecache
    import traceback

    try:
        share_sources(linecache)  # again, in case user code cleared the cache
    except Exception:  # user code replaced linecache.cache
        pass
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    for part in exception_chain(report):
        part.stack = traceback.StackSummary.from_list(user_frames(part.stack))
    return "".join(report.format())


def exception_chain(report: object) -> list:
    """Every TracebackException in `report`: causes, contexts and group members."""
    found: list = []
    seen: set[int] = set()
    pending = [report]
    while pending:
        part = pending.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        found.append(part)
        pending += [part.__cause__, part.__context__]
        pending += getattr(part, "exceptions", None) or []
    return found


def user_frames(stack: list) -> list:
    """Drops the runtime's frames, and the plumbing (asyncio) between it and user code."""
    frames = [frame for frame in stack if frame.filename != RUNTIME_FILE]
    for index, frame in enumerate(frames):
        if frame.filename.startswith("<run-"):
            return frames[index:]
    return frames


def clip(text: str, limit: int) -> str:
    """`text` as valid UTF-8 of at most about `limit` bytes, with an inline cut note."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data.decode("utf-8")
    head = decode_prefix(data[: limit * 3 // 4])
    tail = decode_suffix(data[len(data) - limit // 4 :])
    dropped = len(data) - utf8_len(head) - utf8_len(tail)
    return f"{head}\n[... {dropped} bytes cut ...]\n{tail}"


# Every run's source by file name (`<run-N>`). Tracebacks, `inspect` and `warnings` read
# sources through `linecache`, which is slow to import (`tokenize`, `re`: about 30 ms on
# WASI), so the runtime never imports it for a run that succeeds: the sources go into
# `linecache.cache` when it is imported (`ImportHooks`) and, once it is, at each run.
RUN_SOURCES: dict[str, str] = {}


def remember_source(filename: str, code: str) -> None:
    """Lets tracebacks, `inspect` and `warnings` show the lines of a run."""
    RUN_SOURCES[filename] = code
    linecache = sys.modules.get("linecache")
    if linecache is not None:
        try:
            linecache.cache[filename] = source_entry(filename, code)
        except Exception:  # user code replaced linecache or its cache
            pass


def source_entry(filename: str, code: str) -> tuple:
    """A `linecache.cache` entry: size, mtime (None: never checked), lines, file name."""
    return (len(code), None, code.splitlines(keepends=True), filename)


def share_sources(linecache: ModuleType) -> None:
    """Puts the sources of runs that `linecache.cache` lacks into it."""
    cache = linecache.cache
    for filename, code in RUN_SOURCES.items():
        if filename not in cache:
            cache[filename] = source_entry(filename, code)


# --------------------------------------------------------------------------- interrupts


class Interrupts:
    """SIGINT (the host's soft interrupt) raises KeyboardInterrupt only in user code.

    Between runs it is ignored, so it can never tear a frame in half. While a coroutine
    runs, `asyncio.Runner`'s own handler takes over (it cancels the main task).
    """

    def __init__(self) -> None:
        self.in_user_code = False
        self._signal: ModuleType | None = None
        if NO_SIGNALS_OR_SOCKETS:  # nothing to guard
            return
        try:
            import _signal as signal  # what `signal` wraps, without its enums (and `enum`)

            signal.signal(signal.SIGINT, self._on_sigint)
            self._signal = signal
        except (ImportError, AttributeError, OSError, RuntimeError, ValueError):
            pass

    def _on_sigint(self, signum: int, frame: object) -> None:
        if self.in_user_code:
            raise KeyboardInterrupt

    def lend_to_asyncio(self) -> bool:
        """Installs Python's default SIGINT handler (asyncio.Runner replaces only that one)."""
        signal = self._signal
        if signal is None or signal.getsignal(signal.SIGINT) != self._on_sigint:
            return False
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return True

    def take_back(self) -> None:
        signal = self._signal
        if signal is not None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._on_sigint)


# --------------------------------------------------------------------------- asyncio

_pipeless_loop: type | None = None
_socketpair_ok: bool | None = None


def socketpair_works() -> bool:
    """False where asyncio's self-pipe cannot be made (CPython on WASI)."""
    global _socketpair_ok
    if _socketpair_ok is None:
        try:
            import socket

            left, right = socket.socketpair()
        except (ImportError, AttributeError, OSError):
            _socketpair_ok = False
        else:
            left.close()
            right.close()
            _socketpair_ok = True
    return _socketpair_ok


def pipeless_loop_class(asyncio: ModuleType) -> type:
    """A selector event loop without the self-pipe (which needs `socket.socketpair`).

    The self-pipe only wakes the loop for other threads and signal handlers; the platforms
    that lack socketpair (WASI) have neither.
    """
    global _pipeless_loop
    if _pipeless_loop is None:

        class PipelessEventLoop(asyncio.SelectorEventLoop):
            def _make_self_pipe(self) -> None:
                self._ssock = self._csock = None

            def _close_self_pipe(self) -> None:
                pass

            def _write_to_self(self) -> None:
                pass

            def add_signal_handler(self, sig: int, callback: object, *args: object) -> None:
                raise NotImplementedError("signal handlers are not available in this sandbox")

        _pipeless_loop = PipelessEventLoop
    return _pipeless_loop


def fix_asyncio(asyncio: ModuleType) -> None:
    """Makes `asyncio.run()` and friends in user code use the pipeless loop where needed."""
    if socketpair_works():
        return
    loop_class = pipeless_loop_class(asyncio)

    class PipelessPolicy(asyncio.DefaultEventLoopPolicy):
        _loop_factory = loop_class

    asyncio.set_event_loop_policy(PipelessPolicy())


class ImportHooks:
    """A `sys.meta_path` finder that adapts modules right after they load.

    So the runtime need not import them itself, and importing them stays free until someone
    does: `linecache` gets the runs' sources (`share_sources`) and, on platforms without
    socketpair, `asyncio` gets the pipeless loop (`fix_asyncio`).
    """

    def __init__(self) -> None:
        self._hooks = {"linecache": share_sources}
        if NO_SIGNALS_OR_SOCKETS:
            self._hooks["asyncio"] = fix_asyncio

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        hook = self._hooks.get(name)
        if hook is None:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = PatchingLoader(spec.loader, hook)
                return spec
        return None


class PatchingLoader:
    """Wraps a module's loader to run a hook on the module after it executes."""

    def __init__(self, loader: object, hook: object) -> None:
        self._loader = loader
        self._hook = hook

    def __getattr__(self, name: str) -> object:
        return getattr(self._loader, name)

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        try:
            self._hook(module)
        except Exception as exc:
            diagnose(f"could not adapt {module.__name__} to this sandbox: {exc!r}")


class EventLoop:
    """The session's one event loop, made on first use and kept across runs.

    Tasks, queues and other loop-bound objects made in one run keep working in the next.
    """

    def __init__(self, interrupts: Interrupts) -> None:
        self._interrupts = interrupts
        self._runner: object | None = None

    def run(self, coroutine: object) -> object:
        runner = self._get_runner()
        lent = self._interrupts.lend_to_asyncio()
        try:
            return runner.run(coroutine)
        finally:
            if lent:
                self._interrupts.take_back()

    def _get_runner(self) -> object:
        import asyncio

        runner = self._runner
        if runner is not None and not runner.get_loop().is_closed():
            return runner
        factory = None if socketpair_works() else pipeless_loop_class(asyncio)
        runner = asyncio.Runner(loop_factory=factory)
        if factory is not None:  # asyncio.Runner sets the current loop only for its default
            asyncio.set_event_loop(runner.get_loop())
        self._runner = runner
        return runner


# --------------------------------------------------------------------------- site's builtins

CREDITS = """\
    Thanks to CWI, CNRI, BeOpen.com, Zope Corporation and a cast of thousands
    for supporting Python development.  See www.python.org for more information."""


def install_site_builtins() -> None:
    """Adds what `site` adds to builtins (the guest runs with -S, without `site`).

    `exit`, `quit`, `help`, `copyright`, `credits` and `license`, made as `site` makes them
    from the small frozen `_sitebuiltins`; `help(...)` imports `pydoc` only when called.
    """
    if hasattr(builtins, "exit"):  # `site` ran after all: keep its objects
        return
    try:
        import _sitebuiltins
    except ImportError:  # pragma: no cover - every CPython 3.4+ has it
        return
    eof = "Ctrl-Z plus Return" if sys.platform == "win32" else "Ctrl-D (i.e. EOF)"
    builtins.quit = _sitebuiltins.Quitter("quit", eof)
    builtins.exit = _sitebuiltins.Quitter("exit", eof)
    builtins.help = _sitebuiltins._Helper()
    printer = _sitebuiltins._Printer
    builtins.copyright = site_printer(printer, "copyright", sys.copyright)
    builtins.credits = site_printer(printer, "credits", CREDITS)
    here = getattr(sys, "_stdlib_dir", None)
    builtins.license = site_printer(
        printer,
        "license",
        "See https://www.python.org/psf/license/",
        ("LICENSE.txt", "LICENSE") if here else (),
        (f"{here}/..", here, ".") if here else (),
    )


def site_printer(cls: type, name: str, data: str, files: tuple = (), dirs: tuple = ()) -> object:
    """`_sitebuiltins._Printer(name, data, files, dirs)`, without the `import os` its
    `__init__` does only to join the paths (`os` is not loaded at start-up)."""
    if _os.__name__ != "posix" or not hasattr(cls, "_Printer__setup"):
        return cls(name, data, files, dirs)
    printer = cls.__new__(cls)
    printer._Printer__name = name
    printer._Printer__data = data
    printer._Printer__lines = None
    printer._Printer__filenames = [
        (folder if folder.endswith("/") else folder + "/") + filename  # os.path.join
        for folder in dirs
        for filename in files
    ]
    return printer


# --------------------------------------------------------------------------- the `mcp` package


class MCPError(RuntimeError):
    """Raised by the `mcp.runtime` helpers."""


MCPError.__module__ = "mcp"


def server_entries(catalogue: object) -> tuple[dict[str, str], ...]:
    """The hello catalogue as `{name, alias, description}` dicts (bad entries skipped)."""
    if not isinstance(catalogue, list):
        raise BadFrame("hello.catalogue must be a list")
    entries = []
    for entry in catalogue:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            alias = entry.get("alias")
            description = entry.get("description")
            entries.append(
                {
                    "name": entry["name"],
                    "alias": alias if isinstance(alias, str) else entry["name"],
                    "description": description if isinstance(description, str) else "",
                }
            )
        else:
            diagnose(f"skipped a malformed catalogue entry: {entry!r:.200}")
    return tuple(entries)


CAPABILITIES = """\
This sandbox runs your Python ({python}, {implementation}) in one persistent session.
- Globals persist between runs: variables, imports, functions and classes stay defined.
- Top-level `await` works; the asyncio event loop is kept, so tasks and queues created in
  one run are still usable in the next.
- print() output comes back per run, up to {limit} bytes per stream: the start and the end
  are kept and the middle is cut (the cut is reported).
- stdin is empty: input() raises EOFError. exit() / sys.exit() only end the current run.
- Files: /tmp and /workspace are writable. There is no network access.
- MCP servers: pass servers=[...] with a run to load proxies named mcp_<alias> into globals.
Helpers (`import mcp.runtime as runtime`):
- runtime.discovered_servers(detailed=False): servers you can load (names, or name and
  description dicts).
- runtime.describe_server(name): what is known about one server.
- runtime.list_servers_sync() / await runtime.list_servers(): servers loaded in this run.
- runtime.capability_summary(): this text. Helpers raise runtime.MCPError (mcp.MCPError).
"""


def install_mcp_package(session: "Session") -> None:
    """Puts our `mcp` package and `mcp.runtime` module in `sys.modules`.

    User code imports them (`import mcp.runtime as runtime`, `from mcp import runtime`);
    nothing is bound in the user's globals.
    """
    spec_class = type(sys.__spec__)  # importlib's ModuleSpec, without importing importlib
    package = ModuleType("mcp", "The sandbox's MCP helpers: see mcp.runtime.")
    package.__path__ = []
    package.__spec__ = spec_class("mcp", None, is_package=True)
    runtime = ModuleType("mcp.runtime", "Helpers for MCP servers in this sandbox.")
    runtime.__spec__ = spec_class("mcp.runtime", None)
    helpers = runtime_helpers(session)
    for name, value in helpers.items():
        if isinstance(value, FunctionType):
            value.__module__ = "mcp.runtime"
            value.__qualname__ = name
        setattr(runtime, name, value)
    runtime.__all__ = sorted(helpers)
    package.runtime = runtime
    package.MCPError = MCPError
    package.__all__ = ["MCPError", "runtime"]
    sys.modules["mcp"] = package
    sys.modules["mcp.runtime"] = runtime


def runtime_helpers(session: "Session") -> dict[str, object]:
    """The public functions of `mcp.runtime`, reading the session's state."""

    def capability_summary() -> str:
        """A short manual of what this sandbox can do."""
        return CAPABILITIES.format(
            python=python_version(),
            implementation=implementation(),
            limit=session.output_limit,
        )

    def discovered_servers(detailed: bool = False) -> tuple:
        """Servers this session can load: names, or `{name, description}` dicts."""
        if detailed:
            return tuple(
                {"name": entry["name"], "description": entry["description"]}
                for entry in session.catalogue
            )
        return tuple(entry["name"] for entry in session.catalogue)

    def list_servers_sync() -> tuple:
        """Servers loaded in the current run (their proxies are `mcp_<alias>` globals)."""
        return tuple(session.loaded_servers)

    async def list_servers() -> tuple:
        """Servers loaded in the current run (their proxies are `mcp_<alias>` globals)."""
        return tuple(session.loaded_servers)

    def describe_server(name: str) -> dict[str, str]:
        """What is known about one server, by name or alias."""
        for entry in session.catalogue:
            if name in (entry["name"], entry["alias"]):
                return dict(entry)
        known = ", ".join(entry["name"] for entry in session.catalogue) or "none"
        raise MCPError(f"unknown MCP server {name!r}; known servers: {known}")

    return {
        "MCPError": MCPError,
        "capability_summary": capability_summary,
        "describe_server": describe_server,
        "discovered_servers": discovered_servers,
        "list_servers": list_servers,
        "list_servers_sync": list_servers_sync,
    }


# --------------------------------------------------------------------------- the session


def python_version() -> str:
    return sys.version.split()[0]


def implementation() -> str:
    return f"{sys.implementation.name}-{sys.platform}"


def new_main_module() -> dict[str, object]:
    """The user's persistent globals, as the dict of a fresh `__main__` module.

    Registered as `sys.modules["__main__"]` so that pickle, dataclasses and typing find
    classes defined by user code.
    """
    main = ModuleType("__main__")
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    return main.__dict__


def frame_field(frame: dict, name: str, kind: type) -> object:
    value = frame.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadFrame(f"{frame.get('type')}.{name} must be {kind.__name__}")
    return value


class Session:
    """One guest session: the frame loop, the user's globals and the run machinery."""

    def __init__(self) -> None:
        self.output_limit = 0
        self.catalogue: tuple[dict[str, str], ...] = ()
        self.loaded_servers: tuple[str, ...] = ()
        self.state: object = None
        self._reader = FrameReader(protocol_input_fd())
        self._writer: FrameWriter | None = None
        self._frame_cap = FRAME_CAP_SLACK
        self._interrupts = Interrupts()
        self._loop = EventLoop(self._interrupts)
        self._stdout = Capture("<stdout>")
        self._stderr = Capture("<stderr>")
        self._real_stdout = sys.stdout
        self._real_stderr = sys.stderr
        self.globals = new_main_module()
        sys.stdin = sys.__stdin__ = empty_stdin()
        sys.meta_path.insert(0, ImportHooks())
        install_site_builtins()
        install_mcp_package(self)

    def serve(self) -> None:
        """Answers host frames until the host closes stdin."""
        while True:
            try:
                payload = self._reader.read()
            except KeyboardInterrupt:  # user code put back Python's own SIGINT handler
                continue
            except OSError as exc:
                diagnose(f"reading frames failed: {exc!r}")
                return
            if payload is None:
                return
            try:
                self._dispatch(payload)
            except BadFrame as exc:
                diagnose(f"ignored a host frame: {exc}")
            except BaseException as exc:  # the frame loop outlives everything
                diagnose(f"internal error: {type(exc).__name__}: {exc}")

    def _dispatch(self, payload: bytes) -> None:
        try:
            frame = decode_json(payload.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
            raise BadFrame(f"not UTF-8 JSON ({exc})") from None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "hello":
            self._on_hello(frame)
        elif kind == "run":
            self._on_run(frame)
        else:
            raise BadFrame(f"unexpected frame type {kind!r}")

    def _send(self, payload: bytes) -> None:
        if self._writer is None:
            raise BadFrame("no hello yet, so no nonce to frame a reply with")
        self._writer.send(payload)

    def _on_hello(self, frame: dict) -> None:
        if self._writer is not None:
            raise BadFrame("a second hello")
        nonce = frame_field(frame, "nonce", str)
        if len(nonce) != NONCE_LENGTH or not NONCE_DIGITS.issuperset(nonce):
            raise BadFrame("hello.nonce must be 32 lowercase hex digits")
        limit = frame_field(frame, "output_limit", int)
        if limit < 0:
            raise BadFrame("hello.output_limit must not be negative")
        self.catalogue = server_entries(frame.get("catalogue", []))
        self.output_limit = limit
        self.state = frame.get("state")
        self._frame_cap = min(2 * limit + FRAME_CAP_SLACK, FRAME_CAP_CEILING)
        self._writer = FrameWriter(1, nonce)
        ready = {"type": "ready", "python": python_version(), "implementation": implementation()}
        self._send(encode_frame(ready))
        # The process's first compile() sets up the AST types (about 4 ms on WASI): pay it now,
        # while the host has `ready` and usually no run is waiting yet.
        compile("", "<warm-up>", "exec", dont_inherit=True)

    def _on_run(self, frame: dict) -> None:
        if self._writer is None:
            raise BadFrame("a run before hello")
        run_id = frame_field(frame, "id", int)
        code = frame_field(frame, "code", str)
        servers = frame.get("servers", [])
        if not isinstance(servers, list) or not all(isinstance(s, str) for s in servers):
            raise BadFrame("run.servers must be a list of strings")
        try:
            payload = self._run(run_id, code)
        except BaseException as exc:  # a bug here must still answer the run
            diagnose(f"internal error in run {run_id}: {type(exc).__name__}: {exc}")
            payload = encode_frame(internal_failure(run_id, exc))
        self._send(payload)

    def _run(self, run_id: int, code: str) -> bytes:
        self._stdout.begin(self.output_limit)
        self._stderr.begin(self.output_limit)
        failure: BaseException | None = None
        started = time.perf_counter()
        sys.stdout, sys.stderr = self._stdout.stream, self._stderr.stream
        try:
            self._execute(f"<run-{run_id}>", code)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt end the run only
            failure = exc
        finally:
            duration_ms = (time.perf_counter() - started) * 1000
            sys.stdout, sys.stderr = self._real_stdout, self._real_stderr
        error = None if failure is None else describe_error(failure)
        failure = None  # drop the traceback's frames
        flush_real_streams()
        return self._result_payload(run_id, error, duration_ms)

    def _execute(self, filename: str, code: str) -> None:
        remember_source(filename, code)
        self._interrupts.in_user_code = True
        try:
            compiled = compile(
                code, filename, "exec", flags=PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
            )
            if compiled.co_flags & CO_COROUTINE:
                self._loop.run(eval(compiled, self.globals))
            else:
                exec(compiled, self.globals)
        finally:
            self._interrupts.in_user_code = False

    def _result_payload(self, run_id: int, error: dict | None, duration_ms: float) -> bytes:
        """Encodes the result, dropping more output if JSON escaping outgrew the host's cap."""
        out, err = self._stdout.finish(), self._stderr.finish()
        while True:
            payload = encode_frame(
                {
                    "type": "result",
                    "id": run_id,
                    "stdout": out.text,
                    "stderr": err.text,
                    "stdout_cut": out.cut,
                    "stderr_cut": err.cut,
                    "stdout_cut_at": out.cut_at,
                    "stderr_cut_at": err.cut_at,
                    "error": error,
                    "duration_ms": duration_ms,
                }
            )
            excess = len(payload) - self._frame_cap
            if excess <= 0:
                return payload
            escaped_out, escaped_err = encode_json_string(out.text), encode_json_string(err.text)
            larger = out if len(escaped_out) >= len(escaped_err) else err
            if not larger.drop(excess):  # every character costs at least one byte
                return payload


def internal_failure(run_id: int, exc: BaseException) -> dict[str, object]:
    return {
        "type": "result",
        "id": run_id,
        "stdout": "",
        "stderr": "",
        "stdout_cut": 0,
        "stderr_cut": 0,
        "stdout_cut_at": None,
        "stderr_cut_at": None,
        "error": {
            "type": "RuntimeError",
            "message": f"the sandbox runtime failed: {type(exc).__name__}",
            "traceback": "",
        },
        "duration_ms": 0.0,
    }


def flush_real_streams() -> None:
    """Pushes out what user code wrote to `sys.__stdout__` / `sys.__stderr__` (stray bytes)."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


def main() -> None:
    """Entry point called by the bootstrap: serve frames, exit 0 at end of input."""
    Session().serve()
    flush_real_streams()
    _os._exit(0)

# --------------------------------------------------------------------------- asyncio

_pipeless_loop: type | None = None
_socketpair_ok: bool | None = None


def loop_is_idle(loop: object) -> bool:
    """True when `loop` (a selector loop) has nothing to do but wait: no ready callbacks, no
    timers, no descriptors watched but its own self-pipe (which only wakes it for signals
    and other threads). False when that cannot be told."""
    try:
        if loop._ready or loop._scheduled:  # type: ignore[attr-defined]
            return False
        watched = loop._selector.get_map()  # type: ignore[attr-defined]
        if not watched:
            return True
        self_pipe = loop._ssock  # type: ignore[attr-defined]
        return len(watched) == 1 and self_pipe is not None and self_pipe.fileno() in watched
    except (AttributeError, OSError, ValueError):
        return False


def first_step_now(loop: object) -> bool:
    """Runs the main task's first step at once, as the loop's first turn would have.

    Called when the loop had nothing else to do (`loop_is_idle`: no callbacks, timers or
    watched descriptors) before the task was made, so that step is the only ready callback
    and a turn would run just it. The loop counts as running during the step, as in a turn
    (`_run_forever_setup`, CPython 3.13+). Code that then finishes without waiting for
    anything and leaves the loop idle (an awaited proxied call answered synchronously does)
    needs no loop turn at all: 60-90 µs a run on WASI. False when the step was not taken.
    """
    ready = loop._ready  # type: ignore[attr-defined]
    if len(ready) != 1:  # a task factory scheduled more, or ran the step itself
        return False
    handle = ready.popleft()
    loop._run_forever_setup()  # type: ignore[attr-defined]
    try:
        handle._run()
    finally:
        loop._run_forever_cleanup()  # type: ignore[attr-defined]
    return True


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
    does: `linecache` gets the runs' sources (`share_sources`), `inspect` gives the tool
    proxies their signatures (`attach_signatures`), `matplotlib.figure` learns which figures
    the code saved itself (`track_saved_figures`) and, on platforms without socketpair,
    `asyncio` gets the pipeless loop (`fix_asyncio`). A few modules need the stage set
    before they load instead: matplotlib gets its config dir and figure backend
    (`prepare_matplotlib`), once; the backend module itself is made here on request
    (`FiguresBackendLoader`).
    """

    def __init__(self) -> None:
        self._hooks = {
            "linecache": share_sources,
            "inspect": attach_signatures,
            "matplotlib.figure": track_saved_figures,
            "urllib.request": route_urllib_through_host,
        }
        if NO_SIGNALS_OR_SOCKETS:
            self._hooks["asyncio"] = fix_asyncio
        self._before = {"matplotlib": prepare_matplotlib}

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        before = self._before.pop(name, None)
        if before is not None:
            try:
                before(name)
            except Exception as exc:
                diagnose(f"could not prepare {name} for this sandbox: {exc!r}")
        hook = self._hooks.get(name)
        if hook is None:
            if name == FIGURES_BACKEND:
                return FiguresBackendLoader.spec()
            if name.startswith("mcp.servers"):
                not_loaded(name)
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = None if finder is self or find is None else find(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = PatchingLoader(spec.loader, hook)
                return spec
        return None


def not_loaded(name: str) -> None:
    """`import mcp.servers.<alias>` of a server no run has loaded: say what to do."""
    if name == "mcp.servers":
        why = "no run of this session has loaded an MCP server"
    elif name.startswith("mcp.servers."):
        why = f"no run of this session has loaded an MCP server with alias {name[12:]!r}"
    else:
        return
    # name=None: `from mcp.servers import x` then shows this message, not its own
    raise ModuleNotFoundError(f"No module named {name!r}: {why}; pass servers=[...] with the run")


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

    Tasks, queues and other loop-bound objects made in one run keep working in the next, and
    so do context variables (one context for every run's main task). It runs a coroutine as
    `asyncio.Runner.run` does, SIGINT included (see `Interrupts`), without swapping signal
    handlers on every run.
    """

    def __init__(self, interrupts: Interrupts) -> None:
        self._interrupts = interrupts
        self._loop: object | None = None
        self._context: object | None = None

    def run(self, coroutine: object) -> object:
        import asyncio

        loop = self._get_loop(asyncio)
        step_now = loop_is_idle(loop) and hasattr(loop, "_run_forever_setup")
        task = loop.create_task(coroutine, context=self._context)
        self._interrupts.cancel_on_sigint(loop, task)
        try:
            if step_now and first_step_now(loop) and task.done() and loop_is_idle(loop):
                return task.result()
            return loop.run_until_complete(task)
        except asyncio.CancelledError:
            uncancel = getattr(task, "uncancel", None)
            if self._interrupts.main_task_done() and uncancel is not None and uncancel() == 0:
                raise KeyboardInterrupt() from None
            raise
        finally:
            self._interrupts.main_task_done()  # (again, after a cancellation: harmless)
            if task.done() and not task.cancelled():
                # The run reports what the task raised (SystemExit and KeyboardInterrupt
                # leave a step past the task): asyncio must not log it as never retrieved
                # when the task is collected, into a later run's stderr.
                task.exception()

    def _get_loop(self, asyncio: ModuleType) -> object:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            return loop
        import contextvars

        factory = asyncio.new_event_loop if socketpair_works() else pipeless_loop_class(asyncio)
        loop = factory()
        asyncio.set_event_loop(loop)
        self._loop, self._context = loop, contextvars.copy_context()
        return loop

# --------------------------------------------------------------------------- interrupts


class Interrupts:
    """SIGINT (the host's soft interrupt) raises KeyboardInterrupt only in user code.

    Between runs it is ignored, so it can never tear a frame in half. While the session's
    loop runs a run's coroutine, it cancels that task instead, as `asyncio.run` would (a
    second one raises): the run then ends with KeyboardInterrupt. Code that waits for the
    host synchronously inside the coroutine (`blocking`) is interrupted where it waits.
    """

    def __init__(self) -> None:
        self.in_user_code = False
        self.shielded = False  # reading protocol bytes for user code: hold SIGINT back
        self.missed = False  # a SIGINT came while shielded
        self.blocking = False  # a coroutine waits for the host synchronously
        self._main: tuple[object, object] | None = None  # (loop, task) of the run
        self._cancelled_main = False
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
        if self.shielded:
            self.missed = True
        elif not self.in_user_code:
            return
        elif self._main is not None and not self.blocking and not self._cancelled_main:
            loop, task = self._main
            if task.done():  # type: ignore[attr-defined]
                raise KeyboardInterrupt
            self._cancelled_main = True
            task.cancel()  # type: ignore[attr-defined]
            loop.call_soon_threadsafe(_nothing)  # type: ignore[attr-defined]
        else:
            raise KeyboardInterrupt

    def cancel_on_sigint(self, loop: object, task: object) -> None:
        """While `task` runs as the run's main task, SIGINT cancels it."""
        self._main = (loop, task)
        self._cancelled_main = False

    def main_task_done(self) -> bool:
        """Ends `cancel_on_sigint`; True when a SIGINT cancelled the task."""
        cancelled, self._main, self._cancelled_main = self._cancelled_main, None, False
        return cancelled

    def armed(self) -> bool:
        """Whether a SIGINT now raises KeyboardInterrupt (our handler, in user code, outside
        a coroutine or blocking in one)."""
        signal = self._signal
        return (
            signal is not None
            and self.in_user_code
            and (self._main is None or self.blocking)
            and signal.getsignal(signal.SIGINT) == self._on_sigint
        )


def _nothing() -> None:
    """A callback that only wakes the event loop."""


def end_other_processes(interpreter_pid: int) -> None:
    """After an interrupted run, ends every other process of the sandbox but its init.

    A stopped run leaves nothing running: the children user code forked (a fork bomb's
    spinners, a forgotten `subprocess`) get SIGKILL in one `kill(-1)`, which the kernel sends
    to every process of the namespace but its init and the caller, without a window for new
    forks. Our own children are reaped here; the init reaps the rest. Only in the interpreter
    itself, and only under our own init: on a host, `kill(-1)` would reach the user's
    processes.
    """
    if not UNDER_OWN_INIT or _os.getpid() != interpreter_pid:
        return
    try:
        _os.kill(-1, 9)  # SIGKILL
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                pid, _status = _os.waitpid(-1, _os.WNOHANG)
            except ChildProcessError:  # none of ours left; the init reaps the orphans
                pid = 0
            if pid > 0:
                continue
            ours = (1, interpreter_pid)
            if all(int(p) in ours for p in _os.listdir("/proc") if p.isdigit()):
                return
            REAL_SLEEP(0.002)
    except OSError as exc:  # nobody else to end (ESRCH), or no /proc
        if exc.errno != 3:
            diagnose(f"could not end the sandbox's other processes: {exc!r}")

# --------------------------------------------------------------------------- interrupts


class Interrupts:
    """SIGINT (the host's soft interrupt) raises KeyboardInterrupt only in user code.

    Between runs it is ignored, so it can never tear a frame in half. While a coroutine
    runs, `asyncio.Runner`'s own handler takes over (it cancels the main task).
    """

    def __init__(self) -> None:
        self.in_user_code = False
        self.shielded = False  # reading protocol bytes for user code: hold SIGINT back
        self.missed = False  # a SIGINT came while shielded
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
        elif self.in_user_code:
            raise KeyboardInterrupt

    def armed(self) -> bool:
        """Whether a SIGINT now raises KeyboardInterrupt (our handler, in user code)."""
        signal = self._signal
        return (
            signal is not None
            and self.in_user_code
            and signal.getsignal(signal.SIGINT) == self._on_sigint
        )

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

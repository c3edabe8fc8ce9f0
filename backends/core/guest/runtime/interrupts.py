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

# --------------------------------------------------------------------------- frames


class FrameReader:
    """Reads host frames (u32 big-endian length, then payload) from a file descriptor.

    Bytes read ahead stay buffered: `read` blocks for the next frame, while the rpc client
    (`HostCalls`) also feeds it chunk by chunk from an event loop and pops whole frames.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()

    def read(self) -> bytes | None:
        """The next frame's payload, or None at end of input."""
        while (payload := self.pop()) is None:
            chunk = _read(self.fd, max(self.wanted(), READ_CHUNK))
            if not chunk:
                return None
            self._buffer += chunk
        return payload

    def pop(self) -> bytes | None:
        """The next frame's payload if it is wholly buffered, else None."""
        buffer = self._buffer
        if len(buffer) < 4:
            return None
        end = 4 + int.from_bytes(buffer[:4], "big")
        if len(buffer) < end:
            return None
        payload = bytes(buffer[4:end])
        del buffer[:end]
        return payload

    def feed(self, chunk: bytes) -> None:
        self._buffer += chunk

    def wanted(self) -> int:
        """How many more bytes the next frame needs (at least 1)."""
        have = len(self._buffer)
        if have < 4:
            return 4 - have
        return max(4 + int.from_bytes(self._buffer[:4], "big") - have, 1)


class FrameWriter:
    """Writes guest frames (marker, u32 big-endian length, payload) to a file descriptor."""

    def __init__(self, fd: int, nonce: str) -> None:
        self._fd = fd
        self._marker = MARKER_PREFIX + nonce.encode("ascii") + MARKER_SUFFIX
        self._lock = _thread.allocate_lock()  # user threads print (output frames) too

    def send(self, payload: bytes) -> None:
        data = memoryview(self._marker + len(payload).to_bytes(4, "big") + payload)
        with self._lock:
            while data:
                try:
                    data = data[_write(self._fd, data) :]
                except BlockingIOError:  # user code made fd 1 non-blocking
                    REAL_SLEEP(0.001)  # not the replacement that would send a frame here


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

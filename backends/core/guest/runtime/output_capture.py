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


# What the host writes escaped in text it sends the client (`src/mcp/terminal.rs`): C0
# controls but newline and tab, DEL, C1 controls, bidirectional overrides and isolates.
_C0_AND_DEL = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])
_WIDE_CONTROLS = frozenset([*range(0x80, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)])


def has_terminal_controls(data: bytes) -> bool:
    """True when the host would show some of `data` (UTF-8) escaped."""
    if len(data.translate(None, _C0_AND_DEL)) != len(data):
        return True
    if b"\xc2" not in data and b"\xe2" not in data:
        return False
    return not _WIDE_CONTROLS.isdisjoint(map(ord, data.decode("utf-8", "replace")))


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

    def reset(self, limit: int, spool_path: str | None = None) -> None:
        self._limit = limit
        self._head_limit = limit * 3 // 4
        self._tail_limit = limit - self._head_limit
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0
        self._spool_path = spool_path
        self._spool = None
        self.saved: str | None = None
        self.streamer: OutputStreamer | KeepingStreamer | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        size = len(view)
        if self.streamer is not None:
            self.streamer.feed(view)
        if self._spool is not None:
            self._spool_write(view)
        self._total += size
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += view[:room]
            view = view[room:]
        if view and self._spool is None and self._spool_path is not None:
            # The head is full: from here on the cap may cut, so keep everything in a file.
            self._start_spool(view)
        if view and self._tail_limit:
            if len(view) >= self._tail_limit:
                self._tail[:] = view[len(view) - self._tail_limit :]
            else:
                self._tail += view
                if len(self._tail) > 2 * self._tail_limit:
                    del self._tail[: len(self._tail) - self._tail_limit]
        return size

    def _start_spool(self, rest: memoryview) -> None:
        path, self._spool_path = self._spool_path, None
        try:
            self._spool = open(path, "wb", buffering=1 << 16)
            self._spool.write(self._head)
            self._spool.write(rest)
            self.saved = path
        except OSError:
            self._close_spool()

    def _spool_write(self, view: memoryview) -> None:
        try:
            self._spool.write(view)
        except OSError:  # scratch space full: keep what is there
            self._close_spool()

    def _close_spool(self) -> None:
        spool, self._spool = self._spool, None
        if spool is not None:
            try:
                spool.close()
            except OSError:
                pass

    def save_whole(self, text: str) -> None:
        """Writes `text`, the whole stream, to the spool file: for a stream the run's joint
        budget cuts although this sink kept all of it (no spool was started)."""
        if self.saved is not None or self._spool_path is None:
            return
        path, self._spool_path = self._spool_path, None
        try:
            with open(path, "w", encoding="utf-8", errors="backslashreplace") as file:
                file.write(text)
            self.saved = path
        except OSError:
            pass

    def save_if_escaped(self) -> None:
        """Saves the exact bytes of a stream the host will show with control characters
        escaped (see `has_terminal_controls`), so that they stay reachable on purpose. A stream
        the cap cut is saved whole already."""
        if (
            self.saved is not None
            or self._spool_path is None
            or self._total > self._limit
            or self._total == 0
        ):
            return
        kept = bytes(self._head) + bytes(self._tail)
        if not has_terminal_controls(kept):
            return
        path, self._spool_path = self._spool_path, None
        try:
            with open(path, "wb") as file:
                file.write(kept)
            self.saved = path
        except OSError:
            pass

    def output(self) -> Output:
        """What was written since `reset`, as text that fits in `output_limit` bytes.

        When the cap cut something and a spool path was given, the whole stream is in the
        file named by `saved`; when nothing was cut, that file is removed.
        """
        if self._total == 0 and self._spool is None and self.saved is None:
            return Output("", "", 0)  # most runs print nothing: skip the decoding below
        self._close_spool()
        if self.saved is not None and self._total <= self._limit:
            try:
                _os.unlink(self.saved)
            except OSError:
                pass
            self._spool_path, self.saved = self.saved, None  # for `save_whole`
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


def fit_together(outputs: list[tuple[Output, CaptureSink]], limit: int) -> None:
    """Cuts the streams of one run so that together they keep at most `limit` bytes.

    A stream that needs no more than half the budget keeps all of it; the other streams share
    the rest. Each keeps its head and its end in the sink's proportions, and a stream cut
    here that was not cut before has its whole text saved first, so nothing is lost.
    """
    sizes = [utf8_len(output.text) for output, _ in outputs]
    if sum(sizes) <= limit:
        return
    shares = [0] * len(outputs)
    left, pending = limit, sorted(range(len(outputs)), key=lambda i: sizes[i])
    while pending:
        fair = left // len(pending)
        i = pending.pop(0)
        shares[i] = min(sizes[i], fair)
        left -= shares[i]
    for (output, sink), size, share in zip(outputs, sizes, shares):
        if size <= share:
            continue
        if not output.cut:
            sink.save_whole(output.text)
        head = utf8_prefix(output.head, share * 3 // 4)
        tail = utf8_suffix(output.tail, share - utf8_len(head))
        output.cut += size - utf8_len(head) - utf8_len(tail)
        output.head, output.tail = head, tail


class OutputStreamer:
    """Sends stdout to the host while a run goes on, when the host asked (the client wants
    progress or log notifications): whole lines, the first few at once, later ones at most
    every STREAM_INTERVAL, within a per-run budget. The result still carries all output."""

    def __init__(self, send, run_id: int) -> None:
        self._send = send
        self._run = run_id
        self._pending = bytearray()
        self._last = 0.0
        self._frames = 0
        self._budget = STREAM_RUN_BUDGET

    def feed(self, view: memoryview) -> None:
        if self._budget <= 0 or self._frames >= STREAM_RUN_FRAMES:
            return
        self._pending += view
        if len(self._pending) < STREAM_FRAME_TEXT:
            if self._frames >= STREAM_EAGER_FRAMES and (
                time.monotonic() - self._last < STREAM_INTERVAL
            ):
                return
            end = self._pending.rfind(b"\n") + 1
            if not end:
                return
        else:
            end = len(self._pending)
        self._emit(end)

    def finish(self) -> None:
        """Sends what is pending (the run ended)."""
        self.flush()

    def flush(self) -> None:
        """Sends what is pending."""
        if self._pending and self._budget > 0 and self._frames < STREAM_RUN_FRAMES:
            self._emit(len(self._pending))
        self._pending.clear()

    def _emit(self, end: int) -> None:
        chunk = bytes(self._pending[: min(end, STREAM_FRAME_TEXT, self._budget)])
        del self._pending[:end]
        self._budget -= len(chunk)
        self._frames += 1
        self._last = time.monotonic()
        frame = {"type": "output", "run": self._run, "stream": "stdout"}
        frame["text"] = chunk.decode("utf-8", "replace")
        try:
            self._send(encode_frame(frame))
        except Exception:
            self._budget = 0


class KeepingStreamer:
    """Sends what a run writes to one stream to the host as it is written, for backends that
    can stop a run only by killing its sandbox (the host asks with `keep_output`): what the
    run wrote before its deadline is then already on the host, and the reply keeps it.

    The stream is line-buffered. The head of the stream (¾ of the output limit) goes in
    full, each write at once, so a kill loses nothing of it (a run pays for at most a head's
    worth of frames). After it, the latest bytes (¼ of the limit) go with a count of the
    bytes skipped before them, at most one frame per STREAM_INTERVAL; what is held back goes
    out at the next write after the interval and before `time.sleep`. So of an output longer
    than the head, a kill can lose what was written in the last STREAM_INTERVAL before it,
    when the code then computed without writing. Text leaves whole characters only.
    """

    def __init__(self, send, run_id: int, stream: str, limit: int) -> None:
        self._send = send
        self._run = run_id
        self._stream = stream
        self._head_left = limit * 3 // 4
        self._tail_limit = max(limit - limit * 3 // 4, 4)
        self._head = bytearray()  # head bytes not sent yet: never dropped
        self._tail = bytearray()  # later bytes not sent yet: only the latest kept
        self._skipped = 0  # bytes dropped before `_tail`
        self._last = 0.0

    def feed(self, view: memoryview) -> None:
        if self._head_left:
            take = min(len(view), self._head_left)
            self._head += view[:take]
            self._head_left -= take
            view = view[take:]
        if view:
            self._tail += view
            excess = len(self._tail) - self._tail_limit
            if excess > 0:
                while excess < len(self._tail) and self._tail[excess] & 0xC0 == 0x80:
                    excess += 1  # never start in the middle of a character
                del self._tail[:excess]
                self._skipped += excess
        if self._head or time.monotonic() - self._last >= STREAM_INTERVAL:
            self.flush()

    def finish(self) -> None:
        """The run ended: its result carries the output, so nothing more is sent."""
        if self in KEEPING:
            KEEPING.remove(self)
        if not KEEPING:
            time.sleep = REAL_SLEEP

    def start(self) -> None:
        """The run begins: flush held-back output before sleeps."""
        KEEPING.append(self)
        time.sleep = sleep_after_flushing

    def flush(self) -> None:
        """Sends what is pending, up to the last whole character."""
        sent = False
        for part, skipped in ((self._head, 0), (self._tail, self._skipped)):
            end = whole_characters(part)
            if not end and not skipped:
                continue
            frame = {"type": "output", "run": self._run, "stream": self._stream}
            frame["text"] = bytes(part[:end]).decode("utf-8", "replace")
            frame["skipped"] = skipped
            del part[:end]
            if skipped:
                self._skipped = 0
            try:
                self._send(encode_frame(frame))
            except Exception:
                pass
            sent = True
        if sent:
            self._last = time.monotonic()

    @property
    def pending(self) -> bool:
        return bool(self._head or self._tail or self._skipped)


KEEPING: list[KeepingStreamer] = []  # the streamers of the run in progress


def flush_kept_output() -> None:
    """Sends the output the keeping streamers hold back."""
    for streamer in KEEPING:
        if streamer.pending:
            streamer.flush()


def sleep_after_flushing(seconds: float) -> None:
    """`time.sleep` while output is kept: what was printed is on the host before the pause."""
    flush_kept_output()
    REAL_SLEEP(seconds)


def whole_characters(data: bytearray) -> int:
    """The length of the longest prefix of `data` that ends on a UTF-8 character boundary."""
    end = len(data)
    back = 0
    while back < min(3, end) and data[end - 1 - back] & 0xC0 == 0x80:
        back += 1
    if back < end and data[end - 1 - back] >= 0xC0:  # a lead byte: is its character whole?
        lead = data[end - 1 - back]
        need = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if back + 1 < need:
            return end - 1 - back
    return end


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

    def begin(
        self,
        limit: int,
        spool_path: str | None = None,
        streamer: OutputStreamer | KeepingStreamer | None = None,
    ) -> None:
        try:
            usable = not self.stream.closed
        except ValueError:  # detached by user code
            usable = False
        if usable:
            self._flush()
        else:  # user code closed or detached it in an earlier run
            self._open()
        self.sink.reset(limit, spool_path)
        self.sink.streamer = streamer
        streaming = streamer is not None
        try:
            if self.stream.line_buffering != streaming:  # each print reaches the streamer
                self.stream.reconfigure(line_buffering=streaming)
        except Exception:  # detached or closed again: the next run reopens it
            pass

    def finish(self) -> Output:
        self._flush()
        streamer, self.sink.streamer = self.sink.streamer, None
        if streamer is not None:
            streamer.finish()
        return self.sink.output()

    def _flush(self) -> None:
        try:
            self.stream.flush()
        except Exception:  # closed or broken by user code: keep what the sink has
            pass


class OutFiles:
    """Files the code writes under `/workspace/out/` come back with the run's result.

    After each run the directory is scanned (regular files only, symlinks not followed) and
    compared with the previous scan: new files and files whose modification time or size
    changed were written by the run. While the directory is empty and its own modification
    time is unchanged (and not recent: file times are only as fine as the kernel's clock
    tick), a run costs one `stat`, for host calls are dear on WASI. Sandboxes without a
    `/workspace` (the host-CPython test sandbox) have no out directory and skip all this.
    """

    def __init__(self) -> None:
        self.enabled = False
        self._known: dict[str, tuple[int, int]] = {}
        self._dir_mtime = -1
        try:
            _os.stat("/workspace")
            try:
                _os.mkdir(OUT_DIR)
            except FileExistsError:
                pass
            self.enabled = True
        except OSError:
            pass

    def spool_path(self, run_id: int, stream: str) -> str | None:
        return f"{OUT_DIR}/{stream}-run-{run_id}.txt" if self.enabled else None

    def changed(self, without_data: tuple[str | None, ...]) -> list[dict]:
        if not self.enabled:
            return []
        try:
            dir_mtime = _os.stat(OUT_DIR).st_mtime_ns
        except OSError:
            return []
        if (
            not self._known
            and dir_mtime == self._dir_mtime
            and time.time_ns() - dir_mtime > 100_000_000
        ):
            return []
        self._dir_mtime = dir_mtime
        found = self._scan()
        known, self._known = self._known, found
        paths = sorted(p for p, mark in found.items() if known.get(p) != mark)
        files: list[dict] = []
        budget = OUT_ATTACH_BUDGET
        for path in paths[:OUT_FILES_LISTED]:
            size = found[path][1]
            data = None
            if path not in without_data and size <= min(OUT_FILE_ATTACHED, budget):
                try:
                    with open(path, "rb") as file:
                        raw = file.read(OUT_FILE_ATTACHED + 1)
                    if len(raw) <= min(OUT_FILE_ATTACHED, budget):
                        from binascii import b2a_base64

                        data = b2a_base64(raw, newline=False).decode("ascii")
                        budget -= len(raw)
                        size = len(raw)
                except OSError:
                    pass
            files.append({"path": path, "size": size, "data": data})
        return files

    @staticmethod
    def _scan() -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        pending = [OUT_DIR]
        seen = 0
        while pending and seen < OUT_SCAN_ENTRIES:
            directory = pending.pop()
            try:
                with _os.scandir(directory) as entries:
                    for entry in entries:
                        seen += 1
                        if seen > OUT_SCAN_ENTRIES:
                            break
                        try:
                            if entry.is_dir(follow_symlinks=False):
                                pending.append(entry.path)
                            elif entry.is_file(follow_symlinks=False):
                                st = entry.stat(follow_symlinks=False)
                                found[entry.path] = (st.st_mtime_ns, st.st_size)
                        except OSError:
                            pass
            except OSError:
                pass
        return found


def empty_stdin() -> io.TextIOWrapper:
    """A stdin that is always at end of file: `input()` raises EOFError."""
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8")

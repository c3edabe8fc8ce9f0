# --------------------------------------------------------------------------- calls to the host


class HostCalls:
    """The guest side of `rpc` (frames.md, "Calls to the host").

    A call writes an `rpc` frame with a fresh id and waits for the `rpc_result` with that id.
    `call` waits synchronously: it reads host frames from the protocol fd until its answer
    comes, handing the answers of other calls to their waiters. `call_async` waits inside
    the running event loop: the loop watches the protocol fd (`add_reader`; on WASI the
    selector's `poll` takes fd_read subscriptions) and hands each answer to its future, so
    any number of calls can be in flight at once. Where a loop cannot watch the fd, a
    callback that reads it (blocking) is scheduled after the ready tasks instead: calls
    still overlap, but timers wait while it reads.

    At most MAX_IN_FLIGHT calls are in flight (the host refuses more as `busy`): further
    asynchronous calls wait for a slot, a synchronous one reads answers until one frees.
    Host frames other than `rpc_result` that arrive during a run are kept in `deferred`
    for the frame loop. Only the main thread may call, and only during a run.
    """

    use_reader = True  # False: always read from a scheduled callback (for tests)

    def __init__(self, reader: FrameReader, interrupts: "Interrupts") -> None:
        self._reader = reader
        self._interrupts = interrupts
        self._thread = _thread.get_ident()
        self.writer: FrameWriter | None = None
        self.frame_cap = RPC_FRAME_SLACK
        self.run_id: int | None = None
        self.last_id = 0
        self.closed = False  # the host closed stdin
        self.deferred: list[dict] = []
        self._outstanding: set[int] = set()  # sent, not answered, still wanted
        self._answers: dict[int, dict] = {}  # answered, for a synchronous waiter
        self._waiters: dict[int, object] = {}  # id -> asyncio future
        self._slot_waiters: list = []  # futures of async calls waiting for a free slot
        self._loop: object | None = None
        self._watching: str | None = None  # "reader" or "pump" while waiters wait

    # -- runs
    def begin_run(self, run_id: int) -> None:
        self.run_id = run_id

    def end_run(self) -> None:
        """Fails what is still waiting: the host drops answers once their run ended."""
        self.run_id = None
        waiters, self._waiters = self._waiters, {}
        waiters = [*waiters.values(), *self._slot_waiters]
        self._slot_waiters = []
        for future in waiters:
            fail_future(future, MCPError(
                "the run ended before the host answered this call; await MCP calls before"
                " the run ends",
                kind="cancelled",
            ))
        self._outstanding.clear()
        self._answers.clear()
        self._unwatch()

    # -- calls
    def call(self, method: str, params: dict) -> object:
        """Calls the host and waits for the answer, blocking."""
        while len(self._outstanding) >= MAX_IN_FLIGHT and not self.closed:
            self._wait(None)  # reads answers (for async waiters) until a slot is free
        call_id = self._send(method, params)
        try:
            frame = self._wait(call_id)
        except BaseException:
            self._abandon(call_id)
            raise
        return call_outcome(frame)

    async def call_async(self, method: str, params: dict) -> object:
        """Calls the host from a coroutine; other tasks run while the answer is pending."""
        import asyncio

        loop = asyncio.get_running_loop()
        if not self._outstanding and not self._slot_waiters and loop_is_idle(loop):
            # Nothing else in the loop could run before the answer arrives: no ready
            # callbacks, no timers, no watched descriptors, no other call pending. Waiting
            # in the loop would only add polling (a third of a millisecond under WASI), so
            # wait synchronously; no other task is kept from anything it could have done.
            # Cancelling the task would not reach a blocking wait: SIGINT interrupts the
            # wait itself (KeyboardInterrupt ends the run, as the cancellation would).
            interrupts = self._interrupts
            interrupts.blocking = True
            try:
                return self.call(method, params)
            finally:
                interrupts.blocking = False
        while len(self._outstanding) >= MAX_IN_FLIGHT and not self.closed:
            slot = loop.create_future()
            self._slot_waiters.append(slot)
            self._watch(loop)
            try:
                await slot
            except BaseException:
                if slot.done() and not slot.cancelled() and slot.exception() is None:
                    self._free_slots()  # woken, but leaving: pass the slot on
                raise
        call_id = self._send(method, params)
        future = loop.create_future()
        self._waiters[call_id] = future
        try:
            self._watch(loop)
            frame = await future
        except BaseException:
            self._abandon(call_id)
            raise
        finally:
            if self._waiters.get(call_id) is future:
                del self._waiters[call_id]
            if not self._waiters:
                self._unwatch()
        return call_outcome(frame)

    def _send(self, method: str, params: dict) -> int:
        if self.closed:
            raise MCPError("the host closed the connection", kind="internal")
        if self.run_id is None or self.writer is None:
            raise MCPError("MCP calls can only be made while a run is in flight", kind="internal")
        if _thread.get_ident() != self._thread:
            raise MCPError("MCP calls can only be made from the main thread", kind="internal")
        call_id = self.last_id + 1
        frame = {"type": "rpc", "id": call_id, "run": self.run_id, "method": method,
                 "params": params}
        payload = encode_json_strict(frame).encode("utf-8")  # TypeError / ValueError
        if len(payload) > self.frame_cap:
            raise MCPError(
                f"the call is too large to send: {len(payload)} bytes of JSON, and the"
                f" limit is {self.frame_cap}",
                kind="invalid_params",
            )
        self.last_id = call_id
        self._outstanding.add(call_id)
        self.writer.send(payload)
        return call_id

    def _abandon(self, call_id: int) -> None:
        """Forgets a call nobody waits for any more (its answer will be dropped)."""
        self._outstanding.discard(call_id)
        self._answers.pop(call_id, None)
        self._free_slots()

    def _free_slots(self) -> None:
        """Wakes as many calls waiting for a slot as there are free slots."""
        free = MAX_IN_FLIGHT - len(self._outstanding)
        while free > 0 and self._slot_waiters:
            slot = self._slot_waiters.pop(0)
            if not slot.done():
                try:
                    slot.set_result(None)
                except RuntimeError:  # its loop was closed
                    continue
                free -= 1

    # -- reading answers
    def _wait(self, call_id: int | None) -> dict | None:
        """Reads host frames until `call_id` is answered (None: until a slot is free)."""
        while (
            call_id not in self._answers
            if call_id is not None
            else len(self._outstanding) >= MAX_IN_FLIGHT
        ):
            payload = self._reader.pop()
            if payload is not None:
                self._accept(payload)
            elif not self._read_blocking():
                self._lost("the host closed the connection")
                raise MCPError("the host closed the connection", kind="internal")
        frame = self._answers.pop(call_id, None)
        self._drain()  # answers read along with ours go to their waiters now
        return frame

    def _read_blocking(self) -> bool:
        """Reads one chunk into the reader; False at end of input.

        SIGINT raises KeyboardInterrupt in user code, and Python may deliver it right after
        `os.read` returned, before the bytes are kept: that would lose protocol bytes. So
        where it can come, the runtime waits in `select` (where it is harmless) and holds
        it back during the read itself, raising it once the bytes are kept.
        """
        fd = self._reader.fd
        size = max(self._reader.wanted(), READ_CHUNK)
        interrupts = self._interrupts
        if not interrupts.armed():
            chunk = _read(fd, size)
        else:
            try:
                import select

                select.select([fd], [], [])
            except (ImportError, ValueError, OSError):
                pass
            interrupts.shielded = True
            try:
                chunk = _read(fd, size)
            finally:
                interrupts.shielded = False
        if not chunk:
            return False
        self._reader.feed(chunk)
        if interrupts.missed:
            interrupts.missed = False
            raise KeyboardInterrupt
        return True

    def _drain(self) -> None:
        while (payload := self._reader.pop()) is not None:
            self._accept(payload)

    def _accept(self, payload: bytes) -> None:
        try:
            frame = parse_frame(payload)
        except BadFrame as exc:
            diagnose(f"ignored a host frame: {exc}")
            return
        if frame.get("type") != "rpc_result":
            self.deferred.append(frame)  # for the frame loop, once the run is over
            return
        call_id = frame.get("id")
        future = self._waiters.pop(call_id, None) if isinstance(call_id, int) else None
        if future is not None:
            self._outstanding.discard(call_id)
            self._free_slots()
            if not future.done():
                try:
                    future.set_result(frame)
                except RuntimeError:  # its loop was closed by user code
                    pass
        elif call_id in self._outstanding:
            self._outstanding.discard(call_id)
            self._free_slots()
            self._answers[call_id] = frame
        elif not isinstance(call_id, int) or isinstance(call_id, bool) or call_id > self.last_id:
            diagnose(f"ignored an rpc_result for unknown call {call_id!r:.40}")
        # else: the answer to a call nobody waits for any more (cancelled, interrupted)

    def _lost(self, reason: str) -> None:
        self.closed = True
        waiters, self._waiters = self._waiters, {}
        waiters = [*waiters.values(), *self._slot_waiters]
        self._slot_waiters = []
        for future in waiters:
            fail_future(future, MCPError(reason, kind="internal"))
        self._unwatch()

    # -- the event loop side
    def _watch(self, loop: object) -> None:
        if self._watching is not None and self._loop is loop:
            return
        self._unwatch()
        self._loop = loop
        if self.use_reader:
            try:
                loop.add_reader(self._reader.fd, self._on_readable)
            except (OSError, ValueError, NotImplementedError, RuntimeError):
                pass  # e.g. epoll refuses a regular file: read from a callback instead
            else:
                self._watching = "reader"
                return
        self._watching = "pump"
        loop.call_soon(self._pump)

    def _unwatch(self) -> None:
        loop, watching = self._loop, self._watching
        self._watching = None
        if watching == "reader" and loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self._reader.fd)
            except Exception:
                pass

    def _on_readable(self) -> None:
        try:
            chunk = _read(self._reader.fd, max(self._reader.wanted(), READ_CHUNK))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"reading host frames failed: {exc!r}")
            return
        if not chunk:
            self._lost("the host closed the connection")
            return
        self._reader.feed(chunk)
        self._drain()
        if not self._waiters:
            self._unwatch()

    def _pump(self) -> None:
        """Reads (blocking) until a frame is whole, when no reader can watch the fd."""
        if self._watching != "pump" or not self._waiters:
            return
        try:
            while (payload := self._reader.pop()) is None:
                if not self._read_blocking():
                    self._lost("the host closed the connection")
                    return
        except OSError as exc:
            self._lost(f"reading host frames failed: {exc!r}")
            return
        self._accept(payload)
        self._drain()
        if self._waiters and self._watching == "pump":
            self._loop.call_soon(self._pump)
        elif not self._waiters:
            self._unwatch()


def fail_future(future: object, error: BaseException) -> None:
    try:
        if not future.done():
            future.set_exception(error)
    except RuntimeError:  # its loop was closed
        pass


def call_outcome(frame: dict) -> object:
    """An `rpc_result`'s value, or its error raised as MCPError."""
    error = frame.get("error")
    if error is None:
        return frame.get("result")
    message = error.get("message") if isinstance(error, dict) else None
    kind = error.get("kind") if isinstance(error, dict) else None
    raise MCPError(
        message if isinstance(message, str) and message else "the host refused the call",
        kind=kind if isinstance(kind, str) else "internal",
    )

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


def reseed_random_state() -> None:
    """Seeds `random` and `numpy.random` afresh from the host's entropy, when loaded.

    A session may start from a snapshot taken after they were imported (and seeded); without
    this, every such session would draw the same numbers.
    """
    for name in ("random", "numpy.random"):
        module = sys.modules.get(name)
        if module is not None:
            module.seed()


def frame_field(frame: dict, name: str, kind: type) -> object:
    value = frame.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BadFrame(f"{frame.get('type')}.{name} must be {kind.__name__}")
    return value


RUN_ACTIONS = ("checkpoint", "restore")  # what a run frame may ask for instead of code


class Session:
    """One guest session: the frame loop, the user's globals and the run machinery."""

    def __init__(self) -> None:
        self.output_limit = 0
        self.manual = ""  # the host's manual, for capability_summary()
        self.catalogue: tuple[dict[str, str], ...] = ()
        self.loaded_servers: tuple[str, ...] = ()
        self.proxies: dict[str, ServerProxy] = {}  # by server name, for the session
        self.server_modules: dict[str, ModuleType] = {}  # mcp.servers.<alias>, by name
        self.mcp_package: ModuleType | None = None
        self._servers_package: ModuleType | None = None
        self._servers_dict: dict | None = None  # the `mcp_servers` global we bound
        self.state: object = None
        self._reader = FrameReader(protocol_input_fd())
        self._writer: FrameWriter | None = None
        self._frame_cap = FRAME_CAP_SLACK
        self._interrupts = Interrupts()
        self._pid = _os.getpid() if hasattr(_os, "getpid") else 0
        self.calls = HostCalls(self._reader, self._interrupts)
        self._loop = EventLoop(self._interrupts)
        self._stdout = Capture("<stdout>")
        self._stderr = Capture("<stderr>")
        self._out_files = OutFiles()
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
            frame = payload = None
            if self.calls.deferred:  # read by the rpc client during a run
                frame = self.calls.deferred.pop(0)
            elif self.calls.closed:  # ... which also saw the end of input
                return
            else:
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
                self._dispatch(parse_frame(payload) if frame is None else frame)
            except BadFrame as exc:
                diagnose(f"ignored a host frame: {exc}")
            except BaseException as exc:  # the frame loop outlives everything
                diagnose(f"internal error: {type(exc).__name__}: {exc}")

    def _dispatch(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "hello":
            self._on_hello(frame)
        elif kind == "run":
            self._on_run(frame)
        elif kind == "rpc_result":
            call_id = frame.get("id")
            # An answer that crossed the end of its run (or a cancelled call): dropped.
            if not isinstance(call_id, int) or not 0 < call_id <= self.calls.last_id:
                raise BadFrame(f"an rpc_result for unknown call {call_id!r:.40}")
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
        self.manual = frame.get("manual", "")
        if not isinstance(self.manual, str):
            raise BadFrame("hello.manual must be a string")
        self.state = frame.get("state")
        self._frame_cap = min(2 * limit + FRAME_CAP_SLACK, FRAME_CAP_CEILING)
        self._writer = FrameWriter(1, nonce)
        self.calls.writer = self._writer
        self.calls.frame_cap = min(2 * limit + RPC_FRAME_SLACK, FRAME_CAP_CEILING)
        reseed_random_state()
        try:
            adopt_loaded_matplotlib()
        except Exception as exc:  # a broken matplotlib must not keep the session from starting
            diagnose(f"could not prepare matplotlib for this sandbox: {exc!r}")
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
        servers = run_servers(frame.get("servers", []))
        saved_tools = frame.get("saved_tools")
        if saved_tools is not None and not isinstance(saved_tools, str):
            raise BadFrame("run.saved_tools must be a string")
        stream_output = frame.get("stream_output", False) is True
        keep_output = frame.get("keep_output", False) is True
        action = frame.get("action")
        if action is not None and action not in RUN_ACTIONS:
            raise BadFrame(f"unknown run.action {action!r:.40}")
        try:
            payload = self._run(
                run_id, code, servers, saved_tools, stream_output, keep_output, action
            )
        except BaseException as exc:  # a bug here must still answer the run
            diagnose(f"internal error in run {run_id}: {type(exc).__name__}: {exc}")
            payload = encode_frame(internal_failure(run_id, exc))
        self._send(payload)

    def _run(
        self,
        run_id: int,
        code: str,
        servers: list[tuple[str, str]],
        saved_tools: str | None,
        stream_output: bool = False,
        keep_output: bool = False,
        action: str | None = None,
    ) -> bytes:
        if keep_output:  # the host may have to kill the run: it keeps what was written
            streamers = tuple(
                KeepingStreamer(self._send, run_id, name, self.output_limit)
                for name in ("stdout", "stderr")
            )
            for streamer in streamers:
                streamer.start()
        else:
            streamers = (OutputStreamer(self._send, run_id) if stream_output else None, None)
        self._stdout.begin(
            self.output_limit, self._out_files.spool_path(run_id, "stdout"), streamers[0]
        )
        self._stderr.begin(
            self.output_limit, self._out_files.spool_path(run_id, "stderr"), streamers[1]
        )
        failure: BaseException | None = None
        started = time.perf_counter()
        sys.stdout, sys.stderr = self._stdout.stream, self._stderr.stream
        self.calls.begin_run(run_id)
        try:
            if saved_tools is not None:  # first: it comes only when it changed
                self._load_saved_tools(run_id, saved_tools)
            if action == "checkpoint":
                checkpoint_to_host(self.calls, self.globals, None)
            elif action == "restore":
                restore_from_host(self.calls, self.globals)
            else:
                self._load_servers(servers)
                self._execute(f"<run-{run_id}>", code)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt end the run only
            failure = exc
        finally:
            if isinstance(failure, KeyboardInterrupt):  # the host stopped it: stop it all
                end_other_processes(self._pid)
            try:  # figures left open come back as images, as in a notebook
                send_open_figures(everything=False)
            except BaseException as exc:  # drawing failed: the run's error, if it had none
                failure = failure or exc
            try:
                self.calls.end_run()
            except BaseException as exc:
                diagnose(f"internal error ending run {run_id}: {exc!r}")
            duration_ms = (time.perf_counter() - started) * 1000
            sys.stdout, sys.stderr = self._real_stdout, self._real_stderr
        if failure is not None:
            add_next_step(failure, self.catalogue)
        error = None if failure is None else describe_error(failure)
        failure = None  # drop the traceback's frames
        flush_real_streams()
        return self._result_payload(run_id, error, duration_ms)

    def _load_saved_tools(self, run_id: int, source: str) -> None:
        """Runs the user's saved tools into the globals; a failure is only a warning."""
        filename = f"<saved-tools-{run_id}>"
        remember_source(filename, source)
        try:
            exec(compile(source, filename, "exec", dont_inherit=True), self.globals)
        except BaseException as exc:
            error = describe_error(exc)
            exc = None  # drop the traceback's frames
            sys.stderr.write(
                f"warning: your saved tools failed to load ({error['type']}: "
                f"{error['message']}); this run goes on without the rest of them\n"
                f"{error['traceback']}"
            )

    def _load_servers(self, servers: list[tuple[str, str]]) -> None:
        """Binds the run's proxies: `mcp_<alias>`, `mcp_servers`, `mcp.servers.<alias>`.

        A server's tools are fetched once per session. Proxies bound by earlier runs for
        servers this run does not name stay, and fail clearly when called.
        """
        self.loaded_servers = tuple(name for name, _ in servers)
        if not servers:
            if self._servers_dict is not None and (
                self.globals.get("mcp_servers") is self._servers_dict
            ):
                self._servers_dict = self.globals["mcp_servers"] = {}
            return
        package = self._servers_package
        if package is None:
            package = self._servers_package = ModuleType(
                "mcp.servers", "One module per MCP server loaded in this session."
            )
            package.__path__ = []
            package.__spec__ = type(sys.__spec__)("mcp.servers", None, is_package=True)
        sys.modules["mcp.servers"] = package
        if self.mcp_package is not None:
            self.mcp_package.servers = package
        bound: dict[str, ServerProxy] = {}
        for name, alias in servers:
            proxy = self.proxies.get(name)
            if proxy is None or proxy._mcp_alias != alias:
                try:
                    tools = self.calls.call("list_tools", {"server": name})
                except MCPError as exc:
                    raise MCPError(
                        f"MCP server {name!r} could not be loaded: {exc}", kind=exc.kind
                    ) from None
                proxy = self.proxies[name] = build_proxy(self, name, alias, tools)
                self.server_modules[name] = server_module(proxy)
            module = self.server_modules[name]
            sys.modules[module.__name__] = module
            setattr(package, alias, module)
            self.globals[f"mcp_{alias}"] = proxy
            bound[name] = proxy
        self._servers_dict = self.globals["mcp_servers"] = bound

    # -- servers, for the helpers and proxies
    def catalogue_entry(self, server: object) -> dict | None:
        for entry in self.catalogue:
            if server in (entry["name"], entry["alias"]):
                return entry
        return None

    def unknown_server(self, server: object) -> MCPError:
        known = ", ".join(entry["name"] for entry in self.catalogue) or "none"
        return MCPError(
            f"unknown MCP server {server!r}; known servers: {known}", kind="unknown_server"
        )

    def check_loaded(self, server: str) -> None:
        if server not in self.loaded_servers:
            raise MCPError(
                f"MCP server {server!r} was not loaded for this run; pass"
                f" servers=[{server!r}] with the run to use it",
                kind="not_allowed",
            )

    def loaded_proxy(self, server: object) -> ServerProxy:
        """The proxy of a server of this run, by name or alias."""
        if not isinstance(server, str):
            raise TypeError(f"server must be a string, not {type(server).__name__}")
        for name in self.loaded_servers:
            proxy = self.proxies.get(name)
            if proxy is not None and server in (name, proxy._mcp_alias):
                return proxy
        entry = self.catalogue_entry(server)
        proxy = self.proxies.get(server)
        if entry is None and proxy is None:
            raise self.unknown_server(server)
        self.check_loaded(entry["name"] if entry else server)
        raise self.unknown_server(server)  # pragma: no cover - check_loaded raised

    def call_params(self, server: object, tool: object, arguments: object) -> dict:
        proxy = self.loaded_proxy(server)
        if not isinstance(tool, str):
            raise TypeError(f"tool must be a string, not {type(tool).__name__}")
        function = proxy._mcp_tools.get(tool)
        if function is None:
            aliases = ", ".join(record["alias"] for record in proxy._mcp_records) or "none"
            raise MCPError(
                f"MCP server {proxy._mcp_server!r} has no tool {tool!r}; its tools: {aliases}",
                kind="unknown_tool",
            )
        name = next(r["name"] for r in proxy._mcp_records if proxy._mcp_tools[r["alias"]] is function)
        if arguments is None:
            arguments = {}
        elif not isinstance(arguments, dict):
            raise TypeError(f"arguments must be a dict, not {type(arguments).__name__}")
        return {"server": proxy._mcp_server, "tool": name, "arguments": arguments}

    def docs_params(self, server: object, tool: object, detail: object) -> dict:
        if not isinstance(server, str):
            raise TypeError(f"server must be a string, not {type(server).__name__}")
        entry = self.catalogue_entry(server)
        params: dict = {"server": entry["name"] if entry else server}
        if tool is not None:
            if not isinstance(tool, str):
                raise TypeError(f"tool must be a string, not {type(tool).__name__}")
            proxy = self.proxies.get(params["server"])
            for record in proxy._mcp_records if proxy else ():
                if tool == record["alias"]:
                    tool = record["name"]
                    break
            params["tool"] = tool
        params["detail"] = check_detail(detail)
        return params

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
        """Encodes the result, dropping file contents and then more output if it would
        outgrow the host's frame cap."""
        out, err = self._stdout.finish(), self._stderr.finish()
        # The limit holds for the run: both streams together, as the host shows them.
        fit_together([(out, self._stdout.sink), (err, self._stderr.sink)], self.output_limit)
        self._stdout.sink.save_if_escaped()
        self._stderr.sink.save_if_escaped()
        saved = (self._stdout.sink.saved, self._stderr.sink.saved)
        files = self._out_files.changed(saved)
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
                    "files": files,
                    "stdout_saved": saved[0],
                    "stderr_saved": saved[1],
                }
            )
            excess = len(payload) - self._frame_cap
            if excess <= 0:
                return payload
            attached = [f for f in files if f["data"] is not None]
            if attached:  # send the largest file as a link instead
                max(attached, key=lambda f: len(f["data"]))["data"] = None
                continue
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
    start_egress_forwarder()
    Session().serve()
    flush_real_streams()
    _os._exit(0)

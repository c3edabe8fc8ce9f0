# --------------------------------------------------------------------------- network


class FetchResponse:
    """What `mcp.runtime.fetch` returns: `status`, `reason`, `headers` (a list of
    `(name, value)`), `body` (bytes), `truncated` (the body was longer than the host
    passes on), `url`; `ok`, `header()`, `text()` and `json()` read it."""

    __slots__ = ("status", "reason", "headers", "body", "truncated", "url")

    def __init__(self, url: str, result: dict) -> None:
        import binascii

        self.url = url
        self.status = int(result["status"])
        self.reason = str(result.get("reason") or "")
        self.headers = [(str(k), str(v)) for k, v in result.get("headers") or ()]
        self.body = binascii.a2b_base64(result.get("body") or "")
        self.truncated = bool(result.get("truncated"))

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name` (any case), or `default`."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), default)

    def text(self, encoding: str | None = None) -> str:
        """The body decoded with `encoding`, else the charset the server named, else UTF-8."""
        if encoding is None:
            kind = self.header("content-type") or ""
            encoding = next(
                (part.split("=", 1)[1].strip("\"' ") for part in kind.split(";")
                 if part.strip().lower().startswith("charset=")),
                "utf-8",
            )
        return self.body.decode(encoding, "replace")

    def json(self) -> object:
        """The body parsed as JSON."""
        import json

        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<FetchResponse {self.status} {self.reason} {len(self.body)} bytes from {self.url}>"


def fetch_params(url: object, method: object, headers: object, body: object) -> dict:
    """The `fetch` rpc's parameters, checked here so mistakes are TypeErrors in user code."""
    import binascii

    if not isinstance(url, str):
        raise TypeError(f"fetch() needs a URL string, not {type(url).__name__}")
    if not isinstance(method, str):
        raise TypeError(f"method must be a string, not {type(method).__name__}")
    if headers is None:
        pairs = []
    elif isinstance(headers, dict):
        pairs = list(headers.items())
    else:
        pairs = list(headers)
    checked = []
    for pair in pairs:
        name, value = pair
        checked.append([str(name), str(value)])
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    else:
        raise TypeError(f"body must be bytes or str, not {type(body).__name__}")
    encoded = binascii.b2a_base64(data, newline=False).decode("ascii") if data else None
    return {"url": url, "method": method.upper(), "headers": checked, "body": encoded}


# The host calls of the session, once `mcp` is installed: what `urllib` goes through.
_url_calls = None


def route_urllib_through_host(module: ModuleType) -> None:
    """Makes `urllib.request` send http and https through the host's `fetch` (the only
    way out of a WASI sandbox, and the one that can carry secrets): its `HTTPHandler`
    becomes one that asks the host, so `urlopen` and every `build_opener()` use it. The
    redirect handler still follows redirects, each one checked again by the host."""
    import email.message
    import io
    import urllib.error
    import urllib.response

    original = module.HTTPHandler

    class HostHTTPHandler(original):
        """http and https through the bridge's host, under its network policy."""

        handler_order = 100  # before an HTTPSHandler of the standard library

        def _through_host(self, req: object) -> object:
            if _url_calls is None:
                raise urllib.error.URLError("the sandbox runtime is not ready for network calls")
            data = req.data
            if data is not None and not isinstance(data, (bytes, bytearray, memoryview, str)):
                data = b"".join(bytes(chunk) for chunk in data)
            headers = dict(req.header_items())
            if data is not None and "Content-type" not in headers:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            params = fetch_params(req.full_url, req.get_method(), headers, data)
            try:
                result = _url_calls.call("fetch", params)
            except MCPError as exc:
                raise urllib.error.URLError(str(exc)) from None
            answer = FetchResponse(req.full_url, result)
            message = email.message.Message()
            for name, value in answer.headers:
                message[name] = value
            response = urllib.response.addinfourl(
                io.BytesIO(answer.body), message, req.full_url, answer.status
            )
            response.msg = answer.reason
            return response

        http_open = _through_host
        https_open = _through_host

    module.HTTPHandler = HostHTTPHandler
    module.install_opener(None)  # urlopen builds its opener again, with this handler


def enable_host_fetch(calls: object) -> None:
    """From now on `urllib` asks the host (see `route_urllib_through_host`)."""
    global _url_calls
    _url_calls = calls
    loaded = sys.modules.get("urllib.request")
    if loaded is not None and not getattr(loaded.HTTPHandler, "_through_host", None):
        route_urllib_through_host(loaded)


# The bridge's proxy, where a sandbox has sockets (container and OCI backends): the loopback
# address the proxy variables name, passed on to the proxy's mounted unix socket.


def start_egress_forwarder(environ: dict | None = None) -> object:
    """Where the bridge mounted its proxy's socket (`MCP_BRIDGE_EGRESS_SOCKET`), listens on
    the loopback address `MCP_BRIDGE_EGRESS_LISTEN` and passes each connection on to that
    socket, from a thread of its own. The sandbox's `HTTP_PROXY` and `HTTPS_PROXY` name that
    address, so pip and every client that honours them go through the bridge, which alone
    decides what they reach. Returns the listening socket, or None where there is no proxy
    (WASI, no hosts allowed) or it cannot listen (said on fd 2)."""
    if environ is None:
        if not any(k in _os.environ for k in (b"MCP_BRIDGE_EGRESS_SOCKET", "MCP_BRIDGE_EGRESS_SOCKET")):
            return None
        environ = {
            (k.decode("utf-8", "replace") if isinstance(k, bytes) else k):
            (v.decode("utf-8", "replace") if isinstance(v, bytes) else v)
            for k, v in _os.environ.items()
        }
    socket_path = environ.get("MCP_BRIDGE_EGRESS_SOCKET")
    listen = environ.get("MCP_BRIDGE_EGRESS_LISTEN")
    if not socket_path or not listen:
        return None
    import _socket

    host, _, port = listen.rpartition(":")
    server = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        server.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        server.bind((host, int(port)))
        server.listen(64)
    except (OSError, ValueError) as exc:
        server.close()
        diagnose(f"the network proxy cannot listen on {listen}: {exc!r}")
        return None
    _thread.start_new_thread(_accept_for_proxy, (server, socket_path))
    keep_pip_target_on_path(environ.get("PIP_TARGET"))
    return server


def keep_pip_target_on_path(target: str | None) -> None:
    """Makes `target` (where `pip install` in this sandbox puts packages) and puts it on
    `sys.path`, so what pip installs imports at once (a directory made later would have been
    cached as missing by the first import that looked)."""
    if not target:
        return
    try:
        _os.mkdir(target, 0o755)
    except OSError:
        pass  # there already, or no room: pip will say
    if target not in sys.path:
        sys.path.append(target)


def _accept_for_proxy(server: object, socket_path: str) -> None:
    """Serves `server` until it is closed, from one thread: each accepted connection is
    joined to a new connection to the proxy's socket, and bytes pass both ways as they come
    (one `epoll`, no thread per connection: a connection costs a few system calls)."""
    import select

    poller = select.epoll()
    server.setblocking(False)
    poller.register(server.fileno(), select.EPOLLIN)
    ends: dict[int, _ProxyEnd] = {}
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, mask in events:
            if fd == server.fileno():
                _accept_pending(server, socket_path, poller, ends)
                continue
            end = ends.get(fd)
            if end is None:
                continue
            if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                end.read()
            if fd in ends and mask & select.EPOLLOUT:
                end.flush()


def _accept_pending(server: object, socket_path: str, poller: object, ends: dict) -> None:
    """Accepts every connection waiting on `server` and joins each to the proxy's socket."""
    import _socket

    while True:
        try:
            fd, _address = server._accept()
        except BlockingIOError:
            return
        except OSError:
            return
        client = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM, 0, fd)
        proxy = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            proxy.connect(socket_path)
        except OSError as exc:
            diagnose(f"the network proxy's socket cannot be reached: {exc!r}")
            proxy.close()
            client.close()
            continue
        a, b = _ProxyEnd(client, poller, ends), _ProxyEnd(proxy, poller, ends)
        a.peer, b.peer = b, a


class _ProxyEnd:
    """One socket of a joined pair: what it reads goes to its peer, in order; what the peer
    could not take yet waits in the peer's `pending`, and this end stops reading until it
    is taken. A hang-up (both directions shut) cannot be masked, so an end may still be
    read while its peer holds bytes: those are queued behind them."""

    __slots__ = ("sock", "fd", "peer", "pending", "done_reading", "mask", "poller", "ends")

    def __init__(self, sock: object, poller: object, ends: dict) -> None:
        import select

        sock.setblocking(False)
        self.sock, self.fd, self.poller, self.ends = sock, sock.fileno(), poller, ends
        self.peer: _ProxyEnd | None = None
        self.pending = b""
        self.done_reading = False
        self.mask = select.EPOLLIN  # what the poller watches for; None: not registered
        ends[self.fd] = self
        poller.register(self.fd, self.mask)

    def _watch(self) -> None:
        """Asks for what this end waits for: input unless it ended or its peer is full,
        room to write while bytes wait. Waiting for nothing, it leaves the poller (whose
        hang-up reports would otherwise never stop)."""
        import select

        mask = 0 if self.done_reading or self.peer.pending else select.EPOLLIN
        if self.pending:
            mask |= select.EPOLLOUT
        if mask == 0 and self.done_reading:
            mask = None
        if mask == self.mask:
            return
        if mask is None:
            self.poller.unregister(self.fd)
        elif self.mask is None:
            self.poller.register(self.fd, mask)
        else:
            self.poller.modify(self.fd, mask)
        self.mask = mask

    def read(self) -> None:
        try:
            data = self.sock.recv(65536)  # larger reads cost an mmap each
        except BlockingIOError:
            return
        except OSError:
            self.close_pair()
            return
        if not data:
            self.done_reading = True
            if not self.peer.pending:
                self.peer.end_writing()
        else:
            self.peer.send(data)
        if self.fd in self.ends:
            self._watch()

    def send(self, data: bytes) -> None:
        """Sends `data` after whatever already waits, keeping the rest."""
        if self.pending:
            self.pending += data
            return
        self._send_now(data)

    def _send_now(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.close_pair()
            return
        self.pending = data[sent:]
        self._watch()

    def flush(self) -> None:
        """Writes what waits; once it is all out, the peer reads again (or, at its end,
        this side's writing ends)."""
        self._send_now(self.pending)
        if self.fd in self.ends and not self.pending:
            if self.peer.done_reading:
                self.end_writing()
            else:
                self.peer._watch()

    def end_writing(self) -> None:
        try:
            self.sock.shutdown(1)  # SHUT_WR
        except OSError:
            pass
        if self.done_reading and self.peer.done_reading:
            self.close_pair()

    def close_pair(self) -> None:
        for end in (self, self.peer):
            if self.ends.pop(end.fd, None) is not None:
                if end.mask is not None:
                    try:
                        self.poller.unregister(end.fd)
                    except OSError:
                        pass
                end.sock.close()

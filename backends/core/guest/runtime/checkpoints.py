# --------------------------------------------------------------------------- checkpoints
#
# A session's state as bytes, and back (issue 17: durable sessions). Serialising happens here,
# inside the sandbox: the host stores the bytes and never unpickles them. Each global is
# pickled on its own (cloudpickle, so functions and classes defined in the session travel by
# value), so one that cannot be saved (an open file, a socket, a generator, a lock) is named
# with its reason instead of failing the whole checkpoint. Modules are saved by name and
# imported again on restore.
#
# The bytes cross to the host in calls of the run that asked for them (frames.md, "Runtime
# actions"): `checkpoint_begin`, `checkpoint_chunk` (base64, in order, by offset),
# `checkpoint_commit`; and back with `restore_begin`, `restore_chunk`, `restore_done`.

CHECKPOINT_ROOT = "/workspace"  # the session's files; absent in the host-CPython test sandbox
CHECKPOINT_CHUNK = 512 << 10  # bytes per call: 683 KiB of base64, within any rpc frame cap
CLOUDPICKLE = "cloudpickle==3.1.1"  # installed for interpreters without it (the slim WASI one)
CHECKPOINT_SKIPPED = ("__builtins__", "__name__", "__doc__", "__loader__", "__spec__",
                      "__package__", "mcp_servers")


SESSION_GLOBALS_ID = "session-globals"  # how a pickle refers to the session's own globals
SESSION_MAGIC = b"MCPSESSION1\n"  # a payload: this, u32 index length, the index, the blobs


class CheckpointTooLarge(ValueError):
    """A session's state is over the checkpoint cap."""


class SessionBlobs:
    """A checkpoint being written: a list of blobs (each global's pickle, the buffers of its
    large objects, the tar of the files) and an index of where each is. Nothing is copied
    into a growing buffer or a nested pickle: a numpy array's data is sent from the array
    itself (a pickle protocol 5 out-of-band buffer), so saving a session that holds a
    100 MB array needs next to no memory more, and restoring it the payload's bytes only."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.blobs: list = []  # bytes or memoryviews, sent in order
        self.size = 0
        self.modules: dict[str, str] = {}
        self.values: list[tuple[str, tuple[int, int], list[tuple[int, int]]]] = []
        self.files: tuple[int, int] | None = None

    def over(self, size: int) -> CheckpointTooLarge:
        return CheckpointTooLarge(
            f"the session's state is more than the {self.limit} bytes a checkpoint may hold"
            f" (at least {size} bytes); delete large variables or files, or raise"
            " MCP_BRIDGE_CHECKPOINT_LIMIT"
        )

    def add(self, blob: object) -> tuple[int, int]:
        """Appends a blob; where it is."""
        start, size = self.size, memoryview(blob).nbytes
        if start + size > self.limit:
            raise self.over(start + size)
        self.blobs.append(blob)
        self.size += size
        return start, self.size

    def parts(self) -> list:
        """The payload, as buffers to send one after the other."""
        import pickle

        index = pickle.dumps(
            {"modules": self.modules, "values": self.values, "files": self.files},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        head = SESSION_MAGIC + len(index).to_bytes(4, "big") + index
        if len(head) + self.size > self.limit:
            raise self.over(len(head) + self.size)
        return [head, *self.blobs]


class BlobWriter:
    """A write-only file that keeps what is written as a list of pieces (for pickle and
    tarfile), never reallocating one growing buffer."""

    def __init__(self, limit: int) -> None:
        self.pieces: list[bytes] = []
        self.written = 0
        self.limit = limit

    def write(self, data: object) -> int:
        piece = bytes(data)
        self.written += len(piece)
        if self.written > self.limit:
            raise CheckpointTooLarge(f"at least {self.written} bytes")
        self.pieces.append(piece)
        return len(piece)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        pass

    def joined(self) -> bytes:
        return b"".join(self.pieces)


def add_globals(blobs: SessionBlobs, user_globals: dict) -> tuple[list[str], list[str]]:
    """Pickles each of the user's globals into `blobs`; `(names saved, names not saved with
    why)`. Functions and classes defined in the session refer to the session's globals by a
    persistent id, not a copy: restored, they read and write the live globals again."""
    import pickle

    import cloudpickle

    class SessionPickler(cloudpickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            # cloudpickle gives the functions of one globals dict one stand-in dict (its
            # `globals_ref`); ours stands for the session's globals themselves.
            if type(obj) is dict and obj is self.globals_ref.get(id(user_globals)):
                return SESSION_GLOBALS_ID
            return None

    unsaveable: list[str] = []
    for name, value in list(user_globals.items()):
        if name in CHECKPOINT_SKIPPED or name.startswith("mcp_"):
            continue
        if isinstance(value, ModuleType):
            blobs.modules[name] = value.__name__
            continue
        if isinstance(value, io.IOBase):  # cloudpickle would copy a readable file's content
            unsaveable.append(f"{name}: an open file (open it again after a restore)")
            continue
        out = BlobWriter(blobs.limit - blobs.size)
        buffers: list = []
        try:
            SessionPickler(out, protocol=5, buffer_callback=buffers.append).dump(value)
            views = [out_of_band(buffer) for buffer in buffers]
        except CheckpointTooLarge:
            raise blobs.over(blobs.size + out.written) from None
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot be saved"
            unsaveable.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            continue
        at = blobs.add(out.joined())
        blobs.values.append((name, at, [blobs.add(view) for view in views]))
    saved = [name for name, _, _ in blobs.values]
    return sorted([*saved, *blobs.modules]), unsaveable


def out_of_band(buffer: object) -> object:
    """The bytes of a pickle protocol 5 buffer, without a copy when they are contiguous."""
    try:
        return buffer.raw()
    except BufferError:  # not contiguous: copied
        return bytes(buffer)


def restore_globals(view: memoryview, index: dict, user_globals: dict) -> list[str]:
    """Puts the globals of a payload's blobs (`view`) back; the names that could not be.
    Large objects' buffers are views of `view`: a restored array shares its memory."""
    import importlib
    import pickle

    class SessionUnpickler(pickle.Unpickler):
        def persistent_load(self, pid: object) -> object:
            if pid == SESSION_GLOBALS_ID:
                return user_globals
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.40}")

    failed: list[str] = []
    for name, module in index["modules"].items():
        try:
            user_globals[name] = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    for name, (start, end), buffers in index["values"]:
        try:
            unpickler = SessionUnpickler(
                io.BytesIO(view[start:end]), buffers=[view[a:b] for a, b in buffers]
            )
            user_globals[name] = unpickler.load()
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    return failed


def add_files(blobs: SessionBlobs, root: str) -> None:
    """The files under `root` into `blobs`, as an uncompressed tar (none when there are only
    empty folders). Symbolic links are kept as links, never followed."""
    import os
    import tarfile

    entries = []
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        entries.extend(f"{directory}/{name}" for name in sorted(files))
        entries.extend(f"{directory}/{name}" for name in dirs)
    if not any(not os.path.isdir(path) or os.path.islink(path) for path in entries):
        return
    out = BlobWriter(blobs.limit - blobs.size)
    try:
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in entries:
                info = tar.gettarinfo(path, arcname=path[len(root) :].lstrip("/"))
                if info.isreg():
                    with open(path, "rb") as file:
                        tar.addfile(info, file)
                else:
                    tar.addfile(info)
    except CheckpointTooLarge:
        raise blobs.over(blobs.size + out.written) from None
    blobs.files = blobs.add(out.joined())


def restore_files(data: bytes, root: str, filtered: bool | None = None) -> None:
    """Unpacks `checkpoint_files` output under `root`, refusing paths and links that leave
    it, absolute paths and device files: with tarfile's `data` filter where the interpreter
    has it (`filtered`), else by checking each member the same way."""
    import tarfile

    if filtered is None:
        filtered = hasattr(tarfile, "data_filter")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        if filtered:
            tar.extractall(root, filter="data")
        else:
            tar.extractall(root, members=confined_members(tar, root))


def confined_members(tar: object, root: str) -> list:
    """The members of `tar` if every one stays inside `root` (the `data` filter's rules, for
    interpreters older than it); raises `tarfile.TarError` naming the first that does not."""
    import os
    import tarfile

    real_root = os.path.realpath(root)

    def inside(path: str) -> bool:
        return os.path.commonpath([real_root, os.path.realpath(path)]) == real_root

    members = tar.getmembers()
    for member in members:
        if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
            raise tarfile.TarError(f"{member.name!r} is not a file, a folder or a link")
        path = os.path.join(real_root, member.name)
        if os.path.isabs(member.name) or not inside(path):
            raise tarfile.TarError(f"{member.name!r} would be extracted outside {root}")
        if member.issym():
            link = os.path.join(os.path.dirname(path), member.linkname)
        elif member.islnk():
            link = os.path.join(real_root, member.linkname)
        else:
            link = None
        if link is not None and (os.path.isabs(member.linkname) or not inside(link)):
            raise tarfile.TarError(f"{member.name!r} links outside {root}")
        if member.isreg() or member.isdir():
            member.mode &= 0o755  # no set-id bits, nothing writable by others
        member.uid = member.gid = 0
        member.uname = member.gname = ""
    return members


def checkpoint_session(user_globals: dict, root: str | None, limit: int) -> tuple[list, list[str], list[str]]:
    """The whole state of a session, globals and the files under `root`, as the buffers of
    one payload of at most `limit` bytes (ValueError says it is over), with the names saved
    and those that could not be."""
    blobs = SessionBlobs(limit)
    names, unsaveable = add_globals(blobs, user_globals)
    if root:
        add_files(blobs, root)
    return blobs.parts(), names, unsaveable


def restore_session(payload: object, user_globals: dict, root: str | None) -> list[str]:
    """Puts back what `checkpoint_session` saved (`payload`: any bytes-like object); returns
    the names that could not be restored."""
    import pickle

    view = memoryview(payload).cast("B")
    if view[: len(SESSION_MAGIC)] != SESSION_MAGIC:
        raise ValueError("this is not a saved session")
    start = len(SESSION_MAGIC) + 4
    length = int.from_bytes(view[len(SESSION_MAGIC) : start], "big")
    index = pickle.loads(view[start : start + length])
    blobs = view[start + length :]
    if root and index["files"]:
        begin, end = index["files"]
        restore_files(bytes(blobs[begin:end]), root)
    return restore_globals(blobs, index, user_globals)


def checkpoint_root() -> str | None:
    """The folder whose files a checkpoint holds, if this sandbox has it."""
    try:
        _os.listdir(CHECKPOINT_ROOT)
    except OSError:
        return None
    return CHECKPOINT_ROOT


def ensure_cloudpickle(calls: "HostCalls") -> None:
    """Makes cloudpickle importable: an interpreter without it (the slim WASI one) installs
    it for the session, as `mcp.runtime.install` would."""
    try:
        import cloudpickle  # noqa: F401
        return
    except ImportError:
        pass
    try:
        installed(calls.call("install", install_params((CLOUDPICKLE,))))
        import cloudpickle  # noqa: F401
    except (MCPError, ImportError) as exc:
        raise MCPError(
            "this interpreter cannot save or restore sessions: it has no cloudpickle, and"
            f" installing {CLOUDPICKLE} failed ({exc})",
            kind="unsupported",
        ) from None


def checkpoint_to_host(calls: "HostCalls", user_globals: dict, session: str | None) -> dict:
    """Saves the session's state on the host, as itself (`session` None) or as a copy named
    `session`; returns what the host recorded: `{session, bytes, saved, unsaveable, at}`."""
    import binascii

    begun = calls.call("checkpoint_begin", {"session": session})
    limit = begun.get("limit") if isinstance(begun, dict) else None
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise MCPError("the host did not say how large a checkpoint may be", kind="internal")
    ensure_cloudpickle(calls)
    try:
        parts, names, unsaveable = checkpoint_session(user_globals, checkpoint_root(), limit)
    except CheckpointTooLarge as exc:
        raise MCPError(str(exc), kind="too_large") from None
    offset = 0
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(view), CHECKPOINT_CHUNK):
            chunk = view[start : start + CHECKPOINT_CHUNK]
            data = binascii.b2a_base64(chunk, newline=False).decode("ascii")
            calls.call("checkpoint_chunk", {"offset": offset, "data": data})
            offset += len(chunk)
        view.release()
    del parts
    return calls.call(
        "checkpoint_commit",
        {"bytes": offset, "saved": names, "unsaveable": unsaveable},
    )


def restore_from_host(calls: "HostCalls", user_globals: dict) -> None:
    """Loads the checkpoint the host holds for this session; tells the host which names
    could not be restored (`restore_done`)."""
    import binascii

    ensure_cloudpickle(calls)
    begun = calls.call("restore_begin", {})
    total = begun.get("bytes") if isinstance(begun, dict) else None
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        raise MCPError("the host did not say how large the checkpoint is", kind="internal")
    payload = bytearray(total)
    offset = 0
    while offset < total:
        answer = calls.call("restore_chunk", {"offset": offset})
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, str) or not data:
            raise MCPError("the host sent no checkpoint data", kind="internal")
        chunk = binascii.a2b_base64(data)
        if offset + len(chunk) > total:
            raise MCPError("the host sent more checkpoint data than it announced", kind="internal")
        payload[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
    failed = restore_session(payload, user_globals, checkpoint_root())
    calls.call("restore_done", {"failed": failed})

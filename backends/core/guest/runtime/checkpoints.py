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


def checkpoint_globals(user_globals: dict) -> tuple[bytes, list[str], list[str]]:
    """`(payload, names saved, names not saved with why)` of the user's globals.

    Functions and classes defined in the session refer to the session's globals by a
    persistent id, not a copy: restored, they read and write the live globals again.
    """
    import pickle

    import cloudpickle

    class SessionPickler(cloudpickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            # cloudpickle gives the functions of one globals dict one stand-in dict (its
            # `globals_ref`); ours stands for the session's globals themselves.
            if type(obj) is dict and obj is self.globals_ref.get(id(user_globals)):
                return SESSION_GLOBALS_ID
            return None

    buffer = io.BytesIO()
    pickler = SessionPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    values: dict[str, bytes] = {}
    modules: dict[str, str] = {}
    unsaveable: list[str] = []
    for name, value in list(user_globals.items()):
        if name in CHECKPOINT_SKIPPED or name.startswith("mcp_"):
            continue
        if isinstance(value, ModuleType):
            modules[name] = value.__name__
            continue
        if isinstance(value, io.IOBase):  # cloudpickle would copy a readable file's content
            unsaveable.append(f"{name}: an open file (open it again after a restore)")
            continue
        buffer.seek(0)
        buffer.truncate()
        pickler.clear_memo()  # each name loads on its own
        try:
            pickler.dump(value)
            values[name] = buffer.getvalue()
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot be saved"
            unsaveable.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    payload = pickle.dumps({"values": values, "modules": modules}, protocol=pickle.HIGHEST_PROTOCOL)
    return payload, sorted([*values, *modules]), unsaveable


def restore_globals(payload: bytes, user_globals: dict) -> list[str]:
    """Puts a checkpoint's globals back; returns the names that could not be restored."""
    import importlib
    import pickle

    class SessionUnpickler(pickle.Unpickler):
        def persistent_load(self, pid: object) -> object:
            if pid == SESSION_GLOBALS_ID:
                return user_globals
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.40}")

    state = pickle.loads(payload)
    failed: list[str] = []
    for name, module in state["modules"].items():
        try:
            user_globals[name] = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    for name, data in state["values"].items():
        try:
            user_globals[name] = SessionUnpickler(io.BytesIO(data)).load()
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    return failed


def checkpoint_files(root: str, limit: int) -> bytes:
    """The files under `root` as an uncompressed tar, at most `limit` bytes of file content
    (ValueError names the size over it). Symbolic links are kept as links, never followed."""
    import os
    import tarfile

    buffer = io.BytesIO()
    total = 0
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(files):
                path = f"{directory}/{name}"
                info = tar.gettarinfo(path, arcname=path[len(root) :].lstrip("/"))
                total += info.size if info.isreg() else 0
                if total > limit:
                    raise ValueError(f"the files under {root} hold more than {limit} bytes")
                if info.isreg():
                    with open(path, "rb") as file:
                        tar.addfile(info, file)
                else:
                    tar.addfile(info)
            for name in dirs:
                path = f"{directory}/{name}"
                tar.addfile(tar.gettarinfo(path, arcname=path[len(root) :].lstrip("/")))
    return buffer.getvalue()


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


def checkpoint_session(user_globals: dict, root: str | None, limit: int) -> tuple[bytes, list[str], list[str]]:
    """The whole state of a session, globals and the files under `root`, as one payload of at
    most `limit` bytes (ValueError says by how much it is over), with the names saved and
    those that could not be."""
    import pickle

    values, names, unsaveable = checkpoint_globals(user_globals)
    over = ValueError(
        f"the session's state is more than the {limit} bytes a checkpoint may hold (its "
        f"variables take {len(values)} bytes); delete large variables or files, or raise "
        "MCP_BRIDGE_CHECKPOINT_LIMIT"
    )
    try:
        files = checkpoint_files(root, max(limit - len(values), 0)) if root else b""
    except ValueError:
        raise over from None
    payload = pickle.dumps({"globals": values, "files": files}, protocol=pickle.HIGHEST_PROTOCOL)
    if len(payload) > limit:
        raise over
    return payload, names, unsaveable


def restore_session(payload: bytes, user_globals: dict, root: str | None) -> list[str]:
    """Puts back what `checkpoint_session` saved; returns the names that could not be."""
    import pickle

    state = pickle.loads(payload)
    if root and state["files"]:
        restore_files(state["files"], root)
    return restore_globals(state["globals"], user_globals)


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
        payload, names, unsaveable = checkpoint_session(user_globals, checkpoint_root(), limit)
    except ValueError as exc:
        raise MCPError(str(exc), kind="too_large") from None
    view = memoryview(payload)
    for offset in range(0, len(payload), CHECKPOINT_CHUNK):
        data = binascii.b2a_base64(view[offset : offset + CHECKPOINT_CHUNK], newline=False)
        calls.call("checkpoint_chunk", {"offset": offset, "data": data.decode("ascii")})
    return calls.call(
        "checkpoint_commit",
        {"bytes": len(payload), "saved": names, "unsaveable": unsaveable},
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
    payload = bytearray()
    while len(payload) < total:
        answer = calls.call("restore_chunk", {"offset": len(payload)})
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, str) or not data:
            raise MCPError("the host sent no checkpoint data", kind="internal")
        payload += binascii.a2b_base64(data)
    if len(payload) != total:
        raise MCPError("the host sent more checkpoint data than it announced", kind="internal")
    failed = restore_session(bytes(payload), user_globals, checkpoint_root())
    calls.call("restore_done", {"failed": failed})

# --------------------------------------------------------------------------- checkpoints
#
# A session's state as bytes, and back (issue 17: durable sessions). Serialising happens here,
# inside the sandbox: the host stores the bytes and never unpickles them. Each global is
# pickled on its own (cloudpickle, so functions and classes defined in the session travel by
# value), so one that cannot be saved (an open file, a socket, a generator, a lock) is named
# with its reason instead of failing the whole checkpoint. Modules are saved by name and
# imported again on restore. Not wired to frames yet.

CHECKPOINT_SKIPPED = ("__builtins__", "__name__", "__doc__", "__loader__", "__spec__",
                      "__package__", "mcp_servers")


def checkpoint_globals(user_globals: dict) -> tuple[bytes, list[str], list[str]]:
    """`(payload, names saved, names not saved with why)` of the user's globals."""
    import pickle

    import cloudpickle

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
        try:
            values[name] = cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot be saved"
            unsaveable.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    payload = pickle.dumps({"values": values, "modules": modules}, protocol=pickle.HIGHEST_PROTOCOL)
    return payload, sorted([*values, *modules]), unsaveable


def restore_globals(payload: bytes, user_globals: dict) -> list[str]:
    """Puts a checkpoint's globals back; returns the names that could not be restored."""
    import importlib
    import pickle

    state = pickle.loads(payload)
    failed: list[str] = []
    for name, module in state["modules"].items():
        try:
            user_globals[name] = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    for name, data in state["values"].items():
        try:
            user_globals[name] = pickle.loads(data)
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


def restore_files(data: bytes, root: str) -> None:
    """Unpacks `checkpoint_files` output under `root`; the `data` filter refuses paths that
    leave it, absolute paths and device files."""
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tar.extractall(root, filter="data")


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

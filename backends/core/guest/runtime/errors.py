# --------------------------------------------------------------------------- errors


def describe_error(exc: BaseException) -> dict[str, str]:
    """The `error` object of a result: type, message and a traceback of user frames."""
    try:
        return {
            "type": type_name(exc),
            "message": clip(error_message(exc), MESSAGE_LIMIT),
            "traceback": clip(format_traceback(exc), TRACEBACK_LIMIT),
        }
    except BaseException as failure:  # a hostile __str__, __repr__ or __module__
        return {
            "type": type(exc).__name__,
            "message": f"<the error could not be described: {type(failure).__name__}>",
            "traceback": "",
        }


RUNTIME_FILE = describe_error.__code__.co_filename


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    if module in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def error_message(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return "" if exc.code is None else str(exc.code)
    try:
        text = str(exc)
    except Exception:
        return "<exception str() failed>"
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list) and notes:
        text = "\n".join([text, *(note for note in notes if isinstance(note, str))])
    return text


# --------------------------------------------------------------------------- next steps
#
# An error the agent can fix in its next call says how, as a note on the exception (shown
# at the end of the traceback, and in the message): a proxy used without its server named,
# a module this interpreter lacks.

# Import names whose distribution on the package index is named otherwise.
DISTRIBUTION_NAMES = {
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "PIL": "pillow",
    "cv2": "opencv-python-headless",
    "bs4": "beautifulsoup4",
    "dateutil": "python-dateutil",
    "skimage": "scikit-image",
    "docx": "python-docx",
    "pptx": "python-pptx",
}
# What an analysis reaches for first, to say what this interpreter has.
DATA_STACK = ("numpy", "pandas", "scipy", "sklearn", "matplotlib")


def add_next_step(exc: BaseException, catalogue: tuple) -> None:
    """Adds a note saying what to do next when `exc` is an error the agent can fix."""
    try:
        step = next_step(exc, catalogue)
        if step is not None:
            exc.add_note(step)
    except Exception as failure:  # never worse than the bare error
        diagnose(f"no next step for {type(exc).__name__}: {failure!r}")


def next_step(exc: BaseException, catalogue: tuple) -> str | None:
    if isinstance(exc, NameError) and not isinstance(exc, UnboundLocalError):
        return proxy_name_step(getattr(exc, "name", None), catalogue)
    if isinstance(exc, ModuleNotFoundError) and isinstance(exc.name, str):
        return missing_module_step(exc.name.partition(".")[0])
    return None


def proxy_name_step(name: object, catalogue: tuple) -> str | None:
    if not isinstance(name, str) or not name.startswith("mcp_") or name == "mcp_servers":
        return None
    alias = name[len("mcp_") :]
    for entry in catalogue:
        if entry["alias"] == alias:
            server = entry["name"]
            return (
                f"`{name}` is the proxy of the MCP server {server!r}; a run has the proxies "
                f"of the servers it names: call run_python again with servers=[{server!r}]"
            )
    known = ", ".join(f"mcp_{entry['alias']}" for entry in catalogue) or "none configured"
    return (
        f"no MCP server has the alias {alias!r}; proxies a run can name: {known} "
        "(`await mcp.runtime.discovered_servers()` lists the servers)"
    )


def missing_module_step(top: str) -> str | None:
    if not top or top == "mcp" or top.startswith("_"):
        return None
    import importlib.util

    have = [
        DISTRIBUTION_NAMES.get(name, name)
        for name in DATA_STACK
        if importlib.util.find_spec(name) is not None
    ]
    version = ".".join(str(part) for part in sys.version_info[:3])
    interpreter = f"{sys.implementation.name} {version} on {sys.platform}"
    distribution = DISTRIBUTION_NAMES.get(top, top)
    install = f"`await mcp.runtime.install({distribution!r})`"
    if sys.platform == "wasi":
        if not have:
            return (
                f"this sandbox runs the slim WASI interpreter ({interpreter}): the standard "
                "library only. The default full interpreter (MCP_BRIDGE_WASI_PYTHON=full) "
                f"has numpy, pandas, scipy, scikit-learn and matplotlib; {install} adds "
                "pure-Python packages"
            )
        return (
            f"`{top}` is not in this sandbox's interpreter ({interpreter}, with "
            f"{', '.join(have)} and ~50 more built in); {install} adds it if it is pure "
            "Python (WASI loads no other compiled extensions); for compiled packages use "
            "the podman, docker or oci backend"
        )
    with_stack = f", with {', '.join(have)}" if have else ""
    return (
        f"`{top}` is not in this sandbox's interpreter ({interpreter}{with_stack}); "
        f"{install} adds it from the package index's wheels, the sandbox staying offline"
    )


def format_traceback(exc: BaseException) -> str:
    import linecache
    import traceback

    try:
        share_sources(linecache)  # again, in case user code cleared the cache
    except Exception:  # user code replaced linecache.cache
        pass
    report = traceback.TracebackException(type(exc), exc, exc.__traceback__, compact=True)
    for part in exception_chain(report):
        part.stack = traceback.StackSummary.from_list(user_frames(part.stack))
    return "".join(report.format())


def exception_chain(report: object) -> list:
    """Every TracebackException in `report`: causes, contexts and group members."""
    found: list = []
    seen: set[int] = set()
    pending = [report]
    while pending:
        part = pending.pop()
        if part is None or id(part) in seen:
            continue
        seen.add(id(part))
        found.append(part)
        pending += [part.__cause__, part.__context__]
        pending += getattr(part, "exceptions", None) or []
    return found


def user_frames(stack: list) -> list:
    """Drops the runtime's frames, and the plumbing (asyncio) between it and user code."""
    frames = [frame for frame in stack if frame.filename != RUNTIME_FILE]
    for index, frame in enumerate(frames):
        if frame.filename.startswith("<run-"):
            return frames[index:]
    return frames


def clip(text: str, limit: int) -> str:
    """`text` as valid UTF-8 of at most about `limit` bytes, with an inline cut note."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return data.decode("utf-8")
    head = decode_prefix(data[: limit * 3 // 4])
    tail = decode_suffix(data[len(data) - limit // 4 :])
    dropped = len(data) - utf8_len(head) - utf8_len(tail)
    return f"{head}\n[... {dropped} bytes cut ...]\n{tail}"


# Every run's source by file name (`<run-N>`). Tracebacks, `inspect` and `warnings` read
# sources through `linecache`, which is slow to import (`tokenize`, `re`: about 30 ms on
# WASI), so the runtime never imports it for a run that succeeds: the sources go into
# `linecache.cache` when it is imported (`ImportHooks`) and, once it is, at each run.
RUN_SOURCES: dict[str, str] = {}


def remember_source(filename: str, code: str) -> None:
    """Lets tracebacks, `inspect` and `warnings` show the lines of a run."""
    RUN_SOURCES[filename] = code
    linecache = sys.modules.get("linecache")
    if linecache is not None:
        try:
            linecache.cache[filename] = source_entry(filename, code)
        except Exception:  # user code replaced linecache or its cache
            pass


def source_entry(filename: str, code: str) -> tuple:
    """A `linecache.cache` entry: size, mtime (None: never checked), lines, file name."""
    return (len(code), None, code.splitlines(keepends=True), filename)


def share_sources(linecache: ModuleType) -> None:
    """Puts the sources of runs that `linecache.cache` lacks into it."""
    cache = linecache.cache
    for filename, code in RUN_SOURCES.items():
        if filename not in cache:
            cache[filename] = source_entry(filename, code)

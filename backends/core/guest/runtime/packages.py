# --------------------------------------------------------------------------- packages on demand

PACKAGES_DIR = "/mnt"  # the session's packages, mounted read-only (src/packages.rs GUEST_DIR)


def install_params(requirements: tuple) -> dict:
    """The `install` call: the requirements and what this interpreter says of itself.

    The host resolves wheels for the Python version, machine and C library given here, and
    leaves out what the distributions listed in `provided` already supply.
    """
    if not requirements:
        raise TypeError("install() takes one or more requirements, like install('humanize')")
    for requirement in requirements:
        if not isinstance(requirement, str):
            raise TypeError(f"requirements are strings, not {type(requirement).__name__}")
    import os
    from importlib import metadata

    provided: dict[str, list] = {}
    for dist in metadata.distributions():
        try:
            name, version = dist.metadata["Name"], dist.version
        except Exception:
            continue
        if isinstance(name, str) and isinstance(version, str):
            provided.setdefault(name.lower(), [name, version])  # the first on sys.path wins
    uname = getattr(os, "uname", None)
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc = None
    return {
        "requirements": list(requirements),
        "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        "machine": uname().machine if uname is not None else None,
        "libc": libc,
        "provided": list(provided.values()),
    }


def installed(result: object) -> dict:
    """Puts a finished install on `sys.path` and says what it added."""
    result = result if isinstance(result, dict) else {}
    path = result.get("path")
    if isinstance(path, str) and path.startswith(PACKAGES_DIR + "/") and path not in sys.path:
        sys.path.append(path)
    import importlib

    importlib.invalidate_caches()
    added = [
        f"{item.get('name')} {item.get('version')}"
        for item in result.get("installed") or ()
        if isinstance(item, dict)
    ]
    already = [text for text in result.get("provided") or () if isinstance(text, str)]
    return {"installed": added, "already_present": already}


def package_helpers(session: "Session") -> dict[str, object]:
    """`install` and `install_sync` for `mcp.runtime`."""
    calls = session.calls

    async def install(*requirements: str) -> dict:
        """Installs packages from the package index for this session: wheels only, fetched
        by the host (the sandbox stays offline), read-only on sys.path. Takes requirements
        like "humanize" or "pyfiglet==1.0.4"; returns {installed, already_present}. Raises
        MCPError naming the package and why (not found, no wheel for this platform, only
        an sdist, over the size cap, installs disabled)."""
        return installed(await calls.call_async("install", install_params(requirements)))

    def install_sync(*requirements: str) -> dict:
        """install(), without await."""
        return installed(calls.call("install", install_params(requirements)))

    return {"install": install, "install_sync": install_sync}

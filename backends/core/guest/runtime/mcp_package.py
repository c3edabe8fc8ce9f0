# --------------------------------------------------------------------------- the `mcp` package


class MCPError(RuntimeError):
    """An MCP call failed: raised by the `mcp_<alias>` proxies and the `mcp.runtime` helpers.

    `kind` says why: the host's error kinds ("not_allowed", "unknown_server",
    "unknown_tool", "invalid_params", "upstream", "busy", "not_found", "internal"), or
    "tool_error" when a tool reported an error (`isError`), with its raw MCP result in
    `result` (None otherwise).
    """

    def __init__(self, *args: object, kind: str | None = None, result: object = None) -> None:
        super().__init__(*args)
        self.kind = kind
        self.result = result


MCPError.__module__ = "mcp"


def server_entries(catalogue: object) -> tuple[dict[str, str], ...]:
    """The hello catalogue as `{name, alias, description}` dicts (bad entries skipped)."""
    if not isinstance(catalogue, list):
        raise BadFrame("hello.catalogue must be a list")
    entries = []
    for entry in catalogue:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            alias = entry.get("alias")
            description = entry.get("description")
            entries.append(
                {
                    "name": entry["name"],
                    "alias": alias if isinstance(alias, str) else entry["name"],
                    "description": description if isinstance(description, str) else "",
                }
            )
        else:
            diagnose(f"skipped a malformed catalogue entry: {entry!r:.200}")
    return tuple(entries)


def run_servers(value: object) -> list[tuple[str, str]]:
    """A run frame's `servers` as `(name, alias)` pairs (aliases made here if missing)."""
    if not isinstance(value, list):
        raise BadFrame("run.servers must be a list")
    servers: list[tuple[str, str]] = []
    names: set[str] = set()
    aliases: set[str] = set()
    for entry in value:
        if isinstance(entry, str):
            name, alias = entry, None
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, alias = entry["name"], entry.get("alias")
        else:
            raise BadFrame("run.servers must be a list of {name, alias} objects")
        if name in names:
            continue
        if not (isinstance(alias, str) and alias.isidentifier() and alias not in aliases):
            alias = alias_of(name, aliases)
        names.add(name)
        aliases.add(alias)
        servers.append((name, alias))
    return servers


# keyword.kwlist (3.7+), without importing `keyword`
KEYWORDS = frozenset(
    "False None True and as assert async await break class continue def del elif else"
    " except finally for from global if import in is lambda nonlocal not or pass raise"
    " return try while with yield".split()
)
ALIAS_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")
PARAMETER_CHARACTERS = ALIAS_CHARACTERS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def alias_of(name: str, taken: object = (), keyword_suffix: bool = False) -> str:
    """An alias as REFERENCE §5 makes them: `name` lowercased, each run of characters
    outside [a-z0-9_] replaced by `_`, a leading digit prefixed with `_`, (for tools) a
    Python keyword given a trailing `_`, and a clash with `taken` numbered `_2`, `_3`, ..."""
    return identifier(name.lower(), ALIAS_CHARACTERS, taken, keyword_suffix)


def parameter_name(name: str, taken: set[str]) -> str:
    """A Python parameter name for a JSON property name (kept when it is one already)."""
    return identifier(name, PARAMETER_CHARACTERS, taken, keyword_suffix=True)


def identifier(text: str, allowed: frozenset, taken: object, keyword_suffix: bool) -> str:
    """`text` with each run of characters outside `allowed` replaced by `_`, a leading digit
    prefixed with `_`, a keyword given a trailing `_` if `keyword_suffix`, and a clash with
    `taken` numbered `_2`, `_3`, ..."""
    parts: list[str] = []
    for char in text:
        if char in allowed:
            parts.append(char)
        elif not parts or parts[-1] != "\0":
            parts.append("\0")
    alias = "".join(parts).replace("\0", "_") or "_"
    if alias[0].isdigit():
        alias = "_" + alias
    if keyword_suffix and alias in KEYWORDS:
        alias += "_"
    base, number = alias, 2
    while alias in taken:
        alias = f"{base}_{number}"
        number += 1
    return alias

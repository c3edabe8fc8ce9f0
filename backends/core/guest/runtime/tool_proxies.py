# --------------------------------------------------------------------------- tool proxies

JSON_TYPES: dict[str, type] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


def schema_types(schema: object, depth: int = 0) -> tuple[str, ...] | None:
    """The JSON types a value of `schema` may have, or None when not simply known."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    kind = schema.get("type")
    if isinstance(kind, str):
        return (kind,) if kind in JSON_TYPES else None
    if isinstance(kind, list):
        kinds = tuple(k for k in kind if isinstance(k, str) and k in JSON_TYPES)
        return kinds if kinds and len(kinds) == len(kind) else None
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            found: list[str] = []
            for option in options:
                kinds = schema_types(option, depth + 1)
                if kinds is None:
                    return None
                found += [k for k in kinds if k not in found]
            return tuple(found)
    return None


def type_matches(value: object, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, dict)
    return value is None


def python_type(kind: str, schema: dict) -> object:
    """The annotation for one JSON type: `str`, `list[str]`, ..."""
    if kind == "array":
        items = schema_types(schema.get("items"))
        if items is not None and len(items) == 1 and items[0] not in ("array", "null"):
            return list[JSON_TYPES[items[0]]]
    return JSON_TYPES[kind]


def type_text(annotation: object) -> str:
    if isinstance(annotation, type):
        return "None" if annotation is type(None) else annotation.__name__
    return repr(annotation).replace("NoneType", "None")


def closest_name(key: str, names: list[str]) -> str | None:
    """The valid argument name `key` most likely meant: a close spelling, a name it begins
    or ends, or one it abbreviates (its letters in order, the first the same)."""
    import difflib

    lowered = {name.lower(): name for name in names}
    close = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return lowered[close[0]]
    folded = key.lower().replace("_", "")
    for name in names:
        plain = name.lower().replace("_", "")
        if folded and (plain.startswith(folded) or folded.startswith(plain)):
            return name
    for name in names:
        letters = iter(name.lower())
        if len(folded) >= 2 and name[:1].lower() == folded[:1] and all(c in letters for c in folded):
            return name
    return None


class ToolParameter:
    __slots__ = ("name", "prop", "required", "kinds", "annotation", "default", "schema")

    def __init__(self, name: str, prop: str, required: bool, schema: object) -> None:
        schema = schema if isinstance(schema, dict) else {}
        self.name = name
        self.prop = prop
        self.required = required
        self.schema = schema
        self.kinds = schema_types(schema)
        self.annotation: object = None  # None: not annotated
        if self.kinds:
            for kind in self.kinds:
                annotation = python_type(kind, schema)
                self.annotation = (
                    annotation if self.annotation is None else self.annotation | annotation
                )
        self.default = schema.get("default")


class ToolSpec:
    """A tool's arguments as its input schema describes them: checks calls, makes the
    signature and the argument part of the docstring."""

    def __init__(self, label: str, schema: object) -> None:
        self.label = label
        schema = schema if isinstance(schema, dict) else {}
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        extra = schema.get("additionalProperties")
        self.extra = extra is True or isinstance(extra, dict)
        order = [p for p in required if p] + [p for p in properties if p not in required]
        order = list(dict.fromkeys(order))  # required first, each once
        # Property names that are parameter names already keep them; the others get one.
        taken = {p for p in order if p.isidentifier() and p not in KEYWORDS}
        self.params: list[ToolParameter] = []
        self.keywords: dict[str, ToolParameter] = {}
        for prop in order:
            if prop.isidentifier() and prop not in KEYWORDS:
                name = prop
            else:
                name = parameter_name(prop, taken)
                taken.add(name)
            param = ToolParameter(name, prop, prop in required, properties.get(prop))
            self.params.append(param)
            self.keywords[name] = param
        for param in self.params:  # the JSON name works too: f(**{"user-id": 7})
            self.keywords.setdefault(param.prop, param)
        self.extra_name = parameter_name("kwargs", taken) if self.extra else None

    def arguments(self, args: tuple, kwargs: dict) -> dict:
        """The call's `arguments` object, or TypeError before anything is sent."""
        label = self.label
        if args:
            raise TypeError(
                f"{label}() takes keyword arguments only ({len(args)} positional given)"
            )
        arguments: dict = {}
        unknown: list[str] = []
        for key, value in kwargs.items():
            param = self.keywords.get(key)
            if param is None:
                if self.extra:
                    arguments[key] = value
                else:
                    unknown.append(key)
                continue
            if param.prop in arguments:
                raise TypeError(f"{label}() got argument {param.name!r} twice")
            if value is None and not param.required:
                continue  # None stands for "not given"
            arguments[param.prop] = value
        missing = [p.name for p in self.params if p.required and p.prop not in arguments]
        if unknown:
            raise TypeError(self.unexpected(unknown, missing))
        if missing:
            raise TypeError(
                f"{label}() missing {len(missing)} required keyword argument"
                f"{'s' if len(missing) > 1 else ''}: {', '.join(map(repr, missing))}"
            )
        for param in self.params:
            if param.kinds and param.prop in arguments:
                value = arguments[param.prop]
                if not any(type_matches(value, kind) for kind in param.kinds):
                    raise TypeError(
                        f"{label}() argument {param.name!r} must be"
                        f" {type_text(param.annotation)}, not {type(value).__name__}"
                    )
        return arguments

    def unexpected(self, unknown: list[str], missing: list[str]) -> str:
        """Every unknown keyword at once, each with the valid name it most likely meant,
        then the valid ones (which are required) and what is still missing."""
        names = [p.name for p in self.params]
        guesses = []
        for key in unknown:
            meant = closest_name(key, names)
            guesses.append(f"{key!r} (did you mean {meant!r}?)" if meant else repr(key))
        count = len(unknown)
        noun = "an unexpected keyword argument" if count == 1 else f"{count} unexpected keyword arguments"
        valid = ", ".join(f"{p.name} (required)" if p.required else p.name for p in self.params)
        text = f"{self.label}() got {noun}: {', '.join(guesses)}; " + (
            f"valid arguments: {valid}" if valid else "it takes no arguments"
        )
        if missing:
            text += f"; missing: {', '.join(map(repr, missing))}"
        return text

    def signature(self, inspect: ModuleType, returns: object) -> object:
        """The `inspect.Signature`: keyword-only, required ones first; `returns` None for
        no return annotation."""
        Parameter = inspect.Parameter
        params = [
            Parameter(
                p.name,
                Parameter.KEYWORD_ONLY,
                default=Parameter.empty if p.required else p.default,
                annotation=Parameter.empty if p.annotation is None else p.annotation,
            )
            for p in self.params
        ]
        if self.extra_name:
            params.append(Parameter(self.extra_name, Parameter.VAR_KEYWORD))
        return inspect.Signature(
            params, return_annotation=inspect.Signature.empty if returns is None else returns
        )

    def describe(self) -> list[str]:
        """The docstring's lines about the arguments."""
        if not self.params:
            return ["Takes no arguments."] if not self.extra else []
        lines = ["Arguments (keyword-only):"]
        for p in self.params:
            facts = [] if p.annotation is None else [type_text(p.annotation)]
            facts.append("required" if p.required else "optional")
            if "default" in p.schema:
                facts.append(f"default {p.default!r}")
            head = f"    {p.name} ({', '.join(facts)})"
            if p.prop != p.name:
                head += f" [JSON name {p.prop!r}]"
            description = p.schema.get("description")
            if isinstance(description, str) and description.strip():
                head += ": " + "\n        ".join(description.strip().splitlines())
            lines.append(head)
            enum = p.schema.get("enum")
            if isinstance(enum, list) and enum:
                lines.append(f"        One of: {', '.join(map(repr, enum[:50]))}.")
        if self.extra:
            lines.append(f"    **{self.extra_name}: other arguments, passed on as they are.")
        return lines


def wraps_one_result(output_schema: object) -> bool:
    """True for the output schema servers give a tool that returns a plain value (the
    Python SDK's `{"result": value}` wrapper): one property, named `result`."""
    if not isinstance(output_schema, dict):
        return False
    properties = output_schema.get("properties")
    return isinstance(properties, dict) and list(properties) == ["result"]


def tool_value(
    result: object, server: str, tool: str, output_schema: object = None
) -> object:
    """What a proxy call returns: `structuredContent` (unwrapped when the server wrapped a
    plain value as `{"result": value}`), else the text (parsed when it is one JSON text), else
    the content items; MCPError when the tool reported an error."""
    if not isinstance(result, dict):
        return result
    content = result.get("content")
    content = content if isinstance(content, list) else []
    texts = [item["text"] for item in content if is_text_item(item)]
    if result.get("isError"):
        message = "\n".join(texts) or f"tool {tool!r} of MCP server {server!r} reported an error"
        raise MCPError(message, kind="tool_error", result=result)
    structured = result.get("structuredContent")
    if structured is not None:
        if (
            wraps_one_result(output_schema)
            and isinstance(structured, dict)
            and list(structured) == ["result"]
        ):
            return structured["result"]
        return structured
    if not content:
        return None
    if len(texts) == len(content):
        if len(texts) == 1:
            try:
                return decode_json(texts[0])
            except ValueError:
                return texts[0]
        return "\n".join(texts)
    return [item["text"] if is_text_item(item) else item for item in content]


def is_text_item(item: object) -> bool:
    return isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str)


def copy_json(value: object) -> object:
    """A deep copy of a JSON value (what the host sent), so user code cannot alter ours."""
    return decode_json(encode_json(value))


def tool_doc(record: dict, spec: ToolSpec, server: str) -> str:
    description = record.get("description")
    lines = [
        description.strip() if isinstance(description, str) and description.strip()
        else f"The {record['name']!r} tool of MCP server {server!r}.",
        "",
        *spec.describe(),
        "",
    ]
    output = record.get("outputSchema")
    fields = output.get("properties") if isinstance(output, dict) else None
    if isinstance(fields, dict) and fields:
        shown = ", ".join(
            f"{name} ({type_text(ToolParameter(name, name, False, schema).annotation or object)})"
            for name, schema in list(fields.items())[:20]
        )
        lines.append(f"Returns a dict (the tool's structured result) with: {shown}.")
    else:
        lines.append(
            "Returns the tool's structured result if it has one, else its text (parsed"
            " when it is JSON)."
        )
    lines += [
        "Raises mcp.MCPError when the tool reports an error (its raw result is in"
        " .result); `.raw(...)` returns the raw MCP result instead.",
        f"MCP server {server!r}, tool {record['name']!r}.",
    ]
    return "\n".join(lines)


# Tool functions and how to make their `__signature__`: `inspect` is slow to import on WASI
# (about 60 ms) and user code rarely needs it before `asyncio` (which imports it) is loaded,
# so signatures are attached when `inspect` loads (`ImportHooks`), or at once if it has.
SIGNATURES: list[tuple[FunctionType, ToolSpec, object]] = []


def attach_signatures(inspect: ModuleType, pending: list | None = None) -> None:
    for function, spec, returns in SIGNATURES if pending is None else pending:
        function.__signature__ = spec.signature(inspect, returns)


def make_tool(session: "Session", server: str, server_alias: str, record: dict) -> FunctionType:
    """The async function behind `mcp_<alias>.<tool alias>`."""
    tool, alias = record["name"], record["alias"]
    label = f"mcp_{server_alias}.{alias}"
    spec = ToolSpec(label, record.get("inputSchema"))
    calls = session.calls

    async def call(*args: object, **kwargs: object) -> object:
        params = {"server": server, "tool": tool, "arguments": spec.arguments(args, kwargs)}
        session.check_loaded(server)
        answer = await calls.call_async("call_tool", params)
        return tool_value(answer, server, tool, record.get("outputSchema"))

    async def raw(*args: object, **kwargs: object) -> object:
        params = {"server": server, "tool": tool, "arguments": spec.arguments(args, kwargs)}
        session.check_loaded(server)
        return await calls.call_async("call_tool", params)

    output = record.get("outputSchema")
    returns = dict if isinstance(output, dict) and output else None
    for function, name in ((call, alias), (raw, "raw")):
        function.__name__ = name
        function.__qualname__ = label if function is call else f"{label}.raw"
        function.__module__ = f"mcp.servers.{server_alias}"
    signatures = [(call, spec, returns), (raw, spec, dict)]
    SIGNATURES.extend(signatures)
    inspect = sys.modules.get("inspect")
    if inspect is not None:
        attach_signatures(inspect, signatures)
    call.__doc__ = tool_doc(record, spec, server)
    raw.__doc__ = (
        f"Calls {label}() and returns the raw MCP result: a dict with `content`,"
        " `structuredContent` and `isError`. Never raises for a tool error.\n\n"
        + call.__doc__
    )
    call.raw = raw
    return call


class ServerProxy:
    """An MCP server loaded for this run: each tool is an async function taking keyword
    arguments, e.g. `await mcp_time.get_current_time(timezone="UTC")`."""

    __slots__ = ("_mcp_server", "_mcp_alias", "_mcp_records", "_mcp_tools")

    async def list_tools(self) -> list:
        """The server's tools: `{name, alias, description, inputSchema, outputSchema?}`."""
        return copy_json(self._mcp_records)

    def __getitem__(self, tool: str) -> FunctionType:
        """A tool by alias or by name (also those an attribute cannot reach)."""
        try:
            return self._mcp_tools[tool]
        except (KeyError, TypeError):
            raise KeyError(f"MCP server {self._mcp_server!r} has no tool {tool!r}") from None

    def __getattr__(self, name: str) -> object:
        if name.startswith("_"):
            raise AttributeError(name)
        aliases = ", ".join(record["alias"] for record in self._mcp_records) or "none"
        raise AttributeError(
            f"MCP server {self._mcp_server!r} has no tool {name!r}; its tools: {aliases}"
        )

    def __dir__(self) -> list:
        return sorted({"list_tools", *(record["alias"] for record in self._mcp_records)})

    def __repr__(self) -> str:
        aliases = ", ".join(record["alias"] for record in self._mcp_records)
        return f"<MCP server {self._mcp_server!r} as mcp_{self._mcp_alias}: {aliases}>"


ServerProxy.__module__ = "mcp"
PROXY_RESERVED = frozenset(dir(ServerProxy))


def build_proxy(session: "Session", server: str, alias: str, tools: object) -> ServerProxy:
    """The `mcp_<alias>` object of a server, from its `list_tools` answer."""
    if not isinstance(tools, list):
        raise MCPError(f"the host's tool list for MCP server {server!r} is not a list",
                       kind="internal")
    records: list[dict] = []
    functions: dict[str, FunctionType] = {}
    taken: set[str] = set()
    for record in tools:
        if not isinstance(record, dict) or not isinstance(record.get("name"), str):
            diagnose(f"skipped a malformed tool record of {server!r}: {record!r:.200}")
            continue
        record = copy_json(record)
        tool_alias = record.get("alias")
        if not (
            isinstance(tool_alias, str)
            and tool_alias.isidentifier()
            and tool_alias not in KEYWORDS
            and tool_alias not in taken
        ):
            tool_alias = alias_of(record["name"], taken, keyword_suffix=True)
        taken.add(tool_alias)
        record["alias"] = tool_alias
        records.append(record)
        functions[tool_alias] = make_tool(session, server, alias, record)
    names = ", ".join(record["alias"] for record in records) or "none"
    namespace: dict[str, object] = {
        "__slots__": (),
        "__module__": f"mcp.servers.{alias}",
        "__doc__": f"MCP server {server!r}: its tools are async functions taking keyword"
        f" arguments. Tools: {names}.\nhelp(mcp_{alias}.<tool>) shows one;"
        f" `await mcp_{alias}.list_tools()` lists their records.",
    }
    for tool_alias, function in functions.items():
        if tool_alias not in PROXY_RESERVED and not tool_alias.startswith("_mcp_"):
            namespace[tool_alias] = staticmethod(function)
    proxy = type(f"mcp_{alias}", (ServerProxy,), namespace)()
    proxy._mcp_server = server
    proxy._mcp_alias = alias
    proxy._mcp_records = records
    proxy._mcp_tools = dict(functions)
    for record in records:
        proxy._mcp_tools.setdefault(record["name"], functions[record["alias"]])
    return proxy


def server_module(proxy: ServerProxy) -> ModuleType:
    """`mcp.servers.<alias>`: one async function per tool alias, `TOOLS` and `TOOL_MAP`."""
    name = f"mcp.servers.{proxy._mcp_alias}"
    module = ModuleType(name, f"The tools of MCP server {proxy._mcp_server!r}, as async functions.")
    module.__spec__ = type(sys.__spec__)(name, None)
    for record in proxy._mcp_records:
        if record["alias"] not in module.__dict__:
            setattr(module, record["alias"], proxy._mcp_tools[record["alias"]])
    module.SERVER = proxy._mcp_server
    module.TOOLS = copy_json(proxy._mcp_records)
    module.TOOL_MAP = {record["alias"]: record["name"] for record in proxy._mcp_records}
    module.__all__ = ["SERVER", "TOOLS", "TOOL_MAP", *module.TOOL_MAP]
    return module


def tool_source(source: str) -> str:
    """A function's source as `save_tool` stores it: dedented, without `@save_tool`."""
    lines = source.splitlines(keepends=True)
    indents = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
    cut = min(indents, default=0)
    lines = [line[cut:] if line.strip() else line.lstrip(" \t") for line in lines]
    kept: list[str] = []
    in_decorators = True
    for line in lines:
        stripped = line.strip()
        if in_decorators and stripped.startswith("@"):
            target = stripped[1:].strip().replace(" ", "")
            if target.rsplit(".", 1)[-1] in ("save_tool", "save_tool()"):
                continue
        elif in_decorators and stripped:
            in_decorators = False
        kept.append(line)
    text = "".join(kept)
    return text if text.endswith("\n") else text + "\n"


BUILTIN_HELPERS = (
    "save_tool",
    "save_memory",
    "load_memory",
    "delete_memory",
    "list_memories",
    "update_memory",
    "memory_exists",
    "get_memory_info",
)


def install_mcp_package(session: "Session") -> None:
    """Puts our `mcp` package and `mcp.runtime` module in `sys.modules`.

    User code imports them (`import mcp.runtime as runtime`, `from mcp import runtime`);
    nothing is bound in the user's globals. `save_tool` and the memory helpers are also
    builtins. `mcp.servers` appears with the first run that names servers.
    """
    spec_class = type(sys.__spec__)  # importlib's ModuleSpec, without importing importlib
    package = ModuleType("mcp", "The sandbox's MCP helpers: see mcp.runtime.")
    package.__path__ = []
    package.__spec__ = spec_class("mcp", None, is_package=True)
    runtime = ModuleType("mcp.runtime", "Helpers for MCP servers in this sandbox.")
    runtime.__spec__ = spec_class("mcp.runtime", None)
    helpers = runtime_helpers(session)
    for name, value in helpers.items():
        if isinstance(value, FunctionType):
            value.__module__ = "mcp.runtime"
            value.__qualname__ = name
        setattr(runtime, name, value)
    runtime.__all__ = sorted(helpers)
    package.runtime = runtime
    package.MCPError = MCPError
    package.__all__ = ["MCPError", "runtime"]
    sys.modules["mcp"] = package
    sys.modules["mcp.runtime"] = runtime
    for name in BUILTIN_HELPERS:
        setattr(builtins, name, helpers[name])
    session.mcp_package = package
    enable_host_fetch(session.calls)


def runtime_helpers(session: "Session") -> dict[str, object]:
    """The public functions of `mcp.runtime`, reading the session's state."""
    calls = session.calls

    def capability_summary() -> str:
        """The manual of this sandbox: the host's capabilities resource, and the host folders
        this session can read."""
        manual = session.manual or "The host sent no manual; read its capabilities resource.\n"
        try:
            folders = sorted(name for name in _os.listdir("/data") if not name.startswith("."))
        except OSError:
            folders = []
        if folders:
            paths = ", ".join(f"`/data/{name}`" for name in folders)
            manual += f"\nHost folders to read (never written): {paths}.\n"
        return manual

    def discovered_servers(detailed: bool = False) -> tuple:
        """Servers this session can load: names, or `{name, description}` dicts (the
        user's description, else the server's own words, as the host knows them now)."""
        if detailed:
            return tuple(
                {"name": entry["name"], "description": entry["description"]}
                for entry in calls.call("describe_servers", {})
            )
        return tuple(entry["name"] for entry in session.catalogue)

    def list_servers_sync() -> tuple:
        """Servers loaded in the current run (their proxies are `mcp_<alias>` globals)."""
        return tuple(session.loaded_servers)

    async def list_servers() -> tuple:
        """Servers loaded in the current run (their proxies are `mcp_<alias>` globals)."""
        return tuple(session.loaded_servers)

    def describe_server(name: str) -> dict:
        """What is known about one server, by name or alias; its tools once loaded."""
        entry = session.catalogue_entry(name)
        proxy = session.proxies.get(entry["name"] if entry else name)
        if entry is None and proxy is None:
            raise session.unknown_server(name)
        info = dict(entry) if entry else {
            "name": proxy._mcp_server, "alias": proxy._mcp_alias, "description": ""
        }
        if entry:
            (described,) = calls.call("describe_servers", {"servers": [entry["name"]]})
            info["description"] = described["description"]
        info["loaded"] = info["name"] in session.loaded_servers
        if proxy is not None:
            info["alias"] = proxy._mcp_alias
            info["tools"] = copy_json(proxy._mcp_records)
        return info

    def list_loaded_server_metadata() -> tuple:
        """`describe_server` of each server loaded in the current run, tools included."""
        return tuple(describe_server(name) for name in session.loaded_servers)

    def list_tools_sync(server: str) -> list:
        """The tools of a server loaded in this run: `{name, alias, description,
        inputSchema, outputSchema?}` records."""
        return copy_json(session.loaded_proxy(server)._mcp_records)

    async def list_tools(server: str) -> list:
        """The tools of a server loaded in this run: `{name, alias, description,
        inputSchema, outputSchema?}` records."""
        return copy_json(session.loaded_proxy(server)._mcp_records)

    async def call_tool(server: str, tool: str, arguments: dict | None = None) -> dict:
        """Calls a tool of a server loaded in this run (names or aliases) and returns the
        raw MCP result: `{content, structuredContent?, isError?}`."""
        return await calls.call_async("call_tool", session.call_params(server, tool, arguments))

    def query_tool_docs_sync(
        server: str, tool: str | None = None, detail: str = "summary"
    ) -> list | dict:
        """Docs of a discovered server's tools (one record when `tool` is given):
        `{server, serverAlias, tool, toolAlias, description}`, plus `inputSchema` when
        `detail="full"`."""
        return calls.call("query_tool_docs", session.docs_params(server, tool, detail))

    async def query_tool_docs(
        server: str, tool: str | None = None, detail: str = "summary"
    ) -> list | dict:
        """Docs of a discovered server's tools (one record when `tool` is given):
        `{server, serverAlias, tool, toolAlias, description}`, plus `inputSchema` when
        `detail="full"`."""
        return await calls.call_async("query_tool_docs", session.docs_params(server, tool, detail))

    def search_tool_docs_sync(query: str, *, limit: int = 5, detail: str = "summary") -> list:
        """Tools of every discovered server ranked against `query`, best first (doc
        records as query_tool_docs's; `limit` is clamped to 1..20)."""
        return calls.call("search_tool_docs", search_params(query, limit, detail))

    async def search_tool_docs(query: str, *, limit: int = 5, detail: str = "summary") -> list:
        """Tools of every discovered server ranked against `query`, best first (doc
        records as query_tool_docs's; `limit` is clamped to 1..20)."""
        return await calls.call_async("search_tool_docs", search_params(query, limit, detail))

    def save_tool(func: FunctionType) -> FunctionType:
        """Saves a function's source for later runs and sessions (they get it defined in
        their globals). Works for functions defined in earlier runs; usable as a
        decorator. Returns the function."""
        name = getattr(func, "__name__", None)
        if not callable(func) or not isinstance(name, str) or not name.isidentifier():
            raise TypeError("save_tool() takes a function defined with def")
        import inspect

        try:
            source = inspect.getsource(func)
        except (OSError, TypeError) as exc:
            raise MCPError(f"the source of {name!r} cannot be found: {exc}",
                           kind="not_found") from None
        calls.call("save_tool", {"name": name, "source": tool_source(source)})
        return func

    async def fetch(
        url: str, method: str = "GET", headers: dict | None = None, body: bytes | str | None = None
    ) -> FetchResponse:
        """An HTTP(S) request the host makes for this sandbox, under its network policy
        (`MCP_BRIDGE_ALLOW_HOSTS`); secrets' placeholders in `headers` are replaced for
        their hosts. Redirects are returned, not followed. Raises MCPError("not_allowed")
        when the policy refuses."""
        params = fetch_params(url, method, headers, body)
        return FetchResponse(url, await calls.call_async("fetch", params))

    def fetch_sync(
        url: str, method: str = "GET", headers: dict | None = None, body: bytes | str | None = None
    ) -> FetchResponse:
        """`fetch`, blocking."""
        return FetchResponse(url, calls.call("fetch", fetch_params(url, method, headers, body)))

    def checkpoint() -> dict:
        """Saves this session now (variables, functions, classes, imported modules and the
        files under /workspace) so that it survives a restart of the client or the server.
        Returns `{session, bytes, saved, unsaveable, at}`: `unsaveable` names what could not
        be saved (open files, sockets, generators, locks) and why."""
        return checkpoint_to_host(calls, session.globals, None)

    def fork_session(name: str) -> dict:
        """Saves a copy of this session as the session `name` (state and files): run code
        with `session=name` to use the copy; this session is unchanged. Returns what
        `checkpoint()` returns, for the copy."""
        if not isinstance(name, str):
            raise TypeError(f"session names are strings, not {type(name).__name__}")
        return checkpoint_to_host(calls, session.globals, name)

    def memory(op: str, key: object = None, **params: object) -> object:
        if op not in ("list", "info") and not isinstance(key, str):
            raise TypeError(f"memory keys are strings, not {type(key).__name__}")
        if key is not None:
            params["key"] = key
        return calls.call("memory", {"op": op, **params})

    def save_memory(key: str, value: object) -> None:
        """Stores a JSON value under `key`, shared with later runs and sessions."""
        memory("save", key, value=value)

    def load_memory(key: str, default: object = None) -> object:
        """The value stored under `key`, or `default` when there is none."""
        try:
            return memory("load", key)
        except MCPError as exc:
            if exc.kind == "not_found":
                return default
            raise

    def delete_memory(key: str) -> bool:
        """Deletes `key`; True if it existed."""
        return bool(memory("delete", key))

    def list_memories() -> list:
        """The stored keys."""
        return memory("list")

    def update_memory(key: str, fn_or_value: object) -> object:
        """Stores `fn_or_value(old value or None)` if it is callable, else `fn_or_value`;
        returns the stored value."""
        value = fn_or_value(load_memory(key)) if callable(fn_or_value) else fn_or_value
        save_memory(key, value)
        return value

    def memory_exists(key: str) -> bool:
        """Whether `key` holds a value."""
        return bool(memory("exists", key))

    def get_memory_info() -> dict:
        """`{keys, bytes, path}` of the memory store."""
        return memory("info")

    return {
        "MCPError": MCPError,
        "call_tool": call_tool,
        "capability_summary": capability_summary,
        "fetch": fetch,
        "fetch_sync": fetch_sync,
        "checkpoint": checkpoint,
        "delete_memory": delete_memory,
        "describe_server": describe_server,
        "discovered_servers": discovered_servers,
        "fork_session": fork_session,
        "get_memory_info": get_memory_info,
        "list_loaded_server_metadata": list_loaded_server_metadata,
        "list_memories": list_memories,
        "list_servers": list_servers,
        "list_servers_sync": list_servers_sync,
        "list_tools": list_tools,
        "list_tools_sync": list_tools_sync,
        "load_memory": load_memory,
        "memory_exists": memory_exists,
        "query_tool_docs": query_tool_docs,
        "query_tool_docs_sync": query_tool_docs_sync,
        "save_memory": save_memory,
        "save_tool": save_tool,
        "search_tool_docs": search_tool_docs,
        "search_tool_docs_sync": search_tool_docs_sync,
        "update_memory": update_memory,
        **package_helpers(session),
    }


def check_detail(detail: object) -> str:
    if detail not in ("summary", "full"):
        raise ValueError(f"detail must be 'summary' or 'full', not {detail!r}")
    return detail


def search_params(query: object, limit: object, detail: object) -> dict:
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, not {type(query).__name__}")
    if not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    return {"query": query, "limit": max(1, min(20, int(limit))), "detail": check_detail(detail)}

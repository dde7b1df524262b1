# shellcheck shell=bash disable=SC2154
# Starting and stopping a `strata serve` for the scripts that measure or
# probe one (bench.sh, fuzz-api.sh). Source it after setting:
#   prog    the script's name, for messages
#   work    a directory for the server's data dir and logs (mode 711: the
#           PostgreSQL user must be able to traverse it)
#   strata  the strata binary
# It sets server_pid, server_data, server_url, server_metrics and server_password.
# (SC2154 is off: prog, work and strata come from the sourcing script.)

server_pid=""
server_data=""
server_url=""
server_metrics=""
server_password=""

# stop_process PID NAME: SIGTERM, up to 30 s, then SIGKILL.
stop_process() {
    local pid="$1" name="$2"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
    echo "==> stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "$prog: $name did not stop in 30 s; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_server() {
    stop_process "$server_pid" "strata serve"
    server_pid=""
    # PostgreSQL servers left behind (only if strata serve was SIGKILLed) hold
    # a postmaster.pid under the data dir: stop them by that pid.
    if [[ -n "$server_data" && -d "$server_data" ]]; then
        while IFS= read -r pidfile; do
            pg_pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
            if [[ "$pg_pid" =~ ^[0-9]+$ ]] && kill -0 "$pg_pid" 2>/dev/null; then
                kill -INT "$pg_pid" 2>/dev/null || true
            fi
        done < <(find "$server_data" -name postmaster.pid 2>/dev/null)
    fi
}

# start_serve NAME [SERVE-OPTIONS...]: starts `strata serve` on a fresh data
# dir $work/NAME with loopback listeners on free ports and a random admin
# password; sets server_pid, server_url, server_metrics and server_password.
start_serve() {
    local name="$1" url=""
    shift
    server_data="$work/$name"
    server_password="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
    echo "==> starting strata serve (data dir $server_data)"
    STRATA_ADMIN_PASSWORD="$server_password" "$strata" serve --data-dir "$server_data" \
        --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 "$@" \
        >"$work/strata.log" 2>"$work/strata.err" &
    server_pid=$!

    for _ in $(seq 1 600); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "$prog: strata serve exited during start-up" >&2
            exit 1
        fi
        url="$(sed -n 's/^Strata is serving on \(http:\/\/[0-9.:]*\).*/\1/p' "$work/strata.err" | head -n1)"
        [[ -n "$url" ]] && break
        sleep 0.1
    done
    if [[ -z "$url" ]]; then
        echo "$prog: strata serve did not start listening in 60 s" >&2
        exit 1
    fi
    server_url="$url"
    server_metrics="$(sed -n 's/^Strata is serving on .*metrics: \(http:\/\/[0-9.:]*\)\/metrics.*/\1/p' "$work/strata.err" | head -n1)"
    echo "==> strata serve is listening on $server_url (pid $server_pid, metrics $server_metrics)"
}

# free_port: a port in 20000-32767 (below Linux's ephemeral range) that
# nothing accepts connections on.
free_port() {
    local port
    for _ in $(seq 200); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 12768))
        if ! (: <"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "$prog: found no free port on 127.0.0.1" >&2
    return 1
}

#!/usr/bin/env bash
# Stop the kube-apiserver and etcd that testenv/start.sh started.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: testenv/stop.sh [--help] [--dir DIR] [--clean] [--timeout SECONDS]

Stops the node (if started with --node), kube-apiserver, then etcd, of the
test environment in DIR (default:
$STRATA_TESTENV_DIR): SIGTERM, then SIGKILL after the timeout (default 20 s).
Only processes whose pid file is in DIR and whose executable has the expected
name are signalled. Safe to run twice.

Options:
  --dir DIR          state directory given to (or printed by) start.sh
  --clean            remove DIR afterwards
  --timeout SECONDS  how long to wait for each process after SIGTERM

Exits non-zero when a process could not be stopped.
EOF
}

log() { echo "testenv/stop.sh: $*" >&2; }

dir="${STRATA_TESTENV_DIR:-}"
clean=0
timeout=20
while [[ $# -gt 0 ]]; do
	case "$1" in
	-h | --help)
		usage
		exit 0
		;;
	--dir)
		dir="${2:?--dir needs a value}"
		shift 2
		;;
	--clean)
		clean=1
		shift
		;;
	--timeout)
		timeout="${2:?--timeout needs a value}"
		shift 2
		;;
	*)
		log "unknown argument '$1'"
		usage >&2
		exit 2
		;;
	esac
done
[[ -n "$dir" ]] || {
	log "no state directory: pass --dir DIR or set STRATA_TESTENV_DIR"
	exit 2
}
[[ "$timeout" =~ ^[0-9]+$ ]] || {
	log "--timeout must be a number of seconds"
	exit 2
}
if [[ ! -d "$dir" ]]; then
	log "$dir does not exist; nothing to stop"
	exit 0
fi

# shellcheck source=testenv/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# wait_gone PID NAME SECONDS: poll until the process is gone or time is up.
wait_gone() {
	local pid="$1" name="$2" until=$((SECONDS + $3))
	while alive "$pid" "$name"; do
		((SECONDS < until)) || return 1
		sleep 0.1
	done
}

failed=0
stop_one() {
	local name="$1" pidfile="$dir/$1.pid" pid
	[[ -f "$pidfile" ]] || return 0
	pid="$(cat "$pidfile")"
	if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" "$name"; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_gone "$pid" "$name" "$timeout"; then
			log "$name ($pid) ignored SIGTERM for ${timeout}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			if ! wait_gone "$pid" "$name" 5; then
				log "$name ($pid) is still running"
				failed=1
				return 0
			fi
		fi
	fi
	rm -f "$pidfile"
}

# The watchdog (start.sh --owner-pid) runs in its own process group; when it
# is the one running this script, it has the watchdog's pid.
if [[ -f "$dir/watchdog.pid" ]]; then
	watchdog="$(cat "$dir/watchdog.pid")"
	if [[ "$watchdog" =~ ^[0-9]+$ && "$watchdog" != "$$" ]]; then
		kill -TERM -- "-$watchdog" 2>/dev/null || true
	fi
	rm -f "$dir/watchdog.pid"
fi

# The node first (testenv/node.sh; start.sh --node), while the API server
# still answers; then the API server, so that it does not log etcd errors.
if [[ -d "$dir/node" ]]; then
	"$(dirname "${BASH_SOURCE[0]}")/node.sh" stop --dir "$dir" || failed=1
fi
stop_one kube-apiserver
stop_one etcd
# The node's network last: the API server listens on its link.
if [[ -d "$dir/node" ]]; then
	"$(dirname "${BASH_SOURCE[0]}")/node.sh" network-down --dir "$dir" || failed=1
fi

if [[ $failed -ne 0 ]]; then
	exit 1
fi
if [[ $clean -eq 1 ]]; then
	rm -rf "$dir"
fi
log "stopped the test environment in $dir"

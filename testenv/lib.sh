# shellcheck shell=bash
# What testenv's scripts share; sourced, never run.

# Checks of the smoke tests: pass NAME, fail NAME [DETAILS], and summary,
# which prints "N passed, M failed" and fails when a check did.
passed=0
failed=0
pass() {
	passed=$((passed + 1))
	echo "ok   - $1"
}
fail() {
	failed=$((failed + 1))
	echo "FAIL - $1"
	if [[ -n "${2:-}" ]]; then
		printf '       %s\n' "${2//$'\n'/$'\n'       }"
	fi
}
summary() {
	echo "$passed passed, $failed failed"
	[[ $failed -eq 0 ]]
}

# alive PID NAME: the process exists, is not a zombie, and runs NAME.
alive() {
	local pid="$1" name="$2" state exe
	state="$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)" || return 1
	[[ -n "$state" && "$state" != Z ]] || return 1
	exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
	[[ "$(basename "${exe% (deleted)}")" == "$name" ]]
}

#!/usr/bin/env bash
# The seed's examples: a pirate-call per demo procedure, against a worker that is already running
# (pirate-worker demos.procedures:DemoProcedures). Each call's output is shown as it comes, then
# checked; the expected failures (slow_fail, invalid_request) must fail with exit 1.
#
# Usage: demos/run_examples.sh [ENDPOINT]       (default: tcp://127.0.0.1:5550)
# Environment: PIRATE_DEMO_SECONDS, how long slow_succeed and slow_fail sleep (default: 5)
# Exit status: 0 if every call gave its expected result and exit code, 1 otherwise.
set -u

endpoint=${1:-tcp://127.0.0.1:5550}
seconds=${PIRATE_DEMO_SECONDS:-5}
slow_timeout=$(awk -v s="$seconds" 'BEGIN { print s + 10 }')

if ! command -v pirate-call >/dev/null 2>&1; then
    echo "run_examples.sh: pirate-call is not on PATH; install the package first (pip install -e .)" >&2
    exit 2
fi

total=0
failed=0

# Quote an argument for display the way a person would type it.
shown() {
    case $1 in
        *[!A-Za-z0-9_./:=-]* | '') printf "'%s'" "${1//\'/\'\\\'\'}" ;;
        *) printf '%s' "$1" ;;
    esac
}

# example WANT_CODE WANT_STDOUT PIRATE_CALL_ARGS...: show the command, run it, check it.
example() {
    local want_code=$1 want_out=$2 line="\$ pirate-call $(shown "$endpoint")" arg out code
    shift 2
    for arg in "$@"; do line+=" $(shown "$arg")"; done
    total=$((total + 1))
    printf '\n%s\n' "$line"
    out=$(pirate-call "$endpoint" "$@")
    code=$?
    [ -n "$out" ] && printf '%s\n' "$out"
    if [ "$code" -eq "$want_code" ] && [ "$out" = "$want_out" ]; then
        echo "-> as expected (exit $code)"
    else
        failed=$((failed + 1))
        echo "-> UNEXPECTED: wanted exit $want_code and output [$want_out], got exit $code"
    fi
}

example 0 "'pong'" ping
example 0 "None" return_none
example 0 "[False, 2]" compare --args '"apple", "orange"'
example 0 "[True, 1]" compare --args '"apple", "apple"'
example 0 "[False, 2]" compare --kwargs '"str1":"apple", "str2":"orange"'
example 0 "True" slow_succeed --args "$seconds" --timeout "$slow_timeout"
example 1 "" slow_fail --args "$seconds" --timeout "$slow_timeout"
example 1 "" invalid_request
example 0 "$(for _ in $(seq 20); do echo "'pong'"; done)" ping --count 20 -q

printf '\n%d of %d examples behaved as expected\n' "$((total - failed))" "$total"
[ "$failed" -eq 0 ]

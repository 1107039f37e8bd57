#!/usr/bin/env bash
# The seed's demo in one command: start a worker serving demos.procedures:DemoProcedures, wait until
# it answers, run demos/run_examples.sh against it with its output visible, stop the worker.
#
# It also lists the registered worker (pirate-call --workers). Then it shows events: the same
# worker also serves a second client, pirate-listen, at LISTEN_ENDPOINT, which prints the ticks
# the worker emits while a call runs (demos/events.sh).
#
# Usage: demos/demo.sh [ENDPOINT [LISTEN_ENDPOINT]]   (default: tcp://127.0.0.1:5550 and the next
#        port up; run from anywhere)
# Needs pirate-worker and pirate-call on PATH (or installed in the repository's .venv).
# Exit status: that of run_examples.sh (0: every example behaved as expected); 2 if set-up failed.
set -u

cd "$(dirname "$0")/.." || exit 2
endpoint=${1:-tcp://127.0.0.1:5550}
if [ $# -ge 2 ]; then
    listen=$2
elif [[ $endpoint =~ ^(tcp://.*:)([0-9]+)$ ]]; then
    listen="${BASH_REMATCH[1]}$((BASH_REMATCH[2] + 1))"
else
    echo "demo.sh: give a LISTEN_ENDPOINT for the events demo (second argument)" >&2
    exit 2
fi

if ! command -v pirate-worker >/dev/null 2>&1 && [ -x .venv/bin/pirate-worker ]; then
    PATH="$PWD/.venv/bin:$PATH"
fi
if ! command -v pirate-worker >/dev/null 2>&1 || ! command -v pirate-call >/dev/null 2>&1 \
        || ! command -v pirate-listen >/dev/null 2>&1; then
    echo "demo.sh: pirate-worker, pirate-call and pirate-listen are not on PATH; install the package first (pip install -e .)" >&2
    exit 2
fi

echo "demo.sh: starting pirate-worker demos.procedures:DemoProcedures --connect $endpoint --connect $listen"
# The worker's log lines are marked, so they stand apart from the examples' own output.
pirate-worker demos.procedures:DemoProcedures --connect "$endpoint" --connect "$listen" \
    2> >(while IFS= read -r line; do printf '    [worker] %s\n' "$line"; done >&2) &
worker=$!

stop_worker() {
    if kill -TERM "$worker" 2>/dev/null; then
        wait "$worker"
        local code=$?
        [ "$code" -eq 0 ] || echo "demo.sh: the worker exited with $code" >&2
    fi
}
trap stop_worker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Ready when it answers a ping (a new worker needs a moment to import and register; no fixed sleep).
if ! pirate-call "$endpoint" ping --wait 10 -q >/dev/null; then
    echo "demo.sh: the worker did not answer a ping on $endpoint" >&2
    exit 2
fi

# Who is registered, with what capacity: pool size 4 x max_concurrency 1 + prefetch 4 = 8.
printf '\n$ pirate-call %s --workers\n' "$endpoint"
pirate-call "$endpoint" --workers --wait 10 || exit 2

code=0
demos/run_examples.sh "$endpoint" || code=$?
demos/events.sh "$endpoint" "$listen" || code=1
stop_worker
trap - EXIT
exit "$code"

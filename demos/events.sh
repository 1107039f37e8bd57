#!/usr/bin/env bash
# Events while a call runs (SPEC §11): pirate-listen binds LISTEN_ENDPOINT and prints the ticks a
# worker emits while pirate-call, bound at ENDPOINT, runs DemoProcedures.ticker(5, 0.2) on it.
# The worker must be connected to both (pirate-worker ... --connect ENDPOINT --connect
# LISTEN_ENDPOINT): one worker, two clients.
#
# Usage: demos/events.sh ENDPOINT LISTEN_ENDPOINT
# Exit status: 0 if the listener printed the five ticks and the call returned 5, 1 otherwise.
set -u

endpoint=${1:?usage: demos/events.sh ENDPOINT LISTEN_ENDPOINT}
listen=${2:?usage: demos/events.sh ENDPOINT LISTEN_ENDPOINT}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

printf '\n$ pirate-listen %s --topic tick --count 5 --wait 10 &\n' "$listen"
# Its lines are shown as they arrive (marked), and kept for the verdict.
pirate-listen "$listen" --topic tick --count 5 --wait 10 2>"$dir/err" \
    > >(tee "$dir/out" | while IFS= read -r line; do printf '    [listener] %s\n' "$line"; done) &
listener=$!
# Start the call only once the worker is registered with the listener too (it says so in its
# "listening on" line), so that no tick is emitted before the listener can hear it.
for _ in $(seq 100); do
    grep -q "listening on" "$dir/err" && break
    kill -0 "$listener" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "listening on" "$dir/err"; then
    echo "events.sh: pirate-listen did not start listening:" >&2
    cat "$dir/err" >&2
    exit 1
fi

printf "\$ pirate-call %s ticker --args '5, 0.2'\n" "$endpoint"
result=$(pirate-call "$endpoint" ticker --args '5, 0.2' --timeout 20 --wait 10)
called=$?
printf '%s\n' "$result"
wait "$listener"
listened=$?
expected=$(printf 'tick %d\n' 0 1 2 3 4)
if [ "$called" -eq 0 ] && [ "$result" = "5" ] && [ "$listened" -eq 0 ] && [ "$(cat "$dir/out")" = "$expected" ]; then
    echo "-> as expected: five ticks arrived at the listener while the call ran"
    exit 0
fi
echo "-> UNEXPECTED: call exit $called printed [$result], listener exit $listened printed [$(cat "$dir/out")]"
exit 1

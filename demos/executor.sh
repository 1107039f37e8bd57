#!/usr/bin/env bash
# A ProcessPoolExecutor program across workers (SPEC §14): starts two workers serving
# pirate_actors:FunctionActor, runs demos/primes_remote.py (demos/primes_local.py with its
# executor line changed) against them, and checks that it prints what primes_local.py prints.
#
# Usage: demos/executor.sh [ENDPOINT]       (default: tcp://127.0.0.1:5560)
# Exit status: 0 if both programs printed the same, 1 otherwise.
set -u

endpoint=${1:-tcp://127.0.0.1:5560}
cd "$(dirname "$0")/.."
dir=$(mktemp -d)
workers=()
cleanup() {
    for pid in "${workers[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

for n in 1 2; do
    printf '$ pirate-worker pirate_actors:FunctionActor --connect %s --name function-%s -q &\n' "$endpoint" "$n"
    pirate-worker pirate_actors:FunctionActor --connect "$endpoint" --name "function-$n" -q &
    workers+=($!)
done

printf '$ python demos/primes_local.py\n'
python demos/primes_local.py >"$dir/local" || { echo "executor.sh: primes_local.py failed" >&2; exit 1; }
cat "$dir/local"
printf '$ python demos/primes_remote.py %s\n' "$endpoint"
python demos/primes_remote.py "$endpoint" >"$dir/remote" || { echo "executor.sh: primes_remote.py failed" >&2; exit 1; }
cat "$dir/remote"

if cmp -s "$dir/local" "$dir/remote"; then
    echo "executor.sh: the same output from ProcessPoolExecutor and from the workers"
else
    echo "executor.sh: the outputs differ" >&2
    exit 1
fi

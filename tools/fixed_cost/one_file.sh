#!/bin/bash
# One file end to end, old checkout vs this one vs this one with --dashboard, alternating, N rounds.
#   bash tools/fixed_cost/one_file.sh OLD_CHECKOUT FOLDER_WITH_ONE_FILE [ROUNDS]
# OLD_CHECKOUT: e.g. `git worktree add /tmp/before <commit>` with its .venv linked to this one's.
set -u
old=$1; input=$2; rounds=${3:-3}; here=$(cd "$(dirname "$0")/../.." && pwd)
run() {  # dir, extra flags
    local out; out=$(mktemp -d); rmdir "$out"
    local s e; s=$(date +%s.%N)
    (cd "$1" && .venv/bin/python -m pipelines.classify --input "$input" --output "$out" --no-progress "${@:2}" >/dev/null 2>&1)
    e=$(date +%s.%N); rm -rf "$out"
    echo "$1 ${*:2}: $(echo "$e - $s" | bc) s"
}
uptime
for _ in $(seq "$rounds"); do run "$old"; run "$here"; run "$here" --dashboard; done
uptime

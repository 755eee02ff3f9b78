#!/bin/sh
# The reliability runs at full size, by hand (CI runs the same tests at small sizes):
#   scripts/reliability-full.sh [PYTHON]
# 1. tests/test_reliability_*.py + tests/test_fuzz_api.py with PYGEARMAN_FULL=1 (8 x 10k threaded
#    jobs, 30k jobs over three servers, 10k jobs through a kill -9 of a persistent queue, 200k jobs
#    per memory mode); every test prints a "RELIABILITY name key=value" line;
# 2. benchmarks/memory.py with its default 1,000,000 jobs per mode;
# 3. scripts/reliability-valgrind.sh (memcheck of a client + worker exercise).
# Logs go to $OUT (default: a new directory under /tmp).
set -eu
PY=${1:-}
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT=${OUT:-$(mktemp -d /tmp/pygearman-reliability.XXXXXX)}
export PATH="$PATH:/usr/sbin:/sbin"
echo "logs: $OUT"
PYGEARMAN_FULL=1 "$PY" -m pytest tests/test_reliability_*.py tests/test_fuzz_api.py -q -s \
    -p no:cacheprovider --durations=10 > "$OUT/pytest-full.log" 2>&1 || status=$?
grep '^RELIABILITY ' "$OUT/pytest-full.log" || true
tail -3 "$OUT/pytest-full.log"
"$PY" benchmarks/memory.py | tee "$OUT/memory-1M.txt"
OUT="$OUT/valgrind" sh -c 'mkdir -p "$OUT" && exec sh scripts/reliability-valgrind.sh "$0"' "$PY" \
    | tee "$OUT/valgrind-summary.txt"
exit ${status:-0}

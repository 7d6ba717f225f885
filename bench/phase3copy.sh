#!/usr/bin/env bash
# The phase-3 figures of BENCHMARKS.md: `spine-migrate phase3 copy` against
# one INSERT INTO executions_ref SELECT … FROM jobs with the same mapping,
# indexes and trigger, alternated A B A B on a throwaway PostgreSQL 15; WAL
# bytes, peak RSS of the copy, p99 batch time, the longest stall of a probe
# writing to jobs, verify time over copy time. Prints the table and writes
# bench/results/phase3copy.json (or -out FILE).
#
#   bench/phase3copy.sh                    # 200k jobs, 3 pairs
#   bench/phase3copy.sh -n 2000000         # the BENCHMARKS.md size
#   bench/phase3copy.sh -n 20000 -pairs 1  # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/phase3copy "$@"

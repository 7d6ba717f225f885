#!/usr/bin/env bash
# The phase-2 side-car figures of BENCHMARKS.md, on throwaway PostgreSQL 15
# and Redis 7, arms alternated A B A B over the same messages:
#   passthrough: the side-car (decode, route, atomic forward) against a
#                pipelined RPOP+LPUSH loop in Go (target A/B >= 0.5);
#   reroute:     the side-car rerouting every message (submit recorded in
#                PostgreSQL, publish, ack) against a Celery 5.2.6 worker,
#                prefork with 2 processes, running a no-op task (target >= 10).
# Prints the tables and writes bench/results/sidecar.json (or -out FILE).
#
#   bench/sidecar.sh                                  # both figures, defaults (< 3 min)
#   bench/sidecar.sh -figure passthrough -n 50000     # one figure, more messages
#   bench/sidecar.sh -n 2000 -n-reroute 200 -pairs 1  # smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
exec go run ./bench/sidecar "$@"

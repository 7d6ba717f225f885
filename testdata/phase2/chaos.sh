#!/usr/bin/env bash
# spine-migrate phase 2's chaos test at the issue's scale: 100,000 messages
# through two side-car replicas (child processes), SIGKILLed at random at least
# 20 times and restarted; then every task id must be accounted for exactly once
# (one execution per shadowed or rerouted id, one republish per passed id).
# Prints the tally. `make test` runs a short version (2,000 messages, 6 kills).
#
#   testdata/phase2/chaos.sh                      # 100,000 messages, 20 kills
#   MESSAGES=20000 KILLS=30 testdata/phase2/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/go/bin:$PATH
export SPINE_PHASE2_CHAOS=full CI=true
[ -n "${MESSAGES:-}" ] && export SPINE_PHASE2_CHAOS_MESSAGES=$MESSAGES
[ -n "${KILLS:-}" ] && export SPINE_PHASE2_CHAOS_KILLS=$KILLS
go test -count=1 -timeout 60m -run '^TestChaos' -v ./phases/phase2/ | grep -E '^(chaos:|--- |ok|FAIL|panic)|not settled|chaos_test.go'

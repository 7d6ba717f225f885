#!/usr/bin/env bash
# Makes sure the real services the tests and the demo use are installed:
# PostgreSQL 15, Redis 7 and Celery 5.2.6 (Debian's python3-celery). As root
# it installs what is missing with apt-get; otherwise it says what to run.
set -euo pipefail

pg_bin=${SPINE_PG_BIN:-/usr/lib/postgresql/15/bin}
missing=()
[ -x "$pg_bin/initdb" ] || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
/usr/bin/python3 -c "import celery" >/dev/null 2>&1 || missing+=(python3-celery)
/usr/bin/python3 -c "import redis" >/dev/null 2>&1 || missing+=(python3-redis)

if ! command -v go >/dev/null 2>&1; then
  echo "ensure-deps: Go is not on PATH (expected at /usr/local/go/bin); install Go 1.26 first" >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-deps: missing ${missing[*]}. Install with:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "ensure-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages start system services we do not use: the tests and the demo
# run their own throwaway servers on free ports.
if command -v service >/dev/null 2>&1; then
  service redis-server stop >/dev/null 2>&1 || true
  service postgresql stop >/dev/null 2>&1 || true
fi
[ -x "$pg_bin/initdb" ] || { echo "ensure-deps: PostgreSQL installed but $pg_bin/initdb not found; set SPINE_PG_BIN" >&2; exit 1; }

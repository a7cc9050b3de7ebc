#!/usr/bin/env bash
# Run ruff and the test suite. As root, install what the tests need from Debian (chromium,
# postgresql) and start a throwaway PostgreSQL on a loopback port; otherwise say what is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=.venv
skipped=()

have_pg() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_chromium() { command -v chromium >/dev/null 2>&1; }

if [ "$(id -u)" = 0 ]; then
  need=()
  have_pg || need+=(postgresql)
  have_chromium || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian packages: ${need[*]}"
    apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
      || echo "apt-get install failed: tests needing ${need[*]} will skip"
  fi
fi

PGDIR=""
cleanup() {
  if [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
    $PGRUN "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate stop >/dev/null 2>&1
  fi
  [ -n "$PGDIR" ] && rm -rf "$PGDIR"
}
trap cleanup EXIT

if [ -z "${RISKLOOP_TEST_PG_URL:-}" ] && have_pg; then
  PGBIN="$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")"
  PGDIR="$(mktemp -d /tmp/riskloop-pg.XXXXXX)"
  PGRUN=""
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$PGDIR"
    PGRUN="runuser -u postgres --"
  fi
  PORT="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  if $PGRUN "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres >"$PGDIR/initdb.log" 2>&1 && \
     $PGRUN "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" \
       -o "-p $PORT -k $PGDIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" -w start >/dev/null; then
    export RISKLOOP_TEST_PG_URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
    echo "throwaway PostgreSQL on 127.0.0.1:$PORT"
  else
    echo "could not start PostgreSQL (see $PGDIR/*.log)"; cat "$PGDIR"/*.log | tail -5
    skipped+=("PostgreSQL backend tests (server failed to start)")
  fi
elif [ -z "${RISKLOOP_TEST_PG_URL:-}" ]; then
  skipped+=("PostgreSQL backend tests (postgresql not installed; run as root to install it)")
fi
have_chromium || skipped+=("browser tests (Debian chromium not installed; run as root to install it)")

for s in "${skipped[@]}"; do echo "skipping: $s"; done

echo "== ruff"
lint_dirs=(); for d in src tests bench scripts; do [ -d "$d" ] && lint_dirs+=("$d"); done
"$VENV/bin/ruff" check "${lint_dirs[@]}" || exit 1
echo "== pytest"
"$VENV/bin/python" -m pytest --durations=25 "$@"
rc=$?
for s in "${skipped[@]}"; do echo "skipped: $s"; done
exit $rc

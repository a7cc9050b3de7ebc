#!/usr/bin/env bash
# Serve the risk console over a workspace (default: the demo's) until Ctrl-C.
#
#   bash scripts/demo-console.sh [WORKSPACE]
#
# Creates a fresh admin sign-in token for the owner "demo" (riskloop token create), prints the
# console URL and the token, then runs `riskloop serve` on 127.0.0.1 in the foreground.
# RISKLOOP_CONSOLE_PORT picks the port (default 8000; the next free port when it is taken).
set -euo pipefail
cd "$(dirname "$0")/.."
WS="${1:-riskloop-demo}"
HOST="127.0.0.1"
PORT="${RISKLOOP_CONSOLE_PORT:-8000}"
PY="${RISKLOOP_PYTHON:-.venv/bin/python}"
RL=("$PY" -m riskloop --workspace "$WS")

if [ ! -f "$WS/.riskloop/riskloop.db" ] && [ -z "${RISKLOOP_DB_URL:-}" ]; then
  echo "error: '$WS' holds no riskloop store: run 'riskloop demo --workspace $WS' first" >&2
  exit 2
fi
PORT="$("$PY" - "$HOST" "$PORT" <<'PYEOF'
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
for candidate in [port, *range(port + 1, port + 50)]:
    with socket.socket() as s:
        try:
            s.bind((host, candidate))
        except OSError:
            continue
        print(candidate)
        break
else:
    with socket.socket() as s:
        s.bind((host, 0))
        print(s.getsockname()[1])
PYEOF
)"
TOKEN="$("${RL[@]}" token create --role admin --owner demo --note "make demo console" --json \
  | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
cat <<MSG

risk console:   http://$HOST:$PORT/
sign in with:   $TOKEN
                (an admin token for "demo", shown once; Ctrl-C stops the console)

MSG
exec "${RL[@]}" serve --host "$HOST" --port "$PORT"

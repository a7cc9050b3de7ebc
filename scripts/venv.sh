#!/usr/bin/env bash
# Create .venv with pip and install riskloop into it (idempotent: reinstalls only when
# pyproject.toml or constraints.txt changed). Usage: scripts/venv.sh run|dev
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-run}"
VENV=.venv
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
extras=""
[ "$kind" = dev ] && extras="[dev,postgres,ray]"  # ray: ~240 MB, for the --executor ray test
stamp="$VENV/.installed-$kind"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "installing riskloop$extras into $VENV (torch pinned by constraints.txt)"
# The machine's pip.conf may name local wheel folders that do not exist; their warnings are noise.
set +e
"$VENV/bin/python" -m pip install --disable-pip-version-check -q -c constraints.txt -e ".$extras" 2>&1 \
  | grep -v "^WARNING: Location 'file://"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" -ne 0 ]; then
  echo "pip install failed (exit $rc)" >&2
  exit "$rc"
fi
echo "$want" > "$stamp"
[ "$kind" = dev ] && echo "$want" > "$VENV/.installed-run"
exit 0

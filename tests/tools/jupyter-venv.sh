#!/usr/bin/env bash
# Makes (once) the Python venv with a real Jupyter server and
# jupyter-server-proxy that tests/proxies.rs runs cellucid-rs behind.
#
# The venv lives OUTSIDE the repository, in a cache directory keyed by the
# pinned requirements, so it is made once per machine and reused:
#   ${CELLUCID_TEST_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/cellucid-test-venvs}/jupyter-<hash>
# (tests/proxies.rs finds it the same way). Idempotent: a complete venv is
# left alone; a half-made one (no marker file) is made again. Prints the
# venv's path on stdout.
#
# Needs python3 with the venv module and access to PyPI.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
requirements="$here/jupyter-requirements.txt"
root="${CELLUCID_TEST_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/cellucid-test-venvs}"
# The first 12 hex digits of the requirements' SHA-256: a new pin gets a new venv.
key="$(sha256sum "$requirements" | cut -c1-12)"
venv="$root/jupyter-$key"
marker="$venv/.cellucid-complete"

if [ -f "$marker" ] && [ -x "$venv/bin/jupyter" ]; then
  echo "$venv"
  exit 0
fi

python="${PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python 3 (Debian: python3 python3-venv)" >&2
  exit 1
fi
mkdir -p "$root"
rm -rf "$venv"
"$python" -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  --requirement "$requirements" >&2
"$venv/bin/jupyter" server --version >/dev/null
touch "$marker"
echo "$venv"

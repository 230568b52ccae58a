#!/usr/bin/env bash
# Installs the reverse proxies tests/proxies.rs runs cellucid-rs behind, for
# CI (.ci/run) or a developer who wants those tests to run rather than skip:
#   - nginx, from Debian's package nginx-light;
#   - a Python venv with a real Jupyter server and jupyter-server-proxy from
#     PyPI, made outside the repository by tests/tools/jupyter-venv.sh.
# Idempotent: what is already there is left alone. Needs root for apt-get.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
  export DEBIAN_FRONTEND=noninteractive
  # The package would start its own nginx service on port 80; the tests start
  # nginx themselves. policy-rc.d answering 101 forbids service starts during
  # the install (the usual way in containers); it is removed afterwards.
  policy=/usr/sbin/policy-rc.d
  if ! [ -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq nginx-light
fi

# The venv module (Debian's system Python keeps it in python3-venv).
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq python3-venv
fi
bash "$here/jupyter-venv.sh" >/dev/null

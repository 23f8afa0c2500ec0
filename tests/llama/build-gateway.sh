#!/usr/bin/env bash
# Installs LiteLLM's proxy, pinned to exactly litellm[proxy]==1.106.12, into a virtualenv under
# target/litellm/ for the gateway tests (tests/llama/gateway.rs). Releases 1.107.x were
# reported compromised: the pin is exact and checked after the install. A second run finds
# the installed version and returns at once.
#
# stdout: the path of the `litellm` command. Progress goes to stderr, pip's own output to
# target/litellm/install.log (its tail is shown on failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
version=1.106.12
venv="$PWD/target/litellm"
bin="$venv/bin/litellm"
log="$venv/install.log"
python=${PYTHON:-python3}

installed() {
  [ -x "$bin" ] && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null)" = "$version" ]
}

if ! installed; then
  echo "litellm: installing litellm[proxy]==$version into $venv" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  if ! "$venv/bin/pip" install --disable-pip-version-check "litellm[proxy]==$version" >"$log" 2>&1; then
    echo "litellm: pip install failed; last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
  fi
  if ! installed; then
    echo "litellm: the installed version is not $version" >&2
    exit 1
  fi
fi
echo "$bin"

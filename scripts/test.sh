#!/usr/bin/env bash
# The whole test suite, from a fresh machine: venv + install, real peers (Collector, Jaeger,
# stripe-mock, Prometheus), lint and types, then pytest with every test (none skipped).
# Extra arguments go to pytest (e.g. scripts/test.sh tests/core -x).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '[test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    python3 -m venv .venv
fi
log "installing otel-chronograph[all,test]"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[all,test]'

log "building / reusing the real peers"
bash scripts/build-peers.sh

log "ruff + mypy"
.venv/bin/ruff check src tests benchmarks
.venv/bin/mypy

log "pytest"
set +e
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"

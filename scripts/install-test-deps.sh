#!/usr/bin/env bash
# Installs the real components the tests drive: redis-cli and redis-benchmark (Debian's
# redis-tools) for the protocol tests. Safe to run repeatedly; does nothing when present.
set -euo pipefail
if command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-test-deps: redis-tools missing and not root; run: sudo apt-get install redis-tools" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq redis-tools >/dev/null

#!/usr/bin/env bash
# Installs the real components the tests drive: redis-cli and redis-benchmark (Debian's
# redis-tools) for the protocol tests, and redis-server, whose replies the compatibility tests
# compare Shoal's with (internal/node/redis_compat_test.go starts its own on a free port). Safe
# to run repeatedly; does nothing when present.
set -euo pipefail
missing=()
for pair in redis-cli:redis-tools redis-benchmark:redis-tools redis-server:redis-server; do
  bin=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$bin" >/dev/null; then
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-test-deps: missing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged service on the default port; the tests do not use it.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
  systemctl stop redis-server || true
fi

#!/usr/bin/env bash
# Installs the peers the benchmarks compare Shoal with, from Debian's packages: redis-server and
# redis-tools (redis-cli, redis-benchmark), etcd-server and etcd-client. Safe to run repeatedly;
# does nothing when everything is present. The benchmark starts its own instances on free ports
# in a temporary directory, so any system service these packages enable is not used.
set -euo pipefail
missing=()
for pair in redis-server:redis-server redis-cli:redis-tools redis-benchmark:redis-tools etcd:etcd-server etcdctl:etcd-client; do
  bin=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$bin" >/dev/null; then
    [[ " ${missing[*]-} " == *" $pkg "* ]] || missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "install-bench-deps: missing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
# Debian starts the packaged services on the default ports; the benchmark does not need them.
for svc in redis-server etcd; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done

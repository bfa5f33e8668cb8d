#!/usr/bin/env bash
# Runs the side-by-side benchmark: installs the peers if missing, then measures Shoal, Redis,
# Redis Cluster and etcd in one run and writes docs/BENCHMARKS.md and docs/bench/*.png.
# Arguments go to `go run ./cmd/shoal-bench` (e.g. --quick, --runs 5, --out /tmp/report).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-bench-deps.sh
exec go run ./cmd/shoal-bench "$@"

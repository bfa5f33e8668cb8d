#!/usr/bin/env bash
# A/B of server settings under redis-benchmark, the way the "What changed for speed" rows of
# docs/BENCHMARKS.md were measured: for each round, every setting in turn gets a fresh group
# (3 replicas by default) on 127.0.0.1, redis-benchmark runs against its leader, the group is
# stopped; the medians over the rounds are printed at the end. Settings alternate within a round
# so that the machine's drift hits them alike.
#
#   scripts/ab.sh [-r ROUNDS] [-n REPLICAS] [-t set|get] [-c CLIENTS] [-N REQUESTS] SETTING...
#
# A SETTING is a shoal binary followed by server flags, quoted as one argument, e.g.
#   scripts/ab.sh -r 5 "/tmp/old/shoal" "/tmp/new/shoal" "/tmp/new/shoal --propose-window 0"
# or a reference measured the same way: `redis` (one redis-server, no persistence) or the path
# of a respnull binary (go build -o /tmp/respnull ./internal/bench/respnull: a Go RESP server
# that does no work, the ceiling of a goroutine-per-connection server on this machine). Leading
# NAME=value words set the environment of the setting's processes, e.g.
#   scripts/ab.sh -r 5 -t get -c 50 redis /tmp/respnull ./shoal "GOMAXPROCS=1 ./shoal"
# Besides requests per second, every setting reports the CPU time its server processes spent
# per request (user + system, from /proc/<pid>/stat, all replicas together).
set -euo pipefail

rounds=3 replicas=3 test=set clients=32 requests=60000
while getopts "r:n:t:c:N:" o; do
	case $o in
	r) rounds=$OPTARG ;; n) replicas=$OPTARG ;; t) test=$OPTARG ;;
	c) clients=$OPTARG ;; N) requests=$OPTARG ;; *) exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n 2,18p "$0"; exit 2; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark missing: run scripts/install-bench-deps.sh" >&2; exit 1; }

work=$(mktemp -d)
pids=()
stop() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap 'stop; rm -rf "$work"' EXIT

# Ports: a random base in 20000-32599, client ports base+i, peer ports base+100+i: below the
# kernel's ephemeral range (32768 and up by default), where an outgoing connection could take one
# between the pick and the bind.
run() { # $1: setting index, $2: setting; prints requests per second
	local base=$((20000 + RANDOM % 12600)) peers="" i try
	for i in $(seq 1 "$replicas"); do
		peers+="${peers:+,}$i=127.0.0.1:$((base + i))/127.0.0.1:$((base + 100 + i))"
	done
	read -r -a cmd <<<"$2"
	local envs=()
	while [[ "${cmd[0]}" == *=* ]]; do
		envs+=("${cmd[0]}")
		cmd=("${cmd[@]:1}")
	done
	if [ "${cmd[0]}" = redis ] || [ "$(basename "${cmd[0]}")" = respnull ]; then
		if [ "${cmd[0]}" = redis ]; then
			redis-server --port $((base + 1)) --bind 127.0.0.1 --save '' --appendonly no >"$work/s$1.log" 2>&1 &
		else
			env "${envs[@]}" "${cmd[0]}" --addr 127.0.0.1:$((base + 1)) >"$work/s$1.log" 2>&1 &
		fi
		pids+=($!)
		for try in $(seq 1 40); do
			[ "$(redis-cli -p $((base + 1)) ping 2>/dev/null)" != "" ] && break
			sleep 0.25
		done
		bench $((base + 1))
		return
	fi
	for i in $(seq 1 "$replicas"); do
		env "${envs[@]}" "${cmd[0]}" server --id "$i" --group 1 --dir "$work/s$1-$i" --peers "$peers" "${cmd[@]:1}" \
			>"$work/s$1-$i.log" 2>&1 &
		pids+=($!)
	done
	# The raft leader is the node whose INFO says role:master; measure only once a write has gone
	# through it, or the run starts with a stall of up to two election timeouts.
	local leader="" p
	for try in $(seq 1 80); do
		for i in $(seq 1 "$replicas"); do
			p=$((base + i))
			if [[ "$(redis-cli -p "$p" info replication 2>/dev/null)" == *role:master* ]] &&
				[ "$(redis-cli -p "$p" set ab:ready 1 2>/dev/null)" = OK ]; then
				leader=$p
				break 2
			fi
		done
		sleep 0.25
	done
	[ -n "$leader" ] || { echo "no leader for setting $1 (logs in $work)" >&2; exit 1; }
	bench "$leader"
	rm -rf "$work"/s"$1"-*
}

cputicks() { # user + system clock ticks of the setting's processes
	local p t=0
	for p in "${pids[@]}"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}

bench() { # $1: port; prints requests per second and CPU microseconds per request, then stops the setting
	local before after rps
	before=$(cputicks)
	rps=$(redis-benchmark -p "$1" -t "$test" -c "$clients" -n "$requests" -r 100000 -d 32 -q 2>&1 |
		tr '\r' '\n' | awk '/per second/ {print $2; exit}')
	after=$(cputicks)
	echo "$rps $(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')"
	stop
}

median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A got cpu
for r in $(seq 1 "$rounds"); do
	for i in $(seq 1 $#); do
		run "$i" "${!i}" >"$work/rps" # not in $(...): a subshell would not stop its servers on exit
		read -r rps us <"$work/rps"
		got[$i]+="$rps "
		cpu[$i]+="$us "
		echo "round $r  setting $i  $rps ops/s  $us us CPU/request"
	done
done
echo
for i in $(seq 1 $#); do
	med=$(median <<<"${got[$i]}")
	echo "setting $i: median $med ops/s over $rounds rounds (${got[$i]% }), $(median <<<"${cpu[$i]}") us CPU/request: ${!i}"
done

#!/bin/bash
# Kernel time per run of connect4 with enforcement (docs/performance.md, "Enforcement"): a task
# under an enforce rule (ancestor walk, class, LPM trie), one in a cgroup no rule selects, and
# (MODE=monitor) no enforce rule at all. Root; the agent's release build; traffic only to a
# network namespace of its own.
set -e
MODE=${MODE:-enforce}
AGENT=${AGENT:-$(dirname "$0")/../target/release/sovereign-agent}
CGROOT=$(findmnt -t cgroup2 -n -o TARGET | head -1)
cleanup() {
  kill $AG $SRV 2>/dev/null || true
  sysctl -q kernel.bpf_stats_enabled=0
  rmdir $CG/enforced $CG/free $CG 2>/dev/null || true
  ip link del $V 2>/dev/null || true
  ip netns del $NS 2>/dev/null || true
  rm -rf /tmp/kns-journal /tmp/kns-policy.toml
}
trap cleanup EXIT
NS=sa-kns; V=sakns
ip netns add $NS; ip link add $V type veth peer name ${V}p; ip link set ${V}p netns $NS
ip addr add 198.51.100.1/30 dev $V; ip link set $V up
ip netns exec $NS ip addr add 198.51.100.2/30 dev ${V}p; ip netns exec $NS ip link set ${V}p up; ip netns exec $NS ip link set lo up
ip netns exec $NS python3 -c "
import socket
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',8080)); s.listen(4096)
while True:
    c,_=s.accept(); c.close()
" &
SRV=$!
CG=$CGROOT/sa-kns; mkdir -p $CG/enforced $CG/free
cat > /tmp/kns-policy.toml <<P
[policy]
name = "kns"
version = "1"
default = "allow"
[zones.resident]
cidrs = ["198.51.100.0/24"]
[[rule]]
name = "resident-only"
mode = "$MODE"
workload = { cgroup = ["/**/enforced"] }
allow = ["resident"]
otherwise = "violation"
P
sysctl -q kernel.bpf_stats_enabled=1
"$AGENT" run --cgroup $CG --policy /tmp/kns-policy.toml --output none --journal /tmp/kns-journal --api-socket /tmp/kns.sock --metrics-listen 127.0.0.1:0 > /tmp/kns-agent.log 2>&1 &
AG=$!
sleep 4
stats() { bpftool prog show name connect4 -j | python3 -c "import json,sys; p=json.load(sys.stdin); p=p[0] if isinstance(p,list) else p; print(p.get('run_time_ns',0), p.get('run_cnt',0))"; }
run() { # $1 cgroup
  read t0 c0 < <(stats)
  sh -c "echo \$\$ > $CG/$1/cgroup.procs; exec python3 -c \"
import socket, struct
for i in range(10000):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); s.connect(('198.51.100.2',8080)); s.close()
\""
  read t1 c1 < <(stats)
  echo "$MODE $1: $(( (t1-t0)/(c1-c0) )) ns/run over $((c1-c0)) runs"
}
for r in 1 2 3; do run enforced; run free; done

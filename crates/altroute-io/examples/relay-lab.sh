#!/usr/bin/env bash
# Builds client ns <-> relay ns <-> server ns (veths, 10.77.0.0/24, no NAT), runs the relay
# example in the relay ns and iperf3 through it. Root only; namespaces are deleted on exit.
#
#   examples/relay-lab.sh [relay options...]      e.g.  --vnet --rx v3 --retire-ms 1
#   env: SECS=10 STREAMS=1 OFFLOADS=on|off REVERSE=1 BRIDGE=1 (kernel bridge baseline instead)
#        PING=N (print the RTT of N pings through the relay first; SECS=0 skips iperf3)
#        RELAY=path/to/relay (default: target-io/release/examples/relay)
set -euo pipefail
args=("$@")
here=$(cd "$(dirname "$0")/../../.." && pwd)
RELAY=${RELAY:-$here/target-io/release/examples/relay}
SECS=${SECS:-10}
STREAMS=${STREAMS:-1}
P=arrl$$-
c=${P}c r=${P}r s=${P}s
RPID=
cleanup() {
  set +e
  if [ -n "$RPID" ]; then kill "$RPID" 2>/dev/null; wait "$RPID" 2>/dev/null; fi
  for n in $c $r $s; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT
for n in $c $r $s; do
  ip netns add "$n"
  ip -n "$n" link set lo up
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add c0 netns "$c" type veth peer name r0 netns "$r"
ip link add s0 netns "$s" type veth peer name r1 netns "$r"
ip -n "$c" link set c0 up; ip -n "$r" link set r0 up; ip -n "$r" link set r1 up; ip -n "$s" link set s0 up
ip -n "$c" addr add 10.77.0.1/24 dev c0
ip -n "$s" addr add 10.77.0.2/24 dev s0
if [ "${OFFLOADS:-on}" = off ]; then
  ip netns exec "$c" ethtool -K c0 tx off tso off gso off >/dev/null
  ip netns exec "$s" ethtool -K s0 tx off tso off gso off >/dev/null
fi
if [ -n "${BRIDGE:-}" ]; then
  ip -n "$r" link add br0 type bridge
  ip -n "$r" link set r0 master br0; ip -n "$r" link set r1 master br0; ip -n "$r" link set br0 up
  echo "kernel bridge baseline"
else
  ip netns exec "$r" "$RELAY" r0 r1 --stats 5 "${args[@]}" &
  RPID=$!
  sleep 1
fi
ip netns exec "$c" ping -c 2 -W 2 -q 10.77.0.2 >/dev/null || { echo "no ping through the relay"; exit 1; }
if [ -n "${PING:-}" ]; then
  ip netns exec "$c" ping -c "$PING" -i 0.05 -q 10.77.0.2 | tail -1
fi
[ "$SECS" = 0 ] && exit 0
ip netns exec "$s" iperf3 -s -1 >/dev/null 2>&1 &
sleep 0.5
ip netns exec "$c" iperf3 -c 10.77.0.2 -t "$SECS" -P "$STREAMS" -f g ${REVERSE:+-R} | grep -E "(sender|receiver)$" | tail -2
if [ -n "${DIAG:-}" ]; then
  for x in "$c c0" "$r r0" "$r r1" "$s s0"; do set -- $x; echo "== $2"; ip -n "$1" -s -s link show "$2" | sed -n '4,12p'; done
  ip netns exec "$s" nstat -az TcpExtTCPOFOQueue TcpExtTCPRcvQDrop TcpExtTCPBacklogDrop TcpInErrs TcpExtTCPZeroWindowDrop 2>/dev/null | tail -n +2
  ip netns exec "$c" nstat -az TcpRetransSegs TcpExtTCPLostRetransmit TcpExtTCPSackRecovery 2>/dev/null | tail -n +2
fi

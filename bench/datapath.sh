#!/usr/bin/env bash
# The datapath side by side with the Linux kernel, in one run, on the same lab and cores.
#
#   bench/datapath.sh                       # kernel vs altroute, 3 rounds of 5 s per figure
#   ROUNDS=5 SECS=10 SYSTEMS="kernel altroute altroute-handoff altroute-w1" bench/datapath.sh
#
# Systems (alternated A B A B ..., a fresh lab for every run):
#   kernel            `altroute lab up --mode kernel`: forwarding + nftables masquerade, veth
#                     GSO/GRO/TSO on (the kernel defaults), multipath isp1:isp2 1:1
#   altroute          `altroute lab up` (router mode) + `altroute run` with the lab config
#                     (examples/lab-dual-wan-balanced.yaml: both ISPs, flows split 1:1 by hash, the
#                     kernel's routing; until 2026-12-07 it was lab-dual-wan-failover.yaml, every flow
#                     via isp1 against the kernel's two paths, which cost TCP with 4 streams 0.71x on
#                     the Zen 5 machine: CONFIG=... to run another), vnet_hdr on
#   altroute-handoff  the same with `datapath: fanout: handoff`
#   altroute-spill    the same with `datapath: rx_ring: v2-spill` (MTU-sized V2 slots, 4096 per
#                     socket; GSO super-frames read whole from the socket queue)
#   altroute-v3       the same with `datapath: rx_ring: v3` (TPACKET_V3 blocks)
#   altroute-nocoal   the same with `datapath: udp_coalesce: false` (no UDP GSO merging at transmit)
#   altroute-offload  the same with `datapath: offload: tc` (established TCP and answered UDP flows
#                     forwarded by a tc eBPF program in the kernel; the packet sockets are bound
#                     to IPv4, ARP and IPv6, which the kernel serves after tc, so redirected frames
#                     never reach them; the default since it was measured)
#   altroute-nooffload  the same with `datapath: offload: off` (every frame through user space)
#   altroute-w1       the same with `--workers 1`
#   altroute-w2       the same with `--workers 2`
#   altroute-b        the same with the binary $ALTROUTE_B (A/B of two builds)
#   altroute@ARG@ARG  the same with these extra `altroute run` arguments, e.g.
#                     altroute@--pin=auto@--spin-us=50
# Figures, each per system and round:
#   tcp1 / tcp4   iperf3 TCP, 1 and 4 streams, receiver Gbit/s
#   udp64         iperf3 -u -l 64 -b 0: packets/s delivered to the server and loss %
#   flood64       trafgen 64-byte UDP frames (1024 source ports) out of the LAN as fast as it can
#                 (if netsniff-ng is installed): packets/s reaching the internet side, loss %
#   cps           ab -c 32 (no keep-alive) against nginx in inet: completed connections/s
# Environment: ROUNDS (3), SECS (5), SYSTEMS, ALTROUTE (target-dp/release/altroute), CONFIG,
#   ALTROUTE_ARGS (extra `altroute run` arguments for every altroute system), OUT (results dir:
#   results.tsv, and each TCP run's iperf3 JSON with per-second intervals, iperf3-tcpN-SYS-R.json),
#   PREFIX (namespace prefix, default bd<pid>-), FIGS (subset of "tcp1 tcp4 udp64 flood64 cps"). Needs root. Installs nothing: missing tools are
#   reported and their figures skipped.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
SYSTEMS=${SYSTEMS:-"kernel altroute"}
ALTROUTE=${ALTROUTE:-$here/target-dp/release/altroute}
CONFIG=${CONFIG:-$here/examples/lab-dual-wan-balanced.yaml}
ALTROUTE_ARGS=${ALTROUTE_ARGS:-}
FIGS=${FIGS:-"tcp1 tcp4 udp64 flood64 cps"}
P=${PREFIX:-bd$$-}
OUT=${OUT:-$(mktemp -d /tmp/datapath-bench.XXXXXX)}
mkdir -p "$OUT"
RES=$OUT/results.tsv
: >"$RES"

[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)"; exit 1; }
[ -x "$ALTROUTE" ] || { echo "no altroute binary at $ALTROUTE (CARGO_TARGET_DIR=target-dp cargo build --release -p altroute)"; exit 1; }
missing=()
have() { command -v "$1" >/dev/null 2>&1; }
for t in ip nft ethtool iperf3 nginx ab trafgen jq python3; do have "$t" || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing tools: ${missing[*]} (apt-get install -y iproute2 nftables ethtool iperf3 nginx apache2-utils netsniff-ng jq python3); their figures are skipped"
fi
for t in ip nft iperf3 jq python3; do have "$t" || { echo "cannot run without $t"; exit 1; }; done

RPID=
NGINX_PID=
cleanup() {
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
  RPID=
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null
  NGINX_PID=
  ip netns pids "${P}inet" 2>/dev/null | xargs -r kill 2>/dev/null
  ip netns pids "${P}lan" 2>/dev/null | xargs -r kill 2>/dev/null
  "$ALTROUTE" lab down --prefix "$P" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nx() { local ns=$1; shift; ip netns exec "$P$ns" "$@"; }
cnt() { nx "$1" cat "/sys/class/net/$2/statistics/$3"; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RES"; echo "  $2 $3 = $4 $5"; }

nginx_conf=$OUT/nginx.conf
cat >"$nginx_conf" <<EOF
worker_processes 1;
pid $OUT/nginx.pid;
error_log $OUT/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 0;
  server { listen 203.0.113.11:80; location / { return 204; } }
}
EOF

altroute_config() { # variant -> config path
  local v=$1; local c=$OUT/config-$v.yaml
  cp "$CONFIG" "$c"
  case $v in
    altroute-handoff) printf '\ndatapath:\n  fanout: handoff\n' >>"$c" ;;
    altroute-spill) printf '\ndatapath:\n  rx_ring: v2-spill\n' >>"$c" ;;
    altroute-v3) printf '\ndatapath:\n  rx_ring: v3\n' >>"$c" ;;
    altroute-nocoal) printf '\ndatapath:\n  udp_coalesce: false\n' >>"$c" ;;
    altroute-offload) printf '\ndatapath:\n  offload: tc\n' >>"$c" ;;
    altroute-nooffload) printf '\ndatapath:\n  offload: off\n' >>"$c" ;;
  esac
  echo "$c"
}
altroute_args() {
  case $1 in
    altroute@*) echo "${1#altroute@}" | tr '@' ' ' ;;
    altroute-w1) echo "--workers 1" ;;
    altroute-w2) echo "--workers 2" ;;
  esac
}

setup() { # system
  local sys=$1
  "$ALTROUTE" lab down --prefix "$P" >/dev/null 2>&1
  if [ "$sys" = kernel ]; then
    "$ALTROUTE" lab up --prefix "$P" --mode kernel >/dev/null || return 1
  else
    "$ALTROUTE" lab up --prefix "$P" >/dev/null || return 1
    local cfg; cfg=$(altroute_config "$sys")
    # shellcheck disable=SC2046
    local bin=$ALTROUTE
    [[ $sys == altroute-b* ]] && bin=${ALTROUTE_B:-$ALTROUTE}
    RUST_LOG=info "$bin" run --config "$cfg" --netns "${P}rtr" $(altroute_args "$sys") $ALTROUTE_ARGS \
      >>"$OUT/$sys.log" 2>&1 &
    RPID=$!
  fi
  nx lan sysctl -qw net.ipv4.ip_local_port_range="10000 65000"
  # UDP floods end here, silently (no ICMP port unreachable back through the router).
  printf 'table ip bench {\n chain in {\n  type filter hook input priority 0;\n  udp dport 9 drop\n }\n}\n' | nx inet nft -f -
  nx inet iperf3 -s -B 203.0.113.10 -D >/dev/null
  if have nginx; then
    nx inet nginx -c "$nginx_conf" -g 'daemon off;' >/dev/null 2>&1 &
    NGINX_PID=$!
  fi
  for _ in $(seq 1 50); do
    nx lan ping -c 1 -W 1 -q 203.0.113.10 >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "  no ping through $sys"; return 1
}

teardown() {
  [ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null
  RPID=
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  NGINX_PID=
  ip netns pids "${P}inet" 2>/dev/null | xargs -r kill 2>/dev/null
  "$ALTROUTE" lab down --prefix "$P" >/dev/null 2>&1
}

offloads() { # what the router's LAN port and the LAN peer ran with
  local k
  k=$(nx rtr ethtool -k r-lan 2>/dev/null | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload|tx-checksumming):' | sed 's/: /=/' | tr '\n' ' ')
  echo "r-lan: $k"
}

want() { [[ " $FIGS " == *" $1 "* ]]; }

measure() { # system round
  local sys=$1 r=$2 j
  sleep 0.5
  for n in 1 4; do
    want "tcp$n" || continue
    j=$(nx lan iperf3 -c 203.0.113.10 -t "$SECS" -P "$n" -J 2>/dev/null)
    printf '%s\n' "$j" >"$OUT/iperf3-tcp$n-$sys-$r.json"
    rec "$sys" "$r" "tcp$n" "$(jq -r '.end.sum_received.bits_per_second / 1e9' <<<"$j" 2>/dev/null || echo nan)" \
      "retr=$(jq -r '.end.sum_sent.retransmits' <<<"$j" 2>/dev/null)"
  done
  want udp64 && {
  j=$(nx lan iperf3 -c 203.0.113.10 -u -l 64 -b 0 -t "$SECS" -J 2>/dev/null)
  local pk lost secs
  pk=$(jq -r '.end.sum.packets // 0' <<<"$j" 2>/dev/null); lost=$(jq -r '.end.sum.lost_packets // 0' <<<"$j" 2>/dev/null)
  secs=$(jq -r '.end.sum.seconds // 1' <<<"$j" 2>/dev/null)
  rec "$sys" "$r" udp64 "$(python3 -c "print(round(($pk-$lost)/$secs))" 2>/dev/null || echo nan)" \
    "sent=$pk lost%=$(python3 -c "print(round(100*$lost/max($pk,1),2))" 2>/dev/null)"
  }
  if want flood64 && have trafgen; then
    local lmac rmac tx0 rx0 tx1 rx1
    lmac=$(nx lan cat /sys/class/net/lan0/address)
    rmac=$(nx rtr cat /sys/class/net/r-lan/address)
    cat >"$OUT/flood.cfg" <<EOF
{ eth(da=$rmac, sa=$lmac, type=0x0800),
  ipv4(saddr=10.0.0.2, daddr=203.0.113.10, ttl=64, proto=17),
  udp(sport=dinc(20000, 21023), dport=9),
  fill(0x00, 22) }
EOF
    nx lan ip neigh replace 10.0.0.1 lladdr "$rmac" dev lan0 2>/dev/null
    tx0=$(cnt lan lan0 tx_packets); rx0=$(( $(cnt inet n-i1 rx_packets) + $(cnt inet n-i2 rx_packets) ))
    nx lan timeout "$SECS" trafgen --dev lan0 --conf "$OUT/flood.cfg" --cpus 1 -q >/dev/null 2>&1
    sleep 0.3
    tx1=$(cnt lan lan0 tx_packets); rx1=$(( $(cnt inet n-i1 rx_packets) + $(cnt inet n-i2 rx_packets) ))
    rec "$sys" "$r" flood64 "$(( (rx1 - rx0) / SECS ))" \
      "sent/s=$(( (tx1 - tx0) / SECS )) lost%=$(python3 -c "print(round(100*(1-($rx1-$rx0)/max($tx1-$tx0,1)),2))")"
  fi
  if want cps && have ab && have nginx; then
    local a
    a=$(nx lan ab -q -c 32 -t "$SECS" -n 10000000 -s 2 http://203.0.113.11/ 2>&1)
    rec "$sys" "$r" cps "$(awk '/^Requests per second/ {print $4}' <<<"$a")" \
      "failed=$(awk '/^Failed requests/ {print $3}' <<<"$a") done=$(awk '/^Complete requests/ {print $3}' <<<"$a")"
  fi
}

echo "datapath vs kernel: $(date -u '+%F %T UTC'), rounds $ROUNDS x ${SECS}s, systems: $SYSTEMS"
echo "machine: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/,"",$2); print $2}'), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "results: $RES"
for r in $(seq 1 "$ROUNDS"); do
  for sys in $SYSTEMS; do
    echo "round $r: $sys (load $(cut -d' ' -f1-3 /proc/loadavg))"
    if setup "$sys"; then
      [ "$r" = 1 ] && echo "  offloads: $(offloads)" | tee -a "$OUT/offloads.txt"
      measure "$sys" "$r"
    fi
    teardown
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$RES" "$SYSTEMS" <<'EOF'
import sys, statistics as st
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
systems = sys.argv[2].split()
figs = [("tcp1", "TCP 1 stream, Gbit/s"), ("tcp4", "TCP 4 streams, Gbit/s"),
        ("udp64", "UDP 64 B iperf3, pps delivered"), ("flood64", "UDP 64 B trafgen flood, pps delivered"),
        ("cps", "TCP connections/s (ab -c 32)")]
def vals(s, f):
    out = []
    for r in rows:
        if r[0] == s and r[2] == f:
            try: out.append(float(r[3]))
            except ValueError: pass
    return out
def fmt(x):
    return "-" if x is None else (f"{x:.2f}" if x < 100 else f"{x:,.0f}")
base = systems[0]
hdr = "| figure | " + " | ".join(f"{s} (median)" for s in systems) + " | " + \
      " | ".join(f"{s}/{base}" for s in systems[1:]) + " | runs |"
print(); print(hdr); print("|" + "---|" * (len(systems) * 2 + 1))
for f, name in figs:
    meds = []
    for s in systems:
        v = vals(s, f)
        meds.append(st.median(v) if v else None)
    if all(m is None for m in meds): continue
    ratios = [("-" if (m is None or not meds[0]) else f"{m / meds[0]:.2f}x") for m in meds[1:]]
    n = min(len(vals(s, f)) for s in systems)
    print(f"| {name} | " + " | ".join(fmt(m) for m in meds) + " | " + " | ".join(ratios) + f" | {n} |")
print()
print("loss / retransmits / failures per run:")
for r in rows:
    if r[2] in ("udp64", "flood64", "cps", "tcp1", "tcp4"):
        print(f"  {r[0]:18} round {r[1]} {r[2]:8} {r[3]:>14}  {r[4]}")
EOF

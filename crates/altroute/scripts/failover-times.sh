#!/bin/sh
# Measures the failover times of the lab (crates/altroute/tests/failover_lab.rs) precisely:
# builds the tests in release mode, runs each scenario RUNS times (default 5) one after the other,
# and prints every run's MEASURE line and the medians.
#
#   probes_on   isp1 black-holed, examples/lab-dual-wan-failover.yaml probes (goal: < 1 s)
#   passive     the same with probes effectively off (one round an hour), syn_retry threshold 2
#               (goal: < 3.5 s); with this kernel's SYN schedule (tcp_syn_linear_timeouts)
#   passive_classic   the same with the classic 1 s, 3 s, 7 s SYN schedule in the LAN namespace
#   passive_signal    probes every 1 s (down after 6 lost): time until isp1 is down thanks to the
#                     passive signal and the probe boost
#   loss_burst  transitions of isp1 during a 2 s burst of 30 % loss each way (0 = no flap)
#
# first_ok_ms: from the black-hole command to the first connection (started after it) that
# succeeded through isp2. syn_retry_first/worst_ms: how long the connections started in the first
# 300 ms of the black-hole took (they can only succeed by SYN-retry rotation).
#
# Usage (root): crates/altroute/scripts/failover-times.sh [RUNS]
# Environment: CARGO_TARGET_DIR (default target-failover-release).
set -eu
RUNS=${1:-5}
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-failover-release}
export ALTROUTE_REQUIRE_NETNS=1
BIN=$(cargo test --release -p altroute --test failover_lab --no-run --message-format=json 2>/dev/null |
    python3 -c 'import sys,json
for l in sys.stdin:
    try: m=json.loads(l)
    except Exception: continue
    if m.get("reason")=="compiler-artifact" and m.get("executable") and m["target"]["name"]=="failover_lab": print(m["executable"])' | tail -1)
[ -x "$BIN" ] || { echo "cannot build the failover_lab test binary" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
run() { # label filter [env]
    label=$1; filter=$2; shift 2
    i=1
    while [ "$i" -le "$RUNS" ]; do
        line=$(env "$@" "$BIN" --exact "$filter" --nocapture --test-threads=1 2>&1 | grep -o 'MEASURE .*' | head -1 || true)
        echo "$label run $i: ${line:-no MEASURE line (test failed?)}"
        echo "$label ${line#MEASURE * }" >>"$OUT"
        i=$((i + 1))
    done
}
run probes_on probes_blackhole_fails_over_fast_isp2_lossless_failback_after_stable_window X=1
run passive passive_syn_retry_fails_over_without_probes X=1
run passive_classic passive_syn_retry_fails_over_without_probes ALTROUTE_CLASSIC_SYN=1
run passive_signal passive_signal_takes_gateway_down_before_the_probe_window X=1
run loss_burst loss_burst_30pct_does_not_flap X=1
echo "--- medians of $RUNS runs ---"
python3 - "$OUT" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, _, rest = line.partition(" ")
    for k, v in re.findall(r"(\w+)=(\S+)", rest):
        m = re.fullmatch(r"(?:Some\()?(\d+)\)?", v)
        if m:
            rows.setdefault(label, {}).setdefault(k, []).append(int(m.group(1)))
for label, kv in rows.items():
    print(label + ": " + ", ".join(f"{k} {statistics.median(v):g} (of {sorted(v)})" for k, v in kv.items()))
EOF

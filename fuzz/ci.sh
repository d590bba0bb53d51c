#!/usr/bin/env bash
# CI for the fuzz targets: builds every cargo-fuzz target, replays the committed crashers
# (fuzz/regressions/<target>/), seeds each corpus (seed.py: fixtures/ and the shared pcap corpus)
# and runs each target for a short time. Fails if any target crashes, leaks, hangs or fails to
# build; prints what it ran.
#
#   FUZZ_SECONDS  seconds per target (default 20)
#   FUZZ_JOBS     targets fuzzed at once (default: the number of CPUs)
#   FUZZ_TARGETS  space-separated subset to run (default: every target of `cargo fuzz list`)
#   ALTROUTE_PCAP_CORPUS  the shared pcap corpus (default: shared/pcap-corpus beside the checkout)
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and python3. cargo-fuzz builds with
# nightly-only flags (sanitizers, coverage): the nightly toolchain when rustup has it, else the
# stable one with RUSTC_BOOTSTRAP=1 (a machine may have only stable). Crashers are left in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

secs=${FUZZ_SECONDS:-20}
jobs=${FUZZ_JOBS:-$(nproc)}
started=$(date +%s)

if rustup run nightly rustc --version >/dev/null 2>&1; then
  tc=nightly
else
  tc=stable
  export RUSTC_BOOTSTRAP=1
fi
echo "fuzz: building every target (cargo +$tc fuzz build${RUSTC_BOOTSTRAP:+, RUSTC_BOOTSTRAP=1})"
cargo "+$tc" fuzz build
host=$(rustc "+$tc" -vV | sed -n 's/^host: //p')
bin=target/$host/release
targets=${FUZZ_TARGETS:-$(cargo "+$tc" fuzz list)}
built=$(($(date +%s) - started))

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
# Committed crashers first: each must now pass (libFuzzer runs each file given once).
for t in $targets; do
  if [ -d "regressions/$t" ] && [ -n "$(ls -A "regressions/$t")" ]; then
    n=$(find "regressions/$t" -type f | wc -l)
    if "$bin/$t" "regressions/$t"/* >"$logs/$t.regress" 2>&1; then
      echo "fuzz: $t: $n committed crashers pass"
    else
      echo "fuzz: $t: a committed crasher fails again:" >&2
      tail -40 "$logs/$t.regress" >&2
      failed+=("$t (regression)")
    fi
  fi
done

echo "fuzz: seeding the corpora"
python3 seed.py

run() {
  local t=$1 rc=0
  mkdir -p "corpus/$t" "artifacts/$t"
  # -timeout: an input running 10 s is a hang; -rss_limit_mb: the default, stated.
  "$bin/$t" "corpus/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$logs/$t.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$t.rc"
}
echo "fuzz: running each target for ${secs}s, $jobs at a time: $(echo $targets)"
for t in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n || true
  done
  run "$t" &
done
wait

printf '%-16s %8s %10s %8s  %s\n' target seconds runs corpus result
for t in $targets; do
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  entries=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    result="FAILED (rc $rc; artifacts/$t/)"
    failed+=("$t")
  fi
  printf '%-16s %8s %10s %8s  %s\n' "$t" "$secs" "${runs:-?}" "$entries" "$result"
  if [ "$rc" != 0 ]; then
    grep -E -A30 'panicked|ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)' "$logs/$t.log" | head -60 >&2 || tail -40 "$logs/$t.log" >&2
  fi
done
echo "fuzz: build ${built}s, total $(($(date +%s) - started))s"
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: every target ran without a crash"

#!/bin/sh
# Rebuilds the offload's eBPF object into a temporary file and fails if it differs from the
# committed offload.bpf.o (the C source and the object must not drift apart). See build.sh.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$here/build.sh" "$tmp/offload.bpf.o"
if ! cmp -s "$tmp/offload.bpf.o" "$here/offload.bpf.o"; then
  echo "crates/altroute-io/ebpf/offload.bpf.o is not what offload.bpf.c compiles to:" >&2
  echo "run crates/altroute-io/ebpf/build.sh and commit the object" >&2
  exit 1
fi
echo "offload.bpf.o matches offload.bpf.c ($(clang --version | head -1))"

#!/bin/sh
# Rebuilds the offload's eBPF object from its C source:
#
#   crates/altroute-io/ebpf/build.sh [OUT]     # OUT defaults to offload.bpf.o beside this script
#
# The object is committed (altroute-io embeds it), so building altroute needs no clang; CI runs
# check.sh, which rebuilds it and fails if the result differs from the committed one. Needs
# Debian's clang and llvm (llvm-strip) and libbpf-dev (bpf/bpf_helpers.h); the bytes depend on
# the compiler version (Debian 12: clang 14).
#
# Deterministic: fixed flags, the source named relative to this directory, and the DWARF debug
# sections (which record the build directory) stripped. The BTF stays: it describes the map to
# the loader and gives the verifier's log source lines.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/offload.bpf.o}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
cd "$here"
clang -target bpfel -mcpu=v3 -O2 -g -Wall -Wextra -Werror \
  -fdebug-compilation-dir=. -I"/usr/include/$(clang -print-multiarch)" \
  -c offload.bpf.c -o "$out"
llvm-strip -g "$out"

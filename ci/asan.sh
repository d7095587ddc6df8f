#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# The concurrency stress tests under AddressSanitizer (stable toolchain with RUSTC_BOOTSTRAP).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=0"
for t in rcu_stress mim_stress; do
  cargo test --target x86_64-unknown-linux-gnu --target-dir target/asan -p bpfnest-maps --test "$t"
done

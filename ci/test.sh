#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# The whole test suite: unit, property, integration and doc tests; the kernel-differential
# suite (bpfnest vs bpf(2)); the loom models; the AddressSanitizer stress run (docs/testing.md).
# Ends with the size of the conformance suite.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
cargo test --workspace -- --skip kdiff_
cargo test -p bpfnest --tests -- kdiff_ --nocapture --test-threads 1 2>&1 | tee target/kdiff.log
bash ci/loom.sh
bash ci/asan.sh
scenarios=$(grep -c 'steps identical' target/kdiff.log || true)
steps=$(grep -oE '[0-9]+ steps identical' target/kdiff.log | awk '{s += $1} END {print s + 0}')
random=$(grep -oE '[0-9]+ sequences x [0-9.]+ ops = [0-9]+ operations' target/kdiff.log || echo "random run skipped")
echo "conformance suite: $scenarios scenarios, $steps steps identical on bpfnest and the kernel; random: $random"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# Loom models of the RCU and the LRU lists (crates/bpfnest-maps/tests/loom_{rcu,lru}.rs).
#
# --cfg bpfnest_loom swaps crate::primitive for loom's types. A separate target dir keeps this
# RUSTFLAGS change from invalidating the normal build. Extra arguments go to cargo test
# (e.g. a test-name filter); LOOM_MAX_PREEMPTIONS may be overridden from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg bpfnest_loom ${RUSTFLAGS:-}"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"

cargo test --release --target-dir target/loom -p bpfnest-maps --test loom_rcu --test loom_lru "$@"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# Atomics, cells and Arc in bpfnest-maps must come from `primitive` (the loom switch). The only
# exceptions are modules that access raw shared memory by address (value memory, ring pages,
# bloom bit arrays), which loom does not model.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed='src/(primitive|storage|map/ringbuf|map/bloom_filter)\.rs'
if grep -rnE '(std|core)::sync::atomic' crates/bpfnest-maps/src | grep -vE "$allowed"; then
  echo "error: use crate::primitive instead of std atomics (loom switch)" >&2
  exit 1
fi

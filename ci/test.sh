#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0 OR MIT
# The whole test suite: unit, integration and doc tests, then the loom models and the
# AddressSanitizer stress run (see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace
bash ci/loom.sh
bash ci/asan.sh

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The only import point for atomics, cells and `Arc` in this crate (crossbeam-epoch's habit).
//!
//! Under `--cfg bpfnest_loom` everything here is loom's model type, so the RCU and refcount
//! protocols can be checked exhaustively; otherwise it is `core`/`std`. `ci/check-primitive.sh`
//! forbids naming `std::sync::atomic` types anywhere else.

#[cfg(bpfnest_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(bpfnest_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(bpfnest_loom)]
pub(crate) use loom::thread;

#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
// loom's `Arc` has no `Weak`: code that needs one (the RCU reclaimer thread) exists only outside loom.
#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::Weak;
#[cfg(not(bpfnest_loom))]
pub(crate) use std::thread;

/// Spin-then-yield backoff for grace-period waits.
pub(crate) fn spin_hint(iter: u32) {
    if iter < 64 {
        core::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

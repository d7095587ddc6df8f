// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The only import point for atomics, cells and `Arc` in this crate (crossbeam-epoch's habit).
//!
//! Under `--cfg bpfnest_loom` everything here is loom's model type, so the RCU and refcount
//! protocols can be checked exhaustively; otherwise it is `core`/`std`. `clippy.toml` forbids
//! naming `std::sync::atomic` types anywhere else.
#![allow(
    clippy::disallowed_types,
    reason = "this module is the one place allowed to name the real atomics"
)]

#[cfg(bpfnest_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(bpfnest_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(bpfnest_loom)]
pub(crate) use loom::thread;

#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex, MutexGuard};
// loom's `Arc` has no `Weak`: code that needs one (the RCU reclaimer thread) exists only outside loom.
#[cfg(not(bpfnest_loom))]
pub(crate) use std::sync::Weak;
#[cfg(not(bpfnest_loom))]
pub(crate) use std::thread;

/// `UnsafeCell` with loom's `with`/`with_mut` interface, so code reads the same under both cfgs.
#[cfg(not(bpfnest_loom))]
#[derive(Debug, Default)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(bpfnest_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(v: T) -> Self {
        UnsafeCell(core::cell::UnsafeCell::new(v))
    }
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(bpfnest_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Spin-then-yield backoff for grace-period waits.
pub(crate) fn spin_hint(iter: u32) {
    if iter < 64 {
        core::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Multi-threaded stress of the RCU alone: readers dereference objects published through an
//! `AtomicPtr` inside read-side sections while writers swap them out and free the old ones
//! via `synchronize`, `call_rcu` or the two-flavour chain.
//!
//! A freed object is first poisoned (canary and payload overwritten) and then really
//! deallocated. A reader that touches an object freed under it sees the poison, or memory
//! the allocator has reused, and fails its canary/payload check; under AddressSanitizer the
//! access itself is reported as a heap-use-after-free:
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
//!     cargo test --target x86_64-unknown-linux-gnu -p bpfnest-maps --test rcu_stress
//! ```
//!
//! `BPFNEST_STRESS_ITERS=<n>` multiplies every iteration count (default 1, about 2 s).
#![cfg(not(bpfnest_loom))]

use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bpfnest_maps::rcu::{default_rcu, with_reader, Flavour, Rcu, RcuDomain, RcuReader};

const LIVE: u64 = 0x600d_cafe_600d_cafe;
const POISON: u64 = 0xdead_beef_dead_beef;
const PAYLOAD: usize = 6;

/// An RCU-protected object whose integrity a reader can check.
struct Obj {
    /// `LIVE` from allocation until `retire` poisons it.
    canary: u64,
    generation: u64,
    /// `payload[i] == generation ^ i` while live.
    payload: [u64; PAYLOAD],
}

fn new_obj(generation: u64) -> *mut Obj {
    let mut payload = [0; PAYLOAD];
    for (i, p) in payload.iter_mut().enumerate() {
        *p = generation ^ i as u64;
    }
    Box::into_raw(Box::new(Obj {
        canary: LIVE,
        generation,
        payload,
    }))
}

/// An unpublished object on its way to being freed.
struct Retired(*mut Obj);

// SAFETY: once unpublished, the object is owned by whoever holds the `Retired`; readers only
// reach it through the published pointer, which no longer names it.
unsafe impl Send for Retired {}

impl Retired {
    /// Poisons and frees the object.
    ///
    /// # Safety
    ///
    /// The object must be unpublished and a grace period of every flavour it was readable
    /// under must have elapsed since; this is exactly what the test checks the RCU for.
    unsafe fn free(self) {
        let p = self.0;
        // SAFETY: the caller guarantees no reader can still access `*p`, and `p` came from
        // `Box::into_raw` in `new_obj` and is freed only here, once.
        unsafe {
            ptr::write_volatile(&raw mut (*p).canary, POISON);
            for i in 0..PAYLOAD {
                ptr::write_volatile(&raw mut (*p).payload[i], POISON);
            }
            drop(Box::from_raw(p));
        }
    }

    fn later(self) -> Box<dyn FnOnce() + Send + 'static> {
        Box::new(move || {
            // SAFETY: this callback runs after the grace period(s) it was queued for; the
            // object was unpublished before it was queued.
            unsafe { self.free() }
        })
    }
}

/// Reads `p` the way a program run would, panicking on any sign of a freed object.
///
/// # Safety
///
/// `p` was loaded from a [`Slot`] inside a read-side section that is still open.
unsafe fn check(p: *const Obj) {
    // SAFETY: the caller's section keeps `*p` allocated (the property under test); volatile
    // so the compiler cannot fold the second canary read into the first.
    unsafe {
        let canary = ptr::read_volatile(&raw const (*p).canary);
        assert_eq!(canary, LIVE, "use after free: canary {canary:#x}");
        let generation = ptr::read_volatile(&raw const (*p).generation);
        for i in 0..PAYLOAD {
            let v = ptr::read_volatile(&raw const (*p).payload[i]);
            assert_eq!(
                v,
                generation ^ i as u64,
                "use after free: payload[{i}] of generation {generation}"
            );
        }
        let canary = ptr::read_volatile(&raw const (*p).canary);
        assert_eq!(
            canary, LIVE,
            "object freed while being read: canary {canary:#x}"
        );
    }
}

/// The RCU-protected pointer.
struct Slot {
    ptr: AtomicPtr<Obj>,
    generation: AtomicU64,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot {
            ptr: AtomicPtr::new(new_obj(0)),
            generation: AtomicU64::new(0),
        })
    }

    /// Publishes a fresh object and returns the unpublished one.
    fn replace(&self) -> Retired {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        // AcqRel: Release publishes the new object (rcu_assign_pointer); Acquire pairs with
        // the previous replace's Release so the old object's contents are ours to free.
        Retired(self.ptr.swap(new_obj(generation), Ordering::AcqRel))
    }

    /// One read-side section's worth of dereferencing; `long` sections yield or sleep inside.
    fn read(&self, reader: &RcuReader, i: u64, long: bool) {
        let guard = reader.read_lock();
        // Acquire: rcu_dereference; pairs with the Release half of the swap in `replace`.
        let p = self.ptr.load(Ordering::Acquire);
        // SAFETY: loaded inside `guard`'s section, which is still open.
        unsafe { check(p) };
        if i.is_multiple_of(4) {
            // A nested section must not end the outer one.
            let inner = reader.read_lock();
            // SAFETY: as above; the inner guard nests inside `guard`.
            unsafe { check(self.ptr.load(Ordering::Acquire)) };
            drop(inner);
        }
        if long {
            if i.is_multiple_of(64) {
                thread::sleep(Duration::from_micros(50));
            } else {
                thread::yield_now();
            }
        } else {
            for _ in 0..(i % 16) {
                std::hint::spin_loop();
            }
        }
        // SAFETY: still inside `guard`'s section: the object loaded first must be intact.
        unsafe { check(p) };
        drop(guard);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: every reader and writer thread has been joined before the last `Arc<Slot>`
        // goes away, so nothing can read the published object any more.
        unsafe { Retired(*self.ptr.get_mut()).free() }
    }
}

fn scale() -> u64 {
    std::env::var("BPFNEST_STRESS_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// Runs `readers` reader threads (each on the given domain, with long sections if asked)
/// until `writers` return; returns the number of sections the readers completed.
fn run(
    slot: &Arc<Slot>,
    readers: &[(Arc<RcuDomain>, bool)],
    writers: Vec<Box<dyn FnOnce() + Send>>,
) -> u64 {
    let stop = Arc::new(AtomicBool::new(false));
    // Writers start only once every reader has completed a section, so that on a loaded
    // machine the readers cannot miss the whole run.
    let started = Arc::new(std::sync::Barrier::new(readers.len() + 1));
    let reader_threads: Vec<_> = readers
        .iter()
        .map(|(domain, long)| {
            let (domain, long, slot, stop, started) = (
                Arc::clone(domain),
                *long,
                Arc::clone(slot),
                Arc::clone(&stop),
                Arc::clone(&started),
            );
            thread::spawn(move || {
                let reader = domain.register();
                slot.read(&reader, 0, long);
                started.wait();
                let mut i = 1;
                // Relaxed: a stop request, nothing to order.
                while !stop.load(Ordering::Relaxed) {
                    slot.read(&reader, i, long);
                    i += 1;
                }
                i
            })
        })
        .collect();
    started.wait();
    let writer_threads: Vec<_> = writers.into_iter().map(thread::spawn).collect();
    for w in writer_threads {
        w.join().expect("writer panicked");
    }
    stop.store(true, Ordering::Relaxed);
    let sections = reader_threads
        .into_iter()
        .map(|r| r.join().expect("reader saw a use after free"))
        .sum();
    assert!(sections > 0);
    sections
}

#[test]
fn synchronize_then_free() {
    let domain = RcuDomain::new();
    let slot = Slot::new();
    let iters = 3_000 * scale();
    let writer = {
        let (domain, slot) = (Arc::clone(&domain), Arc::clone(&slot));
        Box::new(move || {
            for _ in 0..iters {
                let old = slot.replace();
                domain.synchronize();
                // SAFETY: unpublished above, and a full grace period has elapsed.
                unsafe { old.free() };
            }
        })
    };
    run(
        &slot,
        &[(Arc::clone(&domain), false), (Arc::clone(&domain), false)],
        vec![writer],
    );
}

#[test]
fn call_rcu_free_by_reclaimer() {
    let domain = RcuDomain::new();
    let slot = Slot::new();
    let iters = 20_000 * scale();
    let writers = (0..2)
        .map(|_| {
            let (domain, slot) = (Arc::clone(&domain), Arc::clone(&slot));
            Box::new(move || {
                for i in 0..iters {
                    domain.call_rcu(slot.replace().later());
                    if i.is_multiple_of(256) {
                        // Let the reclaimer and the readers in.
                        thread::yield_now();
                    }
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    run(
        &slot,
        &[(Arc::clone(&domain), false), (Arc::clone(&domain), true)],
        writers,
    );
    domain.barrier();
    assert_eq!(domain.pending(), 0);
}

#[test]
fn mixed_synchronize_and_call_rcu() {
    let domain = RcuDomain::new();
    let slot = Slot::new();
    let iters = 5_000 * scale();
    let writers = (0..2u64)
        .map(|w| {
            let (domain, slot) = (Arc::clone(&domain), Arc::clone(&slot));
            Box::new(move || {
                for i in 0..iters {
                    let old = slot.replace();
                    if (i + w).is_multiple_of(3) {
                        domain.synchronize();
                        // SAFETY: unpublished above, and a full grace period has elapsed.
                        unsafe { old.free() };
                    } else {
                        domain.call_rcu(old.later());
                    }
                }
            }) as Box<dyn FnOnce() + Send>
        })
        .collect();
    run(
        &slot,
        &[(Arc::clone(&domain), false), (Arc::clone(&domain), true)],
        writers,
    );
    domain.barrier();
    assert_eq!(domain.pending(), 0);
}

#[test]
fn chained_flavours() {
    let rcu = Rcu::new();
    let slot = Slot::new();
    let iters = 5_000 * scale();
    let writer = {
        let (rcu, slot) = (rcu.clone(), Arc::clone(&slot));
        Box::new(move || {
            for i in 0..iters {
                rcu.call_rcu_tasks_trace_then_rcu(slot.replace().later());
                if i.is_multiple_of(64) {
                    // An outer-map update from user space.
                    rcu.normal.synchronize();
                }
            }
        })
    };
    // Normal readers keep short sections; tasks-trace (sleepable) readers yield and sleep.
    run(
        &slot,
        &[
            (Arc::clone(&rcu.normal), false),
            (Arc::clone(&rcu.tasks_trace), true),
        ],
        vec![writer],
    );
    rcu.barrier();
    assert_eq!(rcu.normal.pending() + rcu.tasks_trace.pending(), 0);
}

#[test]
fn default_domain_thread_local_readers() {
    let slot = Slot::new();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = [Flavour::Normal, Flavour::TasksTrace]
        .into_iter()
        .map(|flavour| {
            let (slot, stop) = (Arc::clone(&slot), Arc::clone(&stop));
            thread::spawn(move || {
                let mut i = 0;
                // Relaxed: a stop request.
                while !stop.load(Ordering::Relaxed) {
                    with_reader(flavour, |r| slot.read(r, i, flavour == Flavour::TasksTrace));
                    i += 1;
                }
            })
        })
        .collect();
    for _ in 0..5_000 * scale() {
        default_rcu().call_rcu_tasks_trace_then_rcu(slot.replace().later());
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader saw a use after free");
    }
    default_rcu().barrier();
}

/// 10^6 `call_rcu`s with a `synchronize` every 1000: the queue never holds more than what a
/// concurrent reclaimer batch and one interval add up to.
#[test]
fn million_call_rcu_memory_bounded() {
    let domain = RcuDomain::new();
    let ran = Arc::new(AtomicU64::new(0));
    let n = 1_000_000 * scale();
    let mut max_pending = 0;
    for i in 0..n {
        let ran = Arc::clone(&ran);
        domain.call_rcu(Box::new(move || {
            // Relaxed: a counter read after `barrier`, which orders it.
            ran.fetch_add(1, Ordering::Relaxed);
        }));
        if i % 1000 == 999 {
            domain.synchronize();
            max_pending = max_pending.max(domain.pending());
        }
    }
    domain.barrier();
    assert_eq!(ran.load(Ordering::Relaxed), n);
    assert!(max_pending <= 2_000, "pending grew to {max_pending}");
}

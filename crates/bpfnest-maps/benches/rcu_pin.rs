// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Read-side and grace-period costs of `bpfnest_maps::rcu` (model: crossbeam-epoch's
//! `benches/pin.rs`).
//!
//! * `read_lock_unlock`: an outermost section, what wrapping one program run costs;
//! * `read_lock_nested`: a section inside an open one (a helper's inner section);
//! * `with_reader_default`: the same through the default domain's thread-local reader;
//! * `with_read_lock_temporary`: a syscall-side section with a one-off registration;
//! * `call_rcu`: queueing a callback (the reclaimer thread runs them);
//! * `synchronize_idle`: a grace period with one registered reader outside any section;
//! * `synchronize_busy_reader`: a grace period while another thread, pinned to the other
//!   core, runs short sections back to back (the outer-map update case).
//!
//! Benches make no assertions; compare numbers from one run.

// Under loom the crate's domains are loom objects that only live inside `loom::model`.
#[cfg(bpfnest_loom)]
fn main() {}

#[cfg(not(bpfnest_loom))]
criterion::criterion_main!(bench::benches);

#[cfg(not(bpfnest_loom))]
mod bench {
    use std::hint::black_box;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::thread;

    use bpfnest_maps::rcu::{with_read_lock, with_reader, Flavour, RcuDomain};
    use criterion::{criterion_group, Criterion};

    pub(super) fn read_side(c: &mut Criterion) {
        let domain = RcuDomain::new();
        let reader = domain.register();
        c.bench_function("read_lock_unlock", |b| {
            b.iter(|| {
                let guard = reader.read_lock();
                black_box(&guard);
            })
        });
        c.bench_function("read_lock_nested", |b| {
            let _outer = reader.read_lock();
            b.iter(|| {
                let guard = reader.read_lock();
                black_box(&guard);
            })
        });
        c.bench_function("with_reader_default", |b| {
            b.iter(|| {
                with_reader(Flavour::Normal, |r| {
                    let guard = r.read_lock();
                    black_box(&guard);
                })
            })
        });
        c.bench_function("with_read_lock_temporary", |b| {
            b.iter(|| with_read_lock(&domain, || black_box(1)))
        });
        c.bench_function("call_rcu", |b| {
            b.iter(|| domain.call_rcu(Box::new(|| {})));
        });
        domain.barrier();
    }

    /// Pins the calling thread to `cpu`, or to every CPU with `None`. Best effort: a machine
    /// with one CPU (or a restricted cpuset) just runs unpinned.
    fn pin(cpu: Option<usize>) {
        // SAFETY: `cpu_set_t` is a plain bit array for which all-zero is the empty set.
        let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
        let n = thread::available_parallelism().map_or(1, |n| n.get());
        for c in 0..n {
            if cpu.is_none_or(|cpu| cpu == c) {
                // SAFETY: `c < n <= CPU_SETSIZE` on every machine this runs on, and `set` is a
                // valid `cpu_set_t`.
                unsafe { libc::CPU_SET(c, &mut set) };
            }
        }
        // SAFETY: pid 0 is the calling thread; `set` is initialized and its size is passed.
        let _ =
            unsafe { libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) };
    }

    pub(super) fn grace_periods(c: &mut Criterion) {
        let domain = RcuDomain::new();
        let idle = domain.register();
        c.bench_function("synchronize_idle", |b| b.iter(|| domain.synchronize()));
        drop(idle);

        let stop = Arc::new(AtomicBool::new(false));
        let busy = {
            let (domain, stop) = (Arc::clone(&domain), Arc::clone(&stop));
            thread::spawn(move || {
                pin(Some(1));
                let reader = domain.register();
                // Relaxed: a stop request, nothing to order.
                while !stop.load(Ordering::Relaxed) {
                    let guard = reader.read_lock();
                    // A short program run: a few dozen cycles inside the section.
                    for _ in 0..16 {
                        std::hint::spin_loop();
                    }
                    drop(guard);
                }
            })
        };
        pin(Some(0));
        c.bench_function("synchronize_busy_reader", |b| {
            b.iter(|| domain.synchronize())
        });
        pin(None);
        stop.store(true, Ordering::Relaxed);
        busy.join().unwrap();
    }

    criterion_group!(benches, read_side, grace_periods);
}

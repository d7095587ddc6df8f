// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Loom models of the RCU reclamation protocol (`src/rcu`). Run with `ci/loom.sh`.
//!
//! Every model publishes an object through an atomic slot, lets readers load it inside a
//! read-side section, and has a writer unpublish and free it by one of the crate's deferral
//! paths. "Freed" is an atomic flag *and* a poisoned `loom::cell::UnsafeCell`: a reader that
//! sees the flag fails its assertion, and a free that is not ordered after the reader's
//! access is reported by loom as a data race even when the flag read happens to be old.
//!
//! The `*_is_caught` models are mutants (a wrong deferral, a missing fence) that must fail:
//! they show the models can see the bugs they are meant to exclude. Mutating the library the
//! same way by hand also makes models here fail: dropping either fence (`F_r` in
//! `read_lock`, `F_w` in `synchronize`), making the snapshot or unlock store Relaxed, making
//! the writer's snapshot load Relaxed, or cutting the callback batch after `F_w`.
//!
//! loom's `fence(SeqCst)` is stronger than C++'s: loom's SeqCst fences also synchronize with
//! one another. The closing fence of a grace period is therefore compiled out under loom
//! (see `Domain::grace_period`), or it would hide a weakened Release/Acquire snapshot pair;
//! the store-buffering arguments these models check need only the C++ fence guarantees.
#![cfg(bpfnest_loom)]

#[cfg(bpfnest_loom)]
mod models {
    use bpfnest_maps::rcu::{Rcu, RcuDomain, RcuGuard};
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use loom::sync::Arc;
    use loom::thread;

    const LIVE: u64 = 0x11fe;
    const POISON: u64 = 0xdead;

    /// One RCU-protected object.
    struct Obj {
        freed: AtomicBool,
        data: UnsafeCell<u64>,
    }

    // SAFETY: `data` is shared on purpose: the RCU protocol under test must order the
    // reader's access before the poisoning write, and loom reports any access it does not.
    unsafe impl Sync for Obj {}

    impl Obj {
        fn new() -> Obj {
            Obj {
                freed: AtomicBool::new(false),
                data: UnsafeCell::new(LIVE),
            }
        }
    }

    /// A one-slot "map": `cur` indexes the published object; the writer replaces 0 by 1.
    struct Slot {
        cur: AtomicUsize,
        objs: [Obj; 2],
    }

    impl Slot {
        fn new() -> Arc<Slot> {
            Arc::new(Slot {
                cur: AtomicUsize::new(0),
                objs: [Obj::new(), Obj::new()],
            })
        }

        /// `rcu_dereference` and a use of the object; the guard witnesses the section.
        fn read(&self, _guard: &RcuGuard<'_>) {
            // Acquire: rcu_dereference; pairs with the AcqRel swap in `replace`.
            let obj = &self.objs[self.cur.load(Ordering::Acquire)];
            // Relaxed: loom may return any store not ordered before this load, so an
            // unprotected free shows up here.
            assert!(
                !obj.freed.load(Ordering::Relaxed),
                "use after free: reader saw a freed object"
            );
            // SAFETY: the cell lives as long as `self`; loom checks that this read is ordered
            // against the poisoning write in `free`.
            let v = obj.data.with(|p| unsafe { *p });
            assert_eq!(v, LIVE, "use after free: reader saw poison");
        }

        /// Unpublishes object 0 (publishing 1) and returns the index to free.
        fn replace(&self) -> usize {
            // AcqRel: Release publishes object 1 to later readers (rcu_assign_pointer).
            self.cur.swap(1, Ordering::AcqRel)
        }

        fn free(&self, i: usize) {
            self.objs[i].freed.store(true, Ordering::Relaxed);
            self.objs[i].data.with_mut(|p| {
                // SAFETY: `p` is the cell's own pointer; loom reports a racing reader.
                unsafe { *p = POISON }
            });
        }

        fn is_freed(&self, i: usize) -> bool {
            self.objs[i].freed.load(Ordering::Relaxed)
        }
    }

    fn free_later(slot: &Arc<Slot>, i: usize) -> Box<dyn FnOnce() + Send + 'static> {
        let slot = Arc::clone(slot);
        Box::new(move || slot.free(i))
    }

    /// (1) Grace-period detection: a writer that swaps the pointer, calls `synchronize` and
    /// frees never frees under a reader that loaded the old pointer. The reader registers
    /// concurrently with the grace period and nests its section.
    #[test]
    fn synchronize_waits_for_reader() {
        loom::model(|| {
            let domain = RcuDomain::new();
            let slot = Slot::new();
            let reader = {
                let (domain, slot) = (Arc::clone(&domain), Arc::clone(&slot));
                thread::spawn(move || {
                    let r = domain.register();
                    let outer = r.read_lock();
                    {
                        let inner = r.read_lock();
                        slot.read(&inner);
                    }
                    // Still inside the outer section: the object must still be live.
                    slot.read(&outer);
                })
            };
            let old = slot.replace();
            domain.synchronize();
            slot.free(old);
            reader.join().unwrap();
        });
    }

    /// (1b) Two consecutive sections of one reader against one grace period: the writer may
    /// see the first section's snapshot and then the second's (never the 0 between); the
    /// Release snapshot store must still order the first section before the free.
    #[test]
    fn synchronize_orders_sections_it_skips_over() {
        loom::model(|| {
            let domain = RcuDomain::new();
            let slot = Slot::new();
            let r_domain = Arc::clone(&domain);
            let r_slot = Arc::clone(&slot);
            let reader = thread::spawn(move || {
                let r = r_domain.register();
                for _ in 0..2 {
                    let g = r.read_lock();
                    r_slot.read(&g);
                }
            });
            let old = slot.replace();
            domain.synchronize();
            slot.free(old);
            reader.join().unwrap();
        });
    }

    /// (2) `call_rcu` deferral: the callback never runs while a pre-existing reader is
    /// inside, whichever thread runs the grace period that releases it (here a third thread
    /// may, concurrently with the writer's own `barrier`).
    #[test]
    fn call_rcu_waits_for_reader() {
        loom::model(|| {
            let domain = RcuDomain::new();
            let slot = Slot::new();
            let reader = {
                let (domain, slot) = (Arc::clone(&domain), Arc::clone(&slot));
                thread::spawn(move || {
                    let r = domain.register();
                    let g = r.read_lock();
                    slot.read(&g);
                })
            };
            let gp = {
                let domain = Arc::clone(&domain);
                thread::spawn(move || domain.synchronize())
            };
            let old = slot.replace();
            domain.call_rcu(free_later(&slot, old));
            domain.barrier();
            assert!(
                slot.is_freed(old),
                "barrier returned before the callback ran"
            );
            assert_eq!(domain.pending(), 0);
            reader.join().unwrap();
            gp.join().unwrap();
        });
    }

    /// (2b) `barrier` waits for callbacks cut into another thread's grace period, which may
    /// finish after the barrier's own one.
    #[test]
    fn barrier_waits_for_concurrent_batch() {
        loom::model(|| {
            let domain = RcuDomain::new();
            let slot = Slot::new();
            let queued = Arc::new(AtomicBool::new(false));
            let other = {
                let (domain, slot, queued) =
                    (Arc::clone(&domain), Arc::clone(&slot), Arc::clone(&queued));
                thread::spawn(move || {
                    domain.call_rcu(free_later(&slot, 0));
                    // Release: pairs with the Acquire below; the call_rcu happened before it.
                    queued.store(true, Ordering::Release);
                    domain.synchronize();
                })
            };
            // Acquire: pairs with the Release above.
            if queued.load(Ordering::Acquire) {
                domain.barrier();
                assert!(
                    slot.is_freed(0),
                    "barrier missed a callback queued before it"
                );
            }
            other.join().unwrap();
        });
    }

    /// (3) Two flavours chained: with `call_rcu_tasks_trace_then_rcu`, a reader in either
    /// flavour keeps the object alive.
    #[test]
    fn chained_deferral_covers_both_flavours() {
        loom::model(|| {
            let rcu = Rcu::new();
            let slot = Slot::new();
            let readers: Vec<_> = [true, false]
                .into_iter()
                .map(|sleepable| {
                    let (rcu, slot) = (rcu.clone(), Arc::clone(&slot));
                    thread::spawn(move || {
                        let domain = if sleepable {
                            &rcu.tasks_trace
                        } else {
                            &rcu.normal
                        };
                        let r = domain.register();
                        let g = r.read_lock();
                        slot.read(&g);
                    })
                })
                .collect();
            let old = slot.replace();
            rcu.call_rcu_tasks_trace_then_rcu(free_later(&slot, old));
            rcu.barrier();
            assert!(slot.is_freed(old));
            for r in readers {
                r.join().unwrap();
            }
        });
    }

    /// (3 mutant) Normal-only deferral does not protect a tasks-trace reader.
    #[test]
    #[should_panic]
    fn normal_only_deferral_under_sleepable_reader_is_caught() {
        loom::model(|| {
            let rcu = Rcu::new();
            let slot = Slot::new();
            let reader = {
                let (rcu, slot) = (rcu.clone(), Arc::clone(&slot));
                thread::spawn(move || {
                    let r = rcu.tasks_trace.register();
                    let g = r.read_lock();
                    slot.read(&g);
                })
            };
            let old = slot.replace();
            rcu.normal.call_rcu(free_later(&slot, old));
            // Only the normal domain has work; a tasks-trace grace period here would hide the bug.
            rcu.normal.barrier();
            reader.join().unwrap();
        });
    }

    /// (4) The sleepable refcount decision of `bpf_map_fd_put_ptr` (map_in_map.c): removing
    /// an inner object from an outer map picks chained deferral if the outer map's
    /// `sleepable_refcnt` is non-zero, normal-only deferral otherwise.
    ///
    /// Why reading the count is safe, and what the model keeps of the kernel's ordering:
    /// the kernel increments `sleepable_refcnt` while *verifying* a sleepable program
    /// (`__add_used_map`), before `BPF_PROG_LOAD` returns the fd through which alone the
    /// program can be attached and run. So the increment happens before every run of the
    /// program — the loader thread below increments and then publishes the program with a
    /// Release store, and the runner only runs it after an Acquire load sees that. A run
    /// begins with the tasks-trace `read_lock`, whose SeqCst fence (F_r) follows the
    /// increment; the writer executes a SeqCst fence between unpublishing the inner object
    /// and reading the count. This is the store-buffering shape again: either the writer
    /// reads the increment (and chains), or the run's load of the slot follows the
    /// writer's fence in the SeqCst order and sees the new object. No outcome lets a
    /// sleepable run see the old object while the writer picked normal-only deferral.
    /// (The kernel gets the writer's barrier from the fully ordered `xchg` that replaces the
    /// slot; a Rust SeqCst RMW is not a fence for the relaxed load after it, hence the
    /// explicit fence.)
    #[test]
    fn sleepable_refcnt_picks_deferral() {
        loom::model(|| sleepable_refcnt_model(true, true));
    }

    /// (4 mutant) Without the writer's fence, the count can be read as 0 while a sleepable
    /// run still loads the old object.
    #[test]
    #[should_panic]
    fn sleepable_refcnt_without_writer_fence_is_caught() {
        loom::model(|| sleepable_refcnt_model(false, true));
    }

    /// (4 mutant) Ignoring the count (always normal-only) is a use-after-free.
    #[test]
    #[should_panic]
    fn sleepable_refcnt_ignored_is_caught() {
        loom::model(|| sleepable_refcnt_model(true, false));
    }

    fn sleepable_refcnt_model(writer_fence: bool, consult_refcnt: bool) {
        let rcu = Rcu::new();
        let outer = Slot::new();
        let sleepable_refcnt = Arc::new(AtomicU64::new(0));
        let prog_loaded = Arc::new(AtomicBool::new(false));

        let loader = {
            let (refcnt, loaded) = (Arc::clone(&sleepable_refcnt), Arc::clone(&prog_loaded));
            thread::spawn(move || {
                // Relaxed: the verifier's atomic64_inc; ordered before any run by the
                // publication below.
                refcnt.fetch_add(1, Ordering::Relaxed);
                // Release: pairs with the Acquire in the runner (the program fd and attach).
                loaded.store(true, Ordering::Release);
            })
        };
        let runner = {
            let (rcu, outer, loaded) = (rcu.clone(), Arc::clone(&outer), Arc::clone(&prog_loaded));
            thread::spawn(move || {
                let r = rcu.tasks_trace.register();
                // Acquire: pairs with the Release in the loader.
                if loaded.load(Ordering::Acquire) {
                    let g = r.read_lock();
                    outer.read(&g);
                }
            })
        };

        let old = outer.replace();
        if writer_fence {
            // SeqCst: store-buffering partner of F_r in the run's `read_lock`.
            fence(Ordering::SeqCst);
        }
        // Relaxed: ordered by the fence above (the decision is what matters, not a payload).
        let sleepable = consult_refcnt && sleepable_refcnt.load(Ordering::Relaxed) > 0;
        // Run grace periods only on the domains that have callbacks, as the reclaimers
        // would: an extra tasks-trace grace period would mask a wrong normal-only choice.
        if sleepable {
            rcu.call_rcu_tasks_trace_then_rcu(free_later(&outer, old));
            rcu.barrier();
        } else {
            rcu.normal.call_rcu(free_later(&outer, old));
            rcu.normal.barrier();
        }
        loader.join().unwrap();
        runner.join().unwrap();
    }
}

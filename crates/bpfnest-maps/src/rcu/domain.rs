// SPDX-License-Identifier: Apache-2.0 OR MIT
//! One RCU domain: the grace-period counter, the reader registry and `synchronize`.
//!
//! The algorithm and its correctness argument are in the parent module's docs; the names
//! `F_w` (first writer fence), `F_r` (reader fence) and `t` (new grace-period number) used
//! in comments here come from there.

use core::fmt;

use crossbeam_utils::CachePadded;

use super::defer::Deferred;
use super::guard::RcuReader;
use crate::primitive::{fence, thread, Arc, AtomicU64, Mutex, MutexGuard, Ordering};

/// The value of [`Domain::gp`] before the first grace period. Snapshots are values of
/// `gp`, so starting above 0 keeps 0 free to mean "not in a read-side section".
pub(super) const FIRST_GP: u64 = 1;

/// One reader's shared state, on its own cache line so that a reader's stores never
/// contend with another reader's.
pub(super) struct ReaderRecord {
    /// 0 while the owning reader is outside any read-side section; otherwise the value of
    /// [`Domain::gp`] loaded by the outermost `read_lock` of the current section.
    /// Written only by the owning thread (and by `RcuReader::drop`, which that thread
    /// runs); read by writers in [`RcuDomain::synchronize`].
    pub(super) snapshot: AtomicU64,
    /// The thread that registered the record, to catch `synchronize` inside its own section.
    owner: thread::ThreadId,
}

impl ReaderRecord {
    fn new() -> ReaderRecord {
        ReaderRecord {
            snapshot: AtomicU64::new(0),
            owner: thread::current().id(),
        }
    }
}

/// State that only the thread running a grace period touches.
struct WriterState {
    /// Reused copy of the registry for one grace period's wait, so waiting does not hold
    /// the registry lock. Empty between grace periods.
    scratch: Vec<Arc<CachePadded<ReaderRecord>>>,
}

/// One RCU flavour: readers register with it, writers wait for its grace periods and queue
/// callbacks on it. An explicit object, like crossbeam-epoch's `Collector`; the
/// process-wide pair lives in [`super::default`].
///
/// A handle to the shared state, which the domain's readers also hold: callbacks still
/// queued run when the last of the domain and its readers is dropped (then no section can
/// exist). The extra level lets `register` take `&self` even under loom, whose `Arc` cannot
/// be a method receiver.
pub struct RcuDomain {
    domain: Arc<Domain>,
}

/// The state of one domain, shared by its [`RcuDomain`], its readers and (weakly) its
/// reclaimer thread.
pub(super) struct Domain {
    /// Grace-period counter: starts at [`FIRST_GP`] and grows by one per grace period,
    /// only under `writer`. Readers load it on every outermost `read_lock`, so it has its
    /// own cache line, written once per grace period.
    gp: CachePadded<AtomicU64>,
    /// Serializes grace periods: at most one thread bumps `gp` and waits at a time.
    writer: Mutex<WriterState>,
    /// Every live [`RcuReader`]'s record. A record is added before its reader can enter a
    /// section and removed only when the reader is dropped, outside any section.
    registry: Mutex<Vec<Arc<CachePadded<ReaderRecord>>>>,
    /// Callbacks waiting for a grace period, the log of completed batches, the reclaimer.
    pub(super) defer: Deferred,
}

/// Locks `m`, ignoring poisoning: no user code runs while this module holds a lock, so a
/// poisoned lock only means one of our own assertions fired, and the protected state is
/// still consistent.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Domain {
    fn new() -> Arc<Domain> {
        #[cfg(not(bpfnest_loom))]
        {
            Arc::new_cyclic(|weak| Domain::with_deferred(Deferred::new(weak.clone())))
        }
        #[cfg(bpfnest_loom)]
        {
            Arc::new(Domain::with_deferred(Deferred::new()))
        }
    }

    fn with_deferred(defer: Deferred) -> Domain {
        Domain {
            gp: CachePadded::new(AtomicU64::new(FIRST_GP)),
            writer: Mutex::new(WriterState {
                scratch: Vec::new(),
            }),
            registry: Mutex::new(Vec::new()),
            defer,
        }
    }

    fn register(this: &Arc<Domain>) -> RcuReader {
        let record = Arc::new(CachePadded::new(ReaderRecord::new()));
        // The registry mutex orders this insertion against every grace period's copy of the
        // registry: a grace period that misses the record copied the registry before this
        // push, hence before any section of this reader began and after that grace
        // period's `F_w`, so every such section sees what was unpublished before it.
        lock(&this.registry).push(Arc::clone(&record));
        RcuReader::new(Arc::clone(this), record)
    }

    /// Removes `record` from the registry; called by `RcuReader::drop`.
    pub(super) fn unregister(&self, record: &Arc<CachePadded<ReaderRecord>>) {
        let mut registry = lock(&self.registry);
        if let Some(i) = registry.iter().position(|r| Arc::ptr_eq(r, record)) {
            registry.swap_remove(i);
        }
    }

    /// The grace-period counter, loaded by `RcuReader::read_lock`.
    #[inline]
    pub(super) fn gp(&self) -> &AtomicU64 {
        &self.gp
    }

    pub(super) fn synchronize(&self) {
        self.grace_period();
    }

    /// Runs one grace period and its batch; returns the grace period's number `t`.
    pub(super) fn grace_period(&self) -> u64 {
        if cfg!(debug_assertions) {
            self.assert_not_reading();
        }
        let (target, batch) = {
            let mut writer = lock(&self.writer);
            // Cut before `F_w`: each cut callback was queued under the waiting-list mutex,
            // after its caller's unpublish, so that unpublish happens before `F_w`.
            let batch = self.defer.take_waiting();
            // SeqCst (F_w): store-buffering partner of the SeqCst fence in
            // `RcuReader::read_lock` (F_r); its release half also pairs with F_r's acquire
            // half for a reader whose Relaxed load of `gp` reads the bump below.
            fence(Ordering::SeqCst);
            // Relaxed: ordered by F_w (above) for readers; writers are serialized by `writer`.
            let target = self.gp.fetch_add(1, Ordering::Relaxed) + 1;
            // Copying after F_w is enough: see `register`.
            writer.scratch.extend(lock(&self.registry).iter().cloned());
            for record in writer.scratch.drain(..) {
                wait_for_reader(&record, target);
            }
            // SeqCst: closes the grace period, as liburcu's smp_mb() after its wait. The C++
            // argument does not need it (every value that ended a wait was read by an Acquire
            // load from a Release store, or is a record's initial 0), and it costs one fence
            // per grace period, not per read. It is left out under loom because loom's SeqCst
            // fences synchronize with one another (stronger than C++): there it would supply
            // the happens-before that the Release/Acquire snapshot pairs must provide, and the
            // models could no longer catch a weakened pair. Removing a fence only adds
            // executions, so the loom-checked program is the weaker one.
            #[cfg(not(bpfnest_loom))]
            fence(Ordering::SeqCst);
            (target, batch)
        };
        self.defer.run_batch(target, batch);
        target
    }

    /// Panics if the calling thread is inside a read-side section of this domain.
    fn assert_not_reading(&self) {
        let me = thread::current().id();
        let reading = lock(&self.registry)
            .iter()
            // Relaxed: only our own records matter, and a thread always reads its own
            // latest store.
            .any(|r| r.owner == me && r.snapshot.load(Ordering::Relaxed) != 0);
        assert!(
            !reading,
            "RcuDomain::synchronize/barrier called inside a read-side section of the same \
             domain on the same thread: it would wait for itself forever"
        );
    }

    pub(super) fn barrier(&self) {
        self.defer.assert_not_in_callback();
        let target = self.grace_period();
        self.defer.wait_completed(target);
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // Every reader holds an `Arc` to the domain, so none exists any more: each queued
        // callback is safe to run now. The refcount drop that got us here orders every
        // reader's sections before this point.
        self.defer.shutdown();
    }
}

impl RcuDomain {
    /// Creates a domain with no readers and no callbacks.
    pub fn new() -> Arc<RcuDomain> {
        Arc::new(RcuDomain {
            domain: Domain::new(),
        })
    }

    /// Registers the calling thread as a reader of this domain.
    ///
    /// The handle is `!Send` and `!Sync`: its record is written by one thread only. Dropping
    /// it unregisters. A thread may hold several readers of the same domain; each is an
    /// independent registration. Threads that read often should keep their reader (see
    /// [`super::with_reader`]): registering takes a lock and allocates.
    pub fn register(&self) -> RcuReader {
        Domain::register(&self.domain)
    }

    pub(super) fn state(&self) -> &Arc<Domain> {
        &self.domain
    }

    /// Waits until every read-side section of this domain that began before this call has
    /// ended, then runs the callbacks queued before this call that are not already being run
    /// by another grace period (`synchronize_rcu()` followed by callback processing).
    ///
    /// Takes well under a microsecond with no reader inside a section; otherwise it waits as
    /// long as the oldest such section, spinning, then yielding, then sleeping up to 1 ms at
    /// a time (for sleepable sections).
    ///
    /// # Deadlock
    ///
    /// Calling this from inside a read-side section of this domain on the same thread never
    /// returns: it waits for the caller's own section. Debug builds panic instead. It may be
    /// called inside a section of a *different* domain, and from an RCU callback.
    pub fn synchronize(&self) {
        self.domain.synchronize();
    }

    /// Queues `f` to run after a grace period of this domain.
    ///
    /// `f` runs on whichever thread completes a grace period that starts after this call:
    /// a caller of [`synchronize`](Self::synchronize) or [`barrier`](Self::barrier), or the
    /// domain's reclaimer thread (spawned on first use, outside loom), so callbacks run
    /// even if nobody calls `synchronize`. If the domain is dropped first, `f` runs during
    /// the drop. `f` may call `call_rcu` or `synchronize` on any domain, but must not call
    /// `barrier` on this one (it would wait for its own batch). A panicking callback
    /// propagates to the thread running it; the rest of its batch is dropped unrun.
    pub fn call_rcu(&self, f: Box<dyn FnOnce() + Send + 'static>) {
        self.domain.defer.enqueue(f);
    }

    /// Waits until every callback queued on this domain before this call has run
    /// (`rcu_barrier()`). Runs a grace period itself, so the same deadlock rule as
    /// [`synchronize`](Self::synchronize) applies, and it must not be called from one of
    /// this domain's callbacks.
    pub fn barrier(&self) {
        self.domain.barrier();
    }

    /// Number of callbacks queued and not yet run (for tests and memory accounting).
    ///
    /// A callback stops counting once it has returned.
    pub fn pending(&self) -> usize {
        self.domain.defer.pending()
    }
}

impl fmt::Debug for RcuDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.domain;
        f.debug_struct("RcuDomain")
            // Relaxed: a diagnostic value.
            .field("gp", &d.gp.load(Ordering::Relaxed))
            .field("readers", &lock(&d.registry).len())
            .field("pending", &d.defer.pending())
            .finish()
    }
}

/// Waits until `record` shows no section that began before grace period `target` started.
fn wait_for_reader(record: &ReaderRecord, target: u64) {
    let mut backoff = GpBackoff::default();
    loop {
        // Acquire: pairs with the Release stores in `RcuReader::publish_snapshot` and
        // `RcuGuard::drop` (and `RcuReader::drop`): reading a value the reader stored after
        // ending a section makes that section happen-before our return.
        let snapshot = record.snapshot.load(Ordering::Acquire);
        if snapshot == 0 || snapshot >= target {
            return;
        }
        backoff.snooze();
    }
}

/// Spin, then yield, then sleep with doubling, capped, durations: short non-sleepable
/// sections end within the spin phase (microsecond grace periods), while a sleepable
/// section that blocks for milliseconds does not keep a core busy.
#[derive(Default)]
struct GpBackoff {
    step: u32,
}

impl GpBackoff {
    /// Steps below this spin `2^step` times each.
    #[cfg(not(bpfnest_loom))]
    const SPIN_STEPS: u32 = 7;
    /// Steps below this (and at or above `SPIN_STEPS`) yield the CPU once each.
    #[cfg(not(bpfnest_loom))]
    const YIELD_STEPS: u32 = Self::SPIN_STEPS + 64;
    /// Sleeps start at 16 µs and double up to 2^10 µs.
    #[cfg(not(bpfnest_loom))]
    const MAX_SLEEP_SHIFT: u32 = 10;

    fn snooze(&mut self) {
        #[cfg(bpfnest_loom)]
        {
            // loom needs every spin to yield so it can schedule the thread being waited for.
            thread::yield_now();
        }
        #[cfg(not(bpfnest_loom))]
        {
            if self.step < Self::SPIN_STEPS {
                for _ in 0..1u32 << self.step {
                    core::hint::spin_loop();
                }
            } else if self.step < Self::YIELD_STEPS {
                thread::yield_now();
            } else {
                let shift = (4 + self.step - Self::YIELD_STEPS).min(Self::MAX_SLEEP_SHIFT);
                thread::sleep(std::time::Duration::from_micros(1 << shift));
            }
        }
        self.step = self.step.saturating_add(1);
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::primitive::AtomicBool;

    #[test]
    fn gp_advances_once_per_synchronize() {
        let d = RcuDomain::new();
        let before = d.domain.gp().load(Ordering::Relaxed);
        d.synchronize();
        d.synchronize();
        assert_eq!(d.domain.gp().load(Ordering::Relaxed), before + 2);
    }

    #[test]
    fn nested_sections_publish_once() {
        let d = RcuDomain::new();
        let r = d.register();
        let outer = r.read_lock();
        let snap = r.record().snapshot.load(Ordering::Relaxed);
        assert_eq!(snap, d.domain.gp().load(Ordering::Relaxed));
        {
            let _inner = r.read_lock();
            assert_eq!(r.record().snapshot.load(Ordering::Relaxed), snap);
        }
        assert_eq!(
            r.record().snapshot.load(Ordering::Relaxed),
            snap,
            "inner unlock must not end the section"
        );
        drop(outer);
        assert_eq!(r.record().snapshot.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn synchronize_waits_for_preexisting_section() {
        let d = RcuDomain::new();
        let entered = Arc::new(AtomicBool::new(false));
        let left = Arc::new(AtomicBool::new(false));
        let t = {
            let (d, entered, left) = (Arc::clone(&d), Arc::clone(&entered), Arc::clone(&left));
            thread::spawn(move || {
                let r = d.register();
                let g = r.read_lock();
                entered.store(true, Ordering::SeqCst);
                thread::sleep(Duration::from_millis(30));
                left.store(true, Ordering::SeqCst);
                drop(g);
            })
        };
        while !entered.load(Ordering::SeqCst) {
            thread::yield_now();
        }
        let start = Instant::now();
        d.synchronize();
        assert!(
            left.load(Ordering::SeqCst),
            "synchronize returned inside a pre-existing section"
        );
        assert!(start.elapsed() >= Duration::from_millis(10));
        t.join().unwrap();
    }

    #[test]
    fn synchronize_ignores_idle_and_other_domain_readers() {
        let d = RcuDomain::new();
        let other = RcuDomain::new();
        let idle = d.register();
        let r_other = other.register();
        let _g = r_other.read_lock();
        let start = Instant::now();
        d.synchronize();
        assert!(start.elapsed() < Duration::from_secs(1));
        drop(idle);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "would wait for itself")]
    fn synchronize_inside_own_section_panics_in_debug() {
        let d = RcuDomain::new();
        let r = d.register();
        let _g = r.read_lock();
        d.synchronize();
    }

    #[test]
    fn dropped_reader_leaves_registry() {
        let d = RcuDomain::new();
        let r = d.register();
        assert_eq!(lock(&d.domain.registry).len(), 1);
        drop(r);
        assert_eq!(lock(&d.domain.registry).len(), 0);
    }

    #[test]
    fn leaked_guard_released_by_reader_drop() {
        let d = RcuDomain::new();
        let r = d.register();
        core::mem::forget(r.read_lock());
        drop(r);
        d.synchronize();
    }
}

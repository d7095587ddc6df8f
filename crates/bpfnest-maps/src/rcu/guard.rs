// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The read side: per-thread registrations and the guards that witness a read-side section.
//!
//! This is the code every program run goes through, so the outermost `read_lock` is three
//! instructions of substance (load `gp`, store the snapshot, fence) and the outermost unlock
//! one store; nested sections touch only a thread-local `Cell`.

use core::cell::Cell;
use core::fmt;
use core::marker::PhantomData;

use crossbeam_utils::CachePadded;

use super::domain::{Domain, RcuDomain, ReaderRecord};
use crate::primitive::{fence, Arc, Ordering};

/// A thread's registration with one [`RcuDomain`]; the `rcu_read_lock()` entry point.
///
/// `!Send` and `!Sync`: the record behind it is written by exactly one thread, which is
/// what lets the nesting count be a plain `Cell` and the snapshot stores be uncontended.
/// Dropping it unregisters the thread. Keep one per thread and domain (for the default
/// domains, [`super::with_reader`] does this).
pub struct RcuReader {
    /// Keeps the domain's state alive while this thread may read under it; its `Drop` runs
    /// leftover callbacks on the strength of this.
    domain: Arc<Domain>,
    /// Shared with the domain's registry. Its snapshot is non-zero exactly while
    /// `nesting > 0` (except transiently inside `read_lock`/guard drop).
    record: Arc<CachePadded<ReaderRecord>>,
    /// Number of live [`RcuGuard`]s of this reader; only the 0 -> 1 and 1 -> 0 transitions
    /// touch `record`.
    nesting: Cell<usize>,
    /// `!Send`: moving a reader to another thread would let two threads share a record.
    _not_send: PhantomData<*const ()>,
}

impl RcuReader {
    pub(super) fn new(domain: Arc<Domain>, record: Arc<CachePadded<ReaderRecord>>) -> RcuReader {
        RcuReader {
            domain,
            record,
            nesting: Cell::new(0),
            _not_send: PhantomData,
        }
    }

    /// Enters a read-side section (`rcu_read_lock()`); dropping the guard leaves it.
    ///
    /// Sections nest; only the outermost one publishes the thread's epoch snapshot, and the
    /// section lasts until the outermost guard is dropped. Any object reachable through an
    /// RCU-protected pointer loaded during the section stays valid until then: a concurrent
    /// [`RcuDomain::synchronize`] waits, and [`RcuDomain::call_rcu`] callbacks are deferred.
    /// The section may block or sleep (that only delays grace periods), but it must not call
    /// `synchronize` or `barrier` of the same domain.
    ///
    /// Leaking the guard (`mem::forget`) leaves the section open until the reader is dropped:
    /// every grace period of the domain in between waits for it.
    #[inline]
    pub fn read_lock(&self) -> RcuGuard<'_> {
        let depth = self.nesting.get();
        if depth == 0 {
            self.publish_snapshot();
        }
        self.nesting.set(depth + 1);
        RcuGuard {
            reader: self,
            _not_send: PhantomData,
        }
    }

    #[inline]
    fn publish_snapshot(&self) {
        // Relaxed: a stale value is only conservative (an older snapshot is waited for
        // longer); a value that includes a writer's bump is ordered by the fence below.
        let epoch = self.domain.gp().load(Ordering::Relaxed);
        // Release: pairs with the Acquire load in `wait_for_reader`. A writer that skips
        // from an old section's snapshot straight to this one (missing the 0 in between)
        // must still see the old section as finished.
        self.record.snapshot.store(epoch, Ordering::Release);
        // SeqCst (F_r): store-buffering partner of F_w in `Domain::grace_period`. Either
        // the writer sees the snapshot above, or every load in this section sees what was
        // unpublished before the writer's fence.
        fence(Ordering::SeqCst);
    }

    /// Whether this reader is registered with `domain`.
    pub fn belongs_to(&self, domain: &RcuDomain) -> bool {
        Arc::ptr_eq(&self.domain, domain.state())
    }

    /// Whether this reader is inside a read-side section (its own; other readers of the
    /// same thread are not considered).
    pub fn is_reading(&self) -> bool {
        self.nesting.get() > 0
    }

    #[cfg(all(test, not(bpfnest_loom)))]
    pub(super) fn record(&self) -> &ReaderRecord {
        &self.record
    }
}

impl Drop for RcuReader {
    fn drop(&mut self) {
        // Only reachable with a section open if a guard was leaked; no reference obtained
        // under it can outlive the guard's borrow of `self`, so ending the section is sound.
        if self.nesting.get() != 0 {
            // Release: pairs with the Acquire load in `wait_for_reader`, which may be
            // waiting for the leaked section right now.
            self.record.snapshot.store(0, Ordering::Release);
        }
        self.domain.unregister(&self.record);
    }
}

impl fmt::Debug for RcuReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuReader")
            .field("nesting", &self.nesting.get())
            .finish_non_exhaustive()
    }
}

/// A read-side section of one [`RcuReader`]; dropping it is `rcu_read_unlock()`.
///
/// This is the witness type: APIs that hand out references to RCU-protected objects take a
/// `&RcuGuard` and tie the references' lifetime to it, so a reference cannot outlive the
/// section that keeps its object alive. `!Send`, like the reader it borrows.
pub struct RcuGuard<'a> {
    reader: &'a RcuReader,
    /// `!Send` and `!Sync` explicitly, not only through `&RcuReader`.
    _not_send: PhantomData<*const ()>,
}

impl RcuGuard<'_> {
    /// Whether this section holds back the grace periods of `domain` (for checking that a
    /// guard is of the flavour an API expects).
    pub fn belongs_to(&self, domain: &RcuDomain) -> bool {
        self.reader.belongs_to(domain)
    }
}

impl Drop for RcuGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let depth = self.reader.nesting.get() - 1;
        self.reader.nesting.set(depth);
        if depth == 0 {
            // Release: pairs with the Acquire load in `wait_for_reader`: every access made
            // in the section happens before the grace period that sees this 0 ends.
            self.reader.record.snapshot.store(0, Ordering::Release);
        }
    }
}

impl fmt::Debug for RcuGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RcuGuard")
            .field("nesting", &self.reader.nesting.get())
            .finish()
    }
}

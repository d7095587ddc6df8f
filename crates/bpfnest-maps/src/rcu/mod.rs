// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Userspace RCU: the read-side sections and grace periods that map-in-map and every
//! deferred free in this crate rely on.
//!
//! The kernel protects BPF program runs with two RCU flavours. Non-sleepable programs run
//! inside `rcu_read_lock()`; sleepable ones (`.s` sections) run inside
//! `rcu_read_lock_trace()`. Removing an inner map from an outer map defers its free past the
//! grace period of one or both flavours (`bpf_map_fd_put_ptr` in `kernel/bpf/map_in_map.c`,
//! `bpf_map_put` and `bpf_map_free_mult_rcu_gp` in `kernel/bpf/syscall.c`). bpfnest mirrors
//! this with one [`RcuDomain`] per flavour, bundled as [`Rcu`].
//!
//! crossbeam-epoch was not used because it has no synchronous wait: a user-side update of
//! an outer map has to return only once no program run can still see the old inner map
//! (the kernel's `synchronize_rcu()`), and it should take microseconds, not the kernel's
//! ~10 ms. What follows is a small RCU of the liburcu "memb" shape: per-thread reader
//! records holding an epoch snapshot, and a writer that waits for old snapshots to clear.
//!
//! # Layout
//!
//! ```text
//!  Arc<RcuDomain> --+
//!                   v
//!  Domain (shared state)                          RcuReader (one per thread and domain, !Send)
//!  +-------------------------------+              +-----------------------------+
//!  | gp: u64 (grace-period counter)|<--- loads ---| domain: Arc<Domain>         |
//!  | registry: [Arc<ReaderRecord>] |--+           | nesting: Cell<usize>        |
//!  | writer: Mutex (one grace      |  |           | record: Arc<ReaderRecord> --+--+
//!  |         period at a time)     |  |           +-----------------------------+  |
//!  | defer: waiting callbacks,     |  |                                            |
//!  |        completed-GP log,      |  +--> ReaderRecord (own cache line) <---------+
//!  |        reclaimer thread       |       | snapshot: AtomicU64  (0 = not reading)
//!  +-------------------------------+       | owner: ThreadId
//! ```
//!
//! # Read side
//!
//! [`RcuReader::read_lock`] is nestable; only the outermost call touches shared memory. It
//! loads `gp`, stores it into the reader's record as its *snapshot* (a Release store), then
//! executes a SeqCst fence. The outermost guard drop stores 0 (Release). Nothing else runs
//! on the read side: no RMW, no shared-line write, so an uncontended lock/unlock pair costs
//! one fence plus two stores to a line only this thread writes.
//!
//! # Grace periods
//!
//! [`RcuDomain::synchronize`] takes the writer mutex, cuts the batch of waiting callbacks,
//! executes a SeqCst fence (`F_w`), bumps `gp` to a new value `t`, then, for every
//! registered record, waits (spin, then yield, then short sleeps) until it reads a snapshot
//! that is 0 or `>= t`, with Acquire loads. A second SeqCst fence ends the wait; the batch is
//! then run outside every lock.
//!
//! Why this is enough. Let an updater unpublish a pointer `p` (any atomic store) and then
//! call `synchronize` (or `call_rcu`, whose callback is cut into a batch under the same
//! mutex the updater released, so the unpublish happens before `F_w` either way). Take a
//! read-side section `R` that loaded `p`. Its outermost `read_lock` made a snapshot store
//! `S` of some value `e`, then its fence `F_r`, then the load of `p`. `F_w` and `F_r` are
//! both in the single total order of SeqCst operations:
//!
//! * If `F_w` came first, `R`'s load of `p`, which follows `F_r`, must see the unpublish
//!   (the store-buffering guarantee of two SeqCst fences), so `R` could not have loaded
//!   `p`. Contradiction; this case does not arise.
//! * So `F_r` came first, and the writer's snapshot load, which follows `F_w`, sees `S` or
//!   a later store of the same record. `e < t` (had `R` read the bumped `gp`, `F_w`'s
//!   release half would have synchronized with `F_r`'s acquire half, putting `F_w` first),
//!   so the writer keeps waiting while it sees `e`. Every later value in the record is a
//!   Release store by the reader made after `R` ended: 0 from the unlock, or the snapshot
//!   of a newer section. The Acquire load that reads it synchronizes with it, so all of
//!   `R`'s accesses happen before `synchronize` returns and before the batch runs.
//!
//! Sections that begin after `F_w` may carry a snapshot `>= t` (they read the bump) or a
//! stale one (they loaded `gp` just before the bump); the writer does not need to wait for
//! the first kind and waits, conservatively, for the second.
//!
//! ## Why one counter flip suffices
//!
//! liburcu keeps only a one-bit phase per reader and therefore flips it twice per grace
//! period: a reader that loaded the counter, was preempted, and stored its snapshot after
//! the writer's check would otherwise carry a phase equal to the *next* grace period's
//! current phase and be skipped by it although its section started earlier. Here the
//! counter is 64 bits and only grows, so a stale snapshot always compares `< t` for every
//! later grace period and is waited for; nothing is ever mistaken for new. Wrapping would
//! take 2^64 grace periods (584 years at one per nanosecond), so one flip per grace period
//! is enough.
//!
//! # Deferred reclamation
//!
//! [`RcuDomain::call_rcu`] appends a callback to the domain's waiting list. Each grace
//! period takes the whole list as its batch before `F_w` — one grace period serves every
//! callback queued before it — and the thread that ran the grace period runs the batch
//! after releasing every lock, so callbacks may call `call_rcu` or `synchronize` on either
//! domain. Callbacks of different grace periods may run concurrently on different threads;
//! there is no ordering among callbacks beyond "after their grace period".
//! Completed batches are logged by grace-period number so that [`RcuDomain::barrier`] can
//! wait for every batch up to its own.
//!
//! Outside loom, the first `call_rcu` spawns one reclaimer thread per domain. It holds only
//! a `Weak` reference to the shared state, sleeps on a condvar until the waiting list
//! becomes non-empty, runs a grace period and exits when the state is dropped. Dropping
//! the last of a domain and its readers runs every callback still queued at once: readers
//! hold the state alive, so none can exist then. Under loom there is no reclaimer; models
//! call `synchronize`/`barrier` themselves.
//!
//! # Flavours
//!
//! Both flavours use this same algorithm; they are separate domains so that a sleepable
//! program that blocks inside its section (tasks-trace) does not hold up the grace periods
//! non-sleepable runs need, which outer-map updates wait for. Which deferral a removed inner
//! map gets depends on the outer map's `sleepable_refcnt`. Reading it is safe if the count
//! is incremented before the sleepable program can first run (the kernel does it at
//! verification) and the remover executes a SeqCst fence between unpublishing the inner
//! map and reading the count: with the fence in the program's tasks-trace `read_lock`, that
//! is the store-buffering shape again (model `sleepable_refcnt_picks_deferral` in
//! `tests/loom_rcu.rs`).

#[cfg(not(bpfnest_loom))]
pub mod default;
mod defer;
mod domain;
mod guard;

use core::fmt;

use crate::primitive::Arc;

#[cfg(not(bpfnest_loom))]
pub use default::{default_rcu, with_reader};
pub use domain::RcuDomain;
pub use guard::{RcuGuard, RcuReader};

/// The two RCU flavours BPF program runs are protected by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// `rcu_read_lock()`: non-sleepable program runs and syscall-side lookups.
    Normal,
    /// `rcu_read_lock_trace()`: sleepable program runs, which may block inside the section.
    TasksTrace,
}

/// The pair of domains the map subsystem uses, one per [`Flavour`].
///
/// Cloning clones the `Arc`s: clones share both domains.
#[derive(Clone)]
pub struct Rcu {
    /// Normal RCU: what non-sleepable programs read under and `synchronize_rcu()` waits for.
    pub normal: Arc<RcuDomain>,
    /// Tasks-trace RCU: what sleepable programs read under.
    pub tasks_trace: Arc<RcuDomain>,
}

impl Rcu {
    /// Creates two fresh, independent domains.
    pub fn new() -> Rcu {
        Rcu {
            normal: RcuDomain::new(),
            tasks_trace: RcuDomain::new(),
        }
    }

    /// The domain of `flavour`.
    pub fn domain(&self, flavour: Flavour) -> &Arc<RcuDomain> {
        match flavour {
            Flavour::Normal => &self.normal,
            Flavour::TasksTrace => &self.tasks_trace,
        }
    }

    /// Runs `f` after a tasks-trace grace period and then a normal grace period: the
    /// kernel's `free_after_mult_rcu_gp` (`bpf_map_free_mult_rcu_gp`).
    ///
    /// A tasks-trace grace period here never implies a normal one (the domains are
    /// independent; the kernel's `rcu_trace_implies_rcu_gp()` is false), so the second grace
    /// period is always requested, from the tasks-trace callback. `f` is thus safe against
    /// readers of either flavour that could see the object when this was called.
    pub fn call_rcu_tasks_trace_then_rcu(&self, f: Box<dyn FnOnce() + Send + 'static>) {
        let normal = Arc::clone(&self.normal);
        self.tasks_trace
            .call_rcu(Box::new(move || normal.call_rcu(f)));
    }

    /// Waits until every callback queued on either domain before this call has run,
    /// including the normal-domain half of [`Rcu::call_rcu_tasks_trace_then_rcu`] chains.
    ///
    /// Tasks-trace goes first because its callbacks may queue on the normal domain.
    pub fn barrier(&self) {
        self.tasks_trace.barrier();
        self.normal.barrier();
    }
}

/// Runs `f` inside a read-side section of `domain`, with a reader registered for this call
/// only.
///
/// For syscall-side paths, where the kernel wraps a map operation in `rcu_read_lock()` and
/// a registration (a lock, an allocation, ~100 ns) is small next to the operation. Program
/// runs should keep an [`RcuReader`] per thread instead (or use [`with_reader`] for the
/// default domains). A temporary reader never keeps `domain` alive past the call, unlike a
/// cached thread-local one would.
pub fn with_read_lock<R>(domain: &Arc<RcuDomain>, f: impl FnOnce() -> R) -> R {
    let reader = domain.register();
    let _guard = reader.read_lock();
    f()
}

impl Default for Rcu {
    fn default() -> Rcu {
        Rcu::new()
    }
}

impl fmt::Debug for Rcu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rcu")
            .field("normal", &self.normal)
            .field("tasks_trace", &self.tasks_trace)
            .finish()
    }
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Deferred callbacks (`call_rcu`), their batches, `barrier`, and the reclaimer thread.
//!
//! A callback waits in `waiting` until a grace period cuts the list (before its first
//! fence) and then runs on the thread that ran that grace period, once the grace period
//! has ended and every lock is released. Batches of different grace periods can therefore
//! finish out of order, on different threads; `Progress` records which grace-period
//! numbers have finished their batch so `barrier` can wait for a prefix of them.
//!
//! Every grace period reports completion exactly once, even with an empty batch or a
//! panicking callback: otherwise `Progress::completed` would stop advancing and every
//! later `barrier` would hang.

use core::mem;

#[cfg(not(bpfnest_loom))]
use super::domain::Domain;
use super::domain::{lock, FIRST_GP};
use crate::primitive::{thread, AtomicUsize, Condvar, Mutex, Ordering};
#[cfg(not(bpfnest_loom))]
use crate::primitive::{Arc, Weak};

/// A queued `call_rcu` callback.
pub(super) type Callback = Box<dyn FnOnce() + Send + 'static>;

/// The callback side of one domain.
pub(super) struct Deferred {
    /// Callbacks queued since the last grace period cut the list, in call order.
    waiting: Mutex<Vec<Callback>>,
    /// Callbacks queued and not yet returned: incremented before the push into `waiting`,
    /// decremented after each callback returns (or is dropped by a panicking batch).
    pending: AtomicUsize,
    /// Which grace periods have finished running their batch.
    progress: Mutex<Progress>,
    /// Signalled when `progress.completed` advances and someone waits for it.
    progress_cv: Condvar,
    /// Runs grace periods when callbacks wait and nobody calls `synchronize`.
    #[cfg(not(bpfnest_loom))]
    reclaimer: Reclaimer,
}

struct Progress {
    /// Every grace period numbered `<= completed` has finished its batch. Grace-period
    /// numbers are consecutive (one per `gp` bump), so this advances through all of them.
    completed: u64,
    /// Grace periods `> completed + 1` that finished first; few, as batches overlap only
    /// when several threads run grace periods at once.
    ahead: Vec<u64>,
    /// Threads running a batch now, so `barrier` from a callback panics instead of hanging.
    runners: Vec<thread::ThreadId>,
    /// Threads blocked in `wait_completed`; `progress_cv` is notified only when non-zero
    /// (a futex wake is a syscall even with no waiter).
    waiters: usize,
}

impl Deferred {
    /// `domain` is the owning domain (outside loom), for the reclaimer thread to upgrade.
    pub(super) fn new(#[cfg(not(bpfnest_loom))] domain: Weak<Domain>) -> Deferred {
        Deferred {
            waiting: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            progress: Mutex::new(Progress {
                completed: FIRST_GP,
                ahead: Vec::new(),
                runners: Vec::new(),
                waiters: 0,
            }),
            progress_cv: Condvar::new(),
            #[cfg(not(bpfnest_loom))]
            reclaimer: Reclaimer::new(domain),
        }
    }

    /// `call_rcu`.
    pub(super) fn enqueue(&self, f: Callback) {
        // Relaxed: the decrement in `run_batch` happens after the push below (through the
        // `waiting` mutex), so the count never underflows; readers of `pending` want a
        // number, not an ordering.
        self.pending.fetch_add(1, Ordering::Relaxed);
        let was_empty = {
            let mut waiting = lock(&self.waiting);
            let was_empty = waiting.is_empty();
            waiting.push(f);
            was_empty
        };
        // One wake-up per empty -> non-empty transition is enough: the reclaimer's next grace
        // period cuts everything queued until then.
        #[cfg(not(bpfnest_loom))]
        if was_empty {
            self.reclaimer.kick();
        }
        #[cfg(bpfnest_loom)]
        let _ = was_empty;
    }

    /// Takes every waiting callback; called by a grace period before its first fence.
    pub(super) fn take_waiting(&self) -> Vec<Callback> {
        mem::take(&mut *lock(&self.waiting))
    }

    pub(super) fn pending(&self) -> usize {
        // Relaxed: a statistic.
        self.pending.load(Ordering::Relaxed)
    }

    /// Runs the batch cut by grace period `gp` (which has ended) and records its
    /// completion. Called with no lock held.
    pub(super) fn run_batch(&self, gp: u64, batch: Vec<Callback>) {
        if batch.is_empty() {
            self.complete(gp, None);
            return;
        }
        let me = thread::current().id();
        lock(&self.progress).runners.push(me);
        let mut run = BatchRun {
            defer: self,
            gp,
            runner: me,
            left: batch.len(),
        };
        for f in batch {
            f();
            run.left -= 1;
            // Relaxed: see `enqueue`; `barrier` is ordered by the `progress` mutex.
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn complete(&self, gp: u64, runner: Option<thread::ThreadId>) {
        let mut p = lock(&self.progress);
        if let Some(runner) = runner {
            if let Some(i) = p.runners.iter().position(|&t| t == runner) {
                p.runners.swap_remove(i);
            }
        }
        if gp == p.completed + 1 {
            p.completed = gp;
            while let Some(i) = p.ahead.iter().position(|&g| g == p.completed + 1) {
                p.ahead.swap_remove(i);
                p.completed += 1;
            }
        } else {
            p.ahead.push(gp);
        }
        let notify = p.waiters > 0;
        drop(p);
        if notify {
            self.progress_cv.notify_all();
        }
    }

    /// Panics if the calling thread is running one of this domain's batches: `barrier`
    /// would wait for that batch, i.e. for itself.
    pub(super) fn assert_not_in_callback(&self) {
        let me = thread::current().id();
        assert!(
            !lock(&self.progress).runners.contains(&me),
            "RcuDomain::barrier called from one of the same domain's callbacks: it would wait \
             for its own batch forever"
        );
    }

    /// Blocks until every grace period `<= gp` has finished its batch.
    pub(super) fn wait_completed(&self, gp: u64) {
        let mut p = lock(&self.progress);
        while p.completed < gp {
            p.waiters += 1;
            p = self
                .progress_cv
                .wait(p)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            p.waiters -= 1;
        }
    }

    /// The domain is being dropped: stop the reclaimer and run what is still queued. No
    /// grace period can be running (that needs a `&RcuDomain`), and no reader exists.
    pub(super) fn shutdown(&self) {
        #[cfg(not(bpfnest_loom))]
        self.reclaimer.stop();
        loop {
            let batch = self.take_waiting();
            if batch.is_empty() {
                break;
            }
            for f in batch {
                f();
                // Relaxed: see `enqueue`.
                self.pending.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Completion bookkeeping for one running batch, done in `Drop` so that a panicking
/// callback still advances `Progress` and `pending`.
struct BatchRun<'a> {
    defer: &'a Deferred,
    gp: u64,
    runner: thread::ThreadId,
    /// Callbacks of the batch not yet returned; after a panic they are dropped unrun.
    left: usize,
}

impl Drop for BatchRun<'_> {
    fn drop(&mut self) {
        if self.left > 0 {
            // Relaxed: see `Deferred::enqueue`.
            self.defer.pending.fetch_sub(self.left, Ordering::Relaxed);
        }
        self.defer.complete(self.gp, Some(self.runner));
    }
}

/// The per-domain background thread that makes callbacks run without any `synchronize`.
#[cfg(not(bpfnest_loom))]
struct Reclaimer {
    /// Weak so that the thread never keeps the domain (and its callbacks) alive.
    domain: Weak<Domain>,
    /// Shared with the thread, which outlives the domain by a little.
    signal: Arc<Signal>,
}

#[cfg(not(bpfnest_loom))]
struct Signal {
    state: Mutex<SignalState>,
    cv: Condvar,
}

#[cfg(not(bpfnest_loom))]
#[derive(Default)]
struct SignalState {
    /// The thread has been spawned (it is spawned on the first kick, never twice).
    spawned: bool,
    /// Callbacks arrived since the thread last started a grace period.
    kicked: bool,
    /// The thread is blocked on `cv`; kicks notify only then.
    sleeping: bool,
    /// The domain has been dropped: exit.
    stopped: bool,
}

#[cfg(not(bpfnest_loom))]
impl Reclaimer {
    fn new(domain: Weak<Domain>) -> Reclaimer {
        Reclaimer {
            domain,
            signal: Arc::new(Signal {
                state: Mutex::new(SignalState::default()),
                cv: Condvar::new(),
            }),
        }
    }

    fn kick(&self) {
        let mut s = lock(&self.signal.state);
        s.kicked = true;
        if !s.spawned {
            let (domain, signal) = (self.domain.clone(), Arc::clone(&self.signal));
            // On failure (thread limit) callbacks still run at the next grace period or at
            // drop; the next kick retries.
            s.spawned = thread::Builder::new()
                .name("bpfnest-rcu-gp".into())
                .spawn(move || reclaimer_main(&domain, &signal))
                .is_ok();
        } else if s.sleeping {
            drop(s);
            self.signal.cv.notify_one();
        }
    }

    fn stop(&self) {
        let mut s = lock(&self.signal.state);
        s.stopped = true;
        let sleeping = s.sleeping;
        drop(s);
        if sleeping {
            self.signal.cv.notify_one();
        }
    }
}

#[cfg(not(bpfnest_loom))]
fn reclaimer_main(domain: &Weak<Domain>, signal: &Signal) {
    loop {
        {
            let mut s = lock(&signal.state);
            while !s.kicked && !s.stopped {
                s.sleeping = true;
                s = signal
                    .cv
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.sleeping = false;
            }
            if s.stopped {
                return;
            }
            s.kicked = false;
        }
        let Some(domain) = domain.upgrade() else {
            return;
        };
        // A panicking callback must not end reclamation for the domain's lifetime; the
        // panic hook has already reported it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| domain.synchronize()));
        // If this was the last reference, the domain's drop runs here and sets `stopped`.
        drop(domain);
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use crate::primitive::{thread, Arc, AtomicUsize, Ordering};
    use crate::rcu::{Rcu, RcuDomain};

    fn counter() -> (Arc<AtomicUsize>, impl Fn() -> Box<dyn FnOnce() + Send>) {
        let c = Arc::new(AtomicUsize::new(0));
        let c2 = Arc::clone(&c);
        (c, move || {
            let c = Arc::clone(&c2);
            Box::new(move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
        })
    }

    #[test]
    fn synchronize_runs_queued_callbacks() {
        let d = RcuDomain::new();
        let (ran, cb) = counter();
        for _ in 0..10 {
            d.call_rcu(cb());
        }
        d.synchronize();
        // The reclaimer may have cut some of them; barrier waits for its batch too.
        d.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 10);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn reclaimer_runs_callbacks_without_synchronize() {
        let d = RcuDomain::new();
        let (ran, cb) = counter();
        d.call_rcu(cb());
        let start = Instant::now();
        while ran.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "reclaimer never ran the callback"
            );
            thread::sleep(Duration::from_millis(1));
        }
        // A second burst after the thread went back to sleep.
        for _ in 0..3 {
            d.call_rcu(cb());
        }
        while ran.load(Ordering::SeqCst) < 4 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "reclaimer did not wake again"
            );
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn callback_waits_for_preexisting_reader() {
        let d = RcuDomain::new();
        let r = d.register();
        let (ran, cb) = counter();
        let g = r.read_lock();
        d.call_rcu(cb());
        thread::sleep(Duration::from_millis(20));
        assert_eq!(
            ran.load(Ordering::SeqCst),
            0,
            "callback ran inside a pre-existing section"
        );
        drop(g);
        d.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn drop_runs_remaining_callbacks() {
        let d = RcuDomain::new();
        let (ran, cb) = counter();
        for _ in 0..5 {
            d.call_rcu(cb());
        }
        drop(d);
        assert_eq!(ran.load(Ordering::SeqCst), 5);
    }

    #[test]
    fn callbacks_may_requeue_and_synchronize() {
        let d = RcuDomain::new();
        let (ran, cb) = counter();
        let d2 = Arc::clone(&d);
        let inner = cb();
        d.call_rcu(Box::new(move || {
            d2.synchronize();
            d2.call_rcu(inner);
        }));
        d.barrier();
        d.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn barrier_from_callback_panics_instead_of_hanging() {
        let d = RcuDomain::new();
        let d2 = Arc::clone(&d);
        let (panicked, cb) = counter();
        let record_panic = cb();
        // Whichever thread runs the callback (ours or the reclaimer), the panic is caught there.
        d.call_rcu(Box::new(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d2.barrier()));
            if r.is_err() {
                record_panic();
            }
        }));
        d.barrier();
        assert_eq!(panicked.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn chained_flavours_run_after_both() {
        let rcu = Rcu::new();
        let (ran, cb) = counter();
        let tt = rcu.tasks_trace.register();
        let g = tt.read_lock();
        rcu.call_rcu_tasks_trace_then_rcu(cb());
        rcu.normal.synchronize();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        drop(g);
        rcu.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert_eq!(rcu.normal.pending() + rcu.tasks_trace.pending(), 0);
    }

    #[test]
    fn memory_stays_bounded_with_interleaved_synchronize() {
        let d = RcuDomain::new();
        let (ran, cb) = counter();
        let n = 200_000;
        let mut max_pending = 0;
        for i in 0..n {
            d.call_rcu(cb());
            if i % 1000 == 999 {
                d.synchronize();
                max_pending = max_pending.max(d.pending());
            }
        }
        d.barrier();
        assert_eq!(ran.load(Ordering::SeqCst), n);
        // After a synchronize only callbacks of a concurrent reclaimer batch can remain.
        assert!(max_pending <= 2000, "pending grew to {max_pending}");
    }
}

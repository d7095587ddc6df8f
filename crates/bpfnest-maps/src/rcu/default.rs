// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The process-wide default [`Rcu`] and this thread's readers of it (crossbeam-epoch's
//! `default.rs`): an opt-in convenience over the explicit domains, and the only place in
//! the RCU with statics or thread-locals.
//!
//! Not compiled under loom, whose statics and thread-locals are per-execution; loom models
//! create their domains explicitly.

use std::sync::OnceLock;

use super::{Flavour, Rcu, RcuReader};

/// Created on first use and never dropped, so its reclaimer threads live as long as the
/// process.
static DEFAULT_RCU: OnceLock<Rcu> = OnceLock::new();

thread_local! {
    /// Registered on this thread's first `with_reader(Normal, ..)`; unregistered when the
    /// thread exits.
    static NORMAL_READER: RcuReader = default_rcu().normal.register();
    /// Same for tasks-trace; separate so a thread that only runs non-sleepable programs
    /// never appears in the tasks-trace registry.
    static TASKS_TRACE_READER: RcuReader = default_rcu().tasks_trace.register();
}

/// The process-wide [`Rcu`], created on first use.
pub fn default_rcu() -> &'static Rcu {
    DEFAULT_RCU.get_or_init(Rcu::new)
}

/// Calls `f` with this thread's reader of the default `flavour` domain, registering the
/// thread on first use.
///
/// ```
/// use bpfnest_maps::rcu::{with_reader, Flavour};
/// with_reader(Flavour::Normal, |reader| {
///     let _guard = reader.read_lock();
///     // RCU-protected loads go here.
/// });
/// ```
///
/// During thread-local destruction (the reader is already gone) a temporary reader is
/// registered for the call; that is slower but correct.
pub fn with_reader<R>(flavour: Flavour, f: impl FnOnce(&RcuReader) -> R) -> R {
    let key = match flavour {
        Flavour::Normal => &NORMAL_READER,
        Flavour::TasksTrace => &TASKS_TRACE_READER,
    };
    let mut f = Some(f);
    let mut call = |reader: &RcuReader| {
        let f = f
            .take()
            .expect("with_reader calls `f` at most once: try_with only calls back on success");
        f(reader)
    };
    match key.try_with(|reader| call(reader)) {
        Ok(r) => r,
        Err(_) => call(&default_rcu().domain(flavour).register()),
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;
    use crate::primitive::thread;

    #[test]
    fn default_readers_are_per_thread_and_flavour() {
        let rcu = default_rcu();
        assert!(with_reader(Flavour::Normal, |r| r.belongs_to(&rcu.normal)));
        assert!(with_reader(Flavour::TasksTrace, |r| r.belongs_to(&rcu.tasks_trace)));
        assert!(!with_reader(Flavour::TasksTrace, |r| r.belongs_to(&rcu.normal)));
        let here = with_reader(Flavour::Normal, |r| r as *const RcuReader as usize);
        assert_eq!(
            here,
            with_reader(Flavour::Normal, |r| r as *const RcuReader as usize)
        );
        // Another thread has its own reader: our open section is not its section.
        with_reader(Flavour::Normal, |r| {
            let _g = r.read_lock();
            thread::spawn(|| with_reader(Flavour::Normal, |r| assert!(!r.is_reading())))
                .join()
                .unwrap();
        });
    }

    #[test]
    fn nested_with_reader_sections() {
        with_reader(Flavour::TasksTrace, |r| {
            let _g = r.read_lock();
            with_reader(Flavour::TasksTrace, |r2| {
                let _g2 = r2.read_lock();
                assert!(r2.is_reading());
            });
            assert!(r.is_reading());
        });
    }
}

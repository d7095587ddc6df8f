// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Differential harness: one scenario, run on the userspace runtime and on the kernel, must
//! leave identical traces. Map ids differ between the two; the trace names each id by its order
//! of first appearance, so the *relations* between ids must match.
#![allow(
    dead_code,
    reason = "shared by several test binaries, each using a part of it"
)]

use std::collections::HashMap;
use std::fmt::Debug;

use bpfnest::uapi::*;
use bpfnest::{Backend, Errno, Kernel, MapBackend, Runtime};

/// What a scenario observed, with ids made symbolic.
#[derive(Default)]
pub struct Trace {
    ids: HashMap<u32, usize>,
    pub events: Vec<String>,
}

impl Trace {
    /// The symbolic name of a map id (`map#0`, `map#1`, …; `id:0` stays `0`).
    pub fn id(&mut self, id: u32) -> String {
        if id == 0 {
            return "0".into();
        }
        let n = self.ids.len();
        format!("map#{}", *self.ids.entry(id).or_insert(n))
    }

    /// Records an operation's outcome.
    pub fn rec<T: Debug>(&mut self, what: &str, r: Result<T, Errno>) {
        self.events.push(format!("{what}: {r:?}"));
    }

    /// Records an outcome whose success value is a map id (outer-map lookups).
    pub fn rec_id(&mut self, what: &str, r: Result<u32, Errno>) {
        let s = match r {
            Ok(id) => format!("Ok({})", self.id(id)),
            Err(e) => format!("Err({e:?})"),
        };
        self.events.push(format!("{what}: {s}"));
    }
}

/// The kernel backend, or `None` (with one message) where bpf(2) is refused. Under `CI=true`
/// the kernel must be there.
pub fn kernel() -> Option<Kernel> {
    match Kernel::probe() {
        Ok(k) => Some(k),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but bpf(2) is refused ({e}); the differential suite must run")
        }
        Err(e) => {
            eprintln!("bpf(2) unavailable ({e}): skipping kernel-differential tests");
            None
        }
    }
}

/// Runs `scenario` on both backends and asserts identical traces.
pub fn diff(name: &str, scenario: impl Fn(&dyn DynBackend, &mut Trace)) {
    let Some(kernel) = kernel() else { return };
    let rt = Runtime::new(bpfnest::Config {
        nr_cpus: kernel.nr_cpus(),
        ..bpfnest::Config::default()
    });
    let (mut a, mut b) = (Trace::default(), Trace::default());
    scenario(&rt, &mut a);
    scenario(&kernel, &mut b);
    for (i, (x, y)) in a.events.iter().zip(b.events.iter()).enumerate() {
        assert_eq!(
            x, y,
            "{name}: step {i} diverges (bpfnest left, kernel right)"
        );
    }
    assert_eq!(
        a.events.len(),
        b.events.len(),
        "{name}: trace lengths differ"
    );
    eprintln!(
        "kdiff {name}: {} steps identical on bpfnest and the kernel",
        a.events.len()
    );
}

/// Object-safe view of a backend for scenarios (maps are boxed).
pub trait DynBackend {
    fn create(&self, attr: &bpfnest::MapAttr) -> Result<Box<dyn bpfnest::MapBackend>, Errno>;
    fn get_by_id(&self, id: u32) -> Result<Box<dyn bpfnest::MapBackend>, Errno>;
}

impl<B: Backend> DynBackend for B
where
    B::Map: 'static,
{
    fn create(&self, attr: &bpfnest::MapAttr) -> Result<Box<dyn bpfnest::MapBackend>, Errno> {
        self.map_create(attr)
            .map(|m| Box::new(m) as Box<dyn bpfnest::MapBackend>)
    }
    fn get_by_id(&self, id: u32) -> Result<Box<dyn bpfnest::MapBackend>, Errno> {
        self.map_get_fd_by_id(id, 0)
            .map(|m| Box::new(m) as Box<dyn bpfnest::MapBackend>)
    }
}

/// A `u32` key as bytes.
pub fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

/// Possible CPUs (both backends lay per-CPU values out for these).
pub fn ncpus() -> usize {
    bpfnest_maps::runtime::possible_cpus() as usize
}

/// Syscall value size: per-CPU maps carry `round_up(value_size, 8)` bytes per possible CPU.
pub fn vsz(map_type: u32, value_size: u32) -> usize {
    match map_type {
        BPF_MAP_TYPE_PERCPU_ARRAY | BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_LRU_PERCPU_HASH => {
            (value_size as usize).div_ceil(8) * 8 * ncpus()
        }
        _ => value_size as usize,
    }
}

/// A value buffer whose bytes depend on `seed` (and on the CPU slot for per-CPU maps).
pub fn val(map_type: u32, value_size: u32, seed: u8) -> Vec<u8> {
    (0..vsz(map_type, value_size))
        .map(|i| seed.wrapping_add(i as u8))
        .collect()
}

/// A full `get_next_key` walk: the keys in order and the errno that ended it (`Ok` only if
/// the walk was cut at 10,000 keys).
pub fn walk(m: &dyn MapBackend, ks: usize) -> (Vec<Vec<u8>>, Result<(), Errno>) {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    loop {
        let mut next = vec![0u8; ks];
        match m.get_next_key(cur.as_deref(), &mut next) {
            Ok(()) => {
                out.push(next.clone());
                cur = Some(next);
                if out.len() > 10_000 {
                    return (out, Ok(()));
                }
            }
            Err(e) => return (out, Err(e)),
        }
    }
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Random differential test: proptest generates operation sequences over a small world of map
//! slots, runs them op by op on bpfnest and on the kernel, and fails on the first divergence
//! with the shrunk sequence printed.
//!
//! # The world and the op language
//!
//! Each backend gets its own world: `SLOTS` slots, each empty or holding one open map (created
//! or opened by id), plus, per slot, the number the last map closed in that slot had (a *stale*
//! handle). The ops ([`Op`]) are: `Create` (from [`ATTRS`], valid and invalid attributes over
//! ARRAY, HASH|ZERO_SEED, HASH|NO_PREALLOC|ZERO_SEED, PERCPU_ARRAY, PERCPU_HASH, QUEUE,
//! ARRAY_OF_MAPS and HASH_OF_MAPS|ZERO_SEED, the outer ones with an inner-map template given
//! as a [`HandleRef`]), `Close`, `Update` (outer maps: the value is a `HandleRef` — a live
//! slot of any type, a stale handle, 0 (not a map) or a number never open), `Lookup` (outer
//! results through [`Trace::id`]), `Delete`, `LookupAndDelete`, `Walk` (a whole
//! `get_next_key` walk, order compared), `Freeze`, `LookupBatch` (plain or and-delete, walked
//! to the end in counts of 0–3), `UpdateBatch`, `DeleteBatch` and `GetById` (an id seen earlier
//! in the case). Every case starts from a fixed [`prelude`] (array, hash, array of maps, hash of
//! maps in slots 0–3) so that most ops find a map; the prelude is printed with a failure.
//!
//! Each side's outcome of an op — errno, values, walk order, batch counts, map ids made
//! symbolic — is a list of strings; the first op whose lists differ fails the case, and
//! proptest shrinks the sequence (shrinking may stop early when the failure depends on timing).
//!
//! # Handle numbers
//!
//! Raw numbers are never compared: they differ (the test process holds other fds). Both sides
//! allocate lowest-free: bpfnest 3, 4, 5, … in a fresh runtime, the kernel the free fds from the
//! lowest one on (listed at the start of a case; the process may hold fds in between). Every
//! open records its number's *ordinal* in that list, so the harness assumption — the two
//! numberings agree — is itself part of the trace. A stale handle is the number a closed slot
//! had, on each side; if a later open reused it, it names the same slot's map on both sides.
//!
//! # Asynchronous frees
//!
//! The kernel releases the inner maps of a closed outer map from a workqueue. `GetById` on the
//! kernel therefore settles (polls up to 2 s) when bpfnest says `ENOENT` and the kernel still
//! finds the map, exactly as `kdiff_map_in_map`'s lifetime scenario waits.
//!
//! # Running
//!
//! By default (and under `CI=true`, where the kernel must be there) at least 10^5 operations
//! run, from a fixed seed. Longer runs:
//!
//! ```text
//! BPFNEST_KDIFF_OPS=1000000 CI=true cargo test --release -p bpfnest --test kdiff_random -- --nocapture
//! ```
//!
//! `BPFNEST_KDIFF_SEED=<u64>` picks another seed (the one used is printed);
//! `BPFNEST_KDIFF_TALLY=1` prints how often each outcome occurred (what the run exercised).
//! Kernel outer-map updates and deletes wait for an RCU grace period, so most of the time goes
//! there: 10^5 operations take about 35–50 s on two cores.

mod kdiff;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bpfnest::uapi::*;
use bpfnest::{Backend, BatchArgs, Errno, MapAttr, MapBackend, Runtime};
use kdiff::{DynBackend, Trace};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Slots in the world.
const SLOTS: usize = 5;
/// Longest generated sequence.
const MAX_OPS: usize = 64;
/// Sequences per proptest run.
const CHUNK: u32 = 256;
/// Default number of operations.
const DEFAULT_OPS: u64 = 100_000;
/// Free numbers tracked per side (more than the world can hold open).
const FREE: usize = 64;
/// A number never open on either side.
const NEVER_OPEN: u32 = 100_000;

/// Operations executed (on both sides), across all cases including shrinking.
static EXECUTED: AtomicU64 = AtomicU64::new(0);
/// Whether the first divergence has been printed (before shrinking, which can take long).
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Attributes a `Create` may use. Outer maps take their template from the op's `HandleRef`.
const ATTRS: &[(&str, MapAttr)] = &[
    ("array", MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4)),
    (
        "hash",
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4).flags(BPF_F_ZERO_SEED),
    ),
    (
        "hash nopre",
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4).flags(BPF_F_NO_PREALLOC | BPF_F_ZERO_SEED),
    ),
    (
        "percpu array",
        MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4),
    ),
    (
        "percpu hash",
        MapAttr::new(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 4).flags(BPF_F_ZERO_SEED),
    ),
    ("queue", MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 8, 4)),
    (
        "array inner",
        MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_INNER_MAP),
    ),
    (
        "hash max 3",
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 3).flags(BPF_F_ZERO_SEED),
    ),
    ("aom", MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 3)),
    (
        "hom",
        MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, 3).flags(BPF_F_ZERO_SEED),
    ),
    // Invalid ones.
    ("array key 8", MapAttr::new(BPF_MAP_TYPE_ARRAY, 8, 8, 4)),
    ("hash value 0", MapAttr::new(BPF_MAP_TYPE_HASH, 4, 0, 4)),
    ("array max 0", MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 0)),
    ("queue key 4", MapAttr::new(BPF_MAP_TYPE_QUEUE, 4, 8, 4)),
    (
        "aom zero seed",
        MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 3).flags(BPF_F_ZERO_SEED),
    ),
    (
        "hash bad flag",
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4).flags(1 << 30),
    ),
    (
        "hom value 8",
        MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 8, 3),
    ),
    (
        "array nopre",
        MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_NO_PREALLOC),
    ),
];

/// A number standing for a map (or not) in an attribute or an outer-map value.
#[derive(Clone, Copy, Debug)]
enum HandleRef {
    /// The slot's open map (if empty: its stale number, else `NEVER_OPEN`).
    Slot(usize),
    /// The number the last map closed in the slot had (else `NEVER_OPEN + slot`).
    Stale(usize),
    /// 0: open, but not a map.
    Zero,
    /// A number open on neither side.
    Never,
}

#[derive(Clone, Debug)]
enum Op {
    Create {
        slot: usize,
        attr: usize,
        inner: HandleRef,
    },
    Close(usize),
    Update {
        slot: usize,
        key: u32,
        val: u64,
        fd: HandleRef,
        flags: u64,
    },
    Lookup {
        slot: usize,
        key: u32,
        flags: u64,
    },
    Delete {
        slot: usize,
        key: u32,
    },
    LookupAndDelete {
        slot: usize,
        key: u32,
    },
    Walk {
        slot: usize,
        start: Option<u32>,
    },
    Freeze(usize),
    LookupBatch {
        slot: usize,
        count: u32,
        delete: bool,
    },
    UpdateBatch {
        slot: usize,
        keys: Vec<u32>,
        val: u64,
        fd: HandleRef,
        elem_flags: u64,
    },
    DeleteBatch {
        slot: usize,
        keys: Vec<u32>,
    },
    GetById {
        slot: usize,
        nth: usize,
    },
}

/// Run before every sequence (and not part of it): slot 0 an array, slot 1 a hash, slot 2 an
/// array of maps (template: slot 0), slot 3 a hash of maps (template: slot 1), slot 4 empty.
/// Without it most random ops would find empty slots.
fn prelude() -> [Op; 4] {
    let create = |slot, name: &str, inner| Op::Create {
        slot,
        attr: ATTRS.iter().position(|(n, _)| *n == name).unwrap(),
        inner: HandleRef::Slot(inner),
    };
    [
        create(0, "array", 0),
        create(1, "hash", 0),
        create(2, "aom", 0),
        create(3, "hom", 1),
    ]
}

fn handle_ref() -> impl Strategy<Value = HandleRef> {
    prop_oneof![
        6 => (0..SLOTS).prop_map(HandleRef::Slot),
        2 => (0..SLOTS).prop_map(HandleRef::Stale),
        1 => Just(HandleRef::Zero),
        1 => Just(HandleRef::Never),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let key = 0u32..6;
    let flags = prop_oneof![
        4 => Just(BPF_ANY),
        2 => Just(BPF_NOEXIST),
        2 => Just(BPF_EXIST),
        1 => Just(3u64),
        1 => Just(BPF_F_LOCK),
    ];
    let lookup_flags = prop_oneof![4 => Just(0u64), 1 => Just(BPF_F_LOCK), 1 => Just(8u64)];
    let elem_flags = prop_oneof![4 => Just(0u64), 1 => Just(BPF_F_LOCK), 1 => Just(1u64)];
    let keys = proptest::collection::vec(key.clone(), 0..4);
    prop_oneof![
        6 => (slot.clone(), 0..ATTRS.len(), handle_ref())
            .prop_map(|(slot, attr, inner)| Op::Create { slot, attr, inner }),
        2 => slot.clone().prop_map(Op::Close),
        10 => (slot.clone(), key.clone(), any::<u64>(), handle_ref(), flags)
            .prop_map(|(slot, key, val, fd, flags)| Op::Update { slot, key, val, fd, flags }),
        6 => (slot.clone(), key.clone(), lookup_flags)
            .prop_map(|(slot, key, flags)| Op::Lookup { slot, key, flags }),
        3 => (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::Delete { slot, key }),
        2 => (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::LookupAndDelete { slot, key }),
        3 => (slot.clone(), proptest::option::of(key.clone()))
            .prop_map(|(slot, start)| Op::Walk { slot, start }),
        1 => slot.clone().prop_map(Op::Freeze),
        2 => (slot.clone(), 0u32..4, any::<bool>())
            .prop_map(|(slot, count, delete)| Op::LookupBatch { slot, count, delete }),
        2 => (slot.clone(), keys.clone(), any::<u64>(), handle_ref(), elem_flags)
            .prop_map(|(slot, keys, val, fd, elem_flags)| {
                Op::UpdateBatch { slot, keys, val, fd, elem_flags }
            }),
        1 => (slot.clone(), keys)
            .prop_map(|(slot, keys)| Op::DeleteBatch { slot, keys }),
        2 => (slot, 0usize..8).prop_map(|(slot, nth)| Op::GetById { slot, nth }),
    ]
}

fn is_outer(t: u32) -> bool {
    t == BPF_MAP_TYPE_ARRAY_OF_MAPS || t == BPF_MAP_TYPE_HASH_OF_MAPS
}

fn is_percpu(t: u32) -> bool {
    t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH
}

/// One backend's world.
struct World<'b> {
    b: &'b dyn DynBackend,
    ncpus: usize,
    /// The numbers this side hands out, lowest first, at the start of the case.
    free: Vec<u32>,
    slots: Vec<Option<Box<dyn MapBackend>>>,
    stale: Vec<Option<u32>>,
    /// Map ids in order of first appearance (the same order as the trace's symbolic ids).
    ids: Vec<u32>,
    /// Kernel only: settle asynchronous frees in `GetById`.
    settle: bool,
}

impl<'b> World<'b> {
    fn new(b: &'b dyn DynBackend, ncpus: usize, free: Vec<u32>, settle: bool) -> World<'b> {
        World {
            b,
            ncpus,
            free,
            slots: (0..SLOTS).map(|_| None).collect(),
            stale: vec![None; SLOTS],
            ids: Vec::new(),
            settle,
        }
    }

    fn raw(&self, h: HandleRef) -> u32 {
        match h {
            HandleRef::Slot(s) => match &self.slots[s] {
                Some(m) => m.raw(),
                None => self.stale[s].unwrap_or(NEVER_OPEN + s as u32),
            },
            HandleRef::Stale(s) => self.stale[s].unwrap_or(NEVER_OPEN + s as u32),
            HandleRef::Zero => 0,
            HandleRef::Never => NEVER_OPEN + 64,
        }
    }

    fn close(&mut self, slot: usize) -> bool {
        match self.slots[slot].take() {
            Some(m) => {
                self.stale[slot] = Some(m.raw());
                true
            }
            None => false,
        }
    }

    fn see(&mut self, t: &mut Trace, id: u32) -> String {
        if id != 0 && !self.ids.contains(&id) {
            self.ids.push(id);
        }
        t.id(id)
    }

    /// Installs an opened map in `slot`, recording its symbolic id and relative number.
    fn install(
        &mut self,
        t: &mut Trace,
        what: &str,
        slot: usize,
        r: Result<Box<dyn MapBackend>, Errno>,
    ) {
        match r {
            Ok(m) => {
                let info = m.info();
                let id = self.see(t, info.id);
                let rel = self.free.iter().position(|&f| f == m.raw());
                t.events.push(format!(
                    "{what}: Ok({id}, fd ordinal {rel:?}, type {}, flags {:#x}, frozen {})",
                    info.map_type, info.map_flags, info.frozen
                ));
                self.slots[slot] = Some(m);
            }
            Err(e) => t.events.push(format!("{what}: Err({e:?})")),
        }
    }

    /// Syscall value size of the map in `slot`.
    fn vsize(m: &dyn MapBackend, ncpus: usize) -> usize {
        let i = m.info();
        if is_outer(i.map_type) {
            4
        } else if is_percpu(i.map_type) {
            (i.value_size as usize).div_ceil(8) * 8 * ncpus
        } else {
            i.value_size as usize
        }
    }

    /// A value for an update: the handle for outer maps, else `val` (+cpu for per-CPU maps).
    fn value(&self, m: &dyn MapBackend, val: u64, fd: HandleRef) -> Vec<u8> {
        let i = m.info();
        if is_outer(i.map_type) {
            return self.raw(fd).to_ne_bytes().to_vec();
        }
        let n = Self::vsize(m, self.ncpus);
        let mut v = Vec::with_capacity(n);
        let mut x = val;
        while v.len() < n {
            v.extend_from_slice(&x.to_ne_bytes());
            x = x.wrapping_add(1);
        }
        v.truncate(n);
        v
    }

    /// A value read back, with outer-map ids made symbolic.
    fn show(&mut self, t: &mut Trace, outer: bool, v: &[u8]) -> String {
        if outer {
            let id = u32::from_ne_bytes(v[..4].try_into().unwrap());
            self.see(t, id)
        } else {
            let words: Vec<u64> = v
                .chunks(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b[..c.len()].copy_from_slice(c);
                    u64::from_ne_bytes(b)
                })
                .collect();
            format!("{words:x?}")
        }
    }

    fn key(m: &dyn MapBackend, k: u32) -> Option<Vec<u8>> {
        let ks = m.info().key_size as usize;
        if ks == 0 {
            None
        } else {
            let mut v = k.to_ne_bytes().to_vec();
            v.resize(ks, 0);
            Some(v)
        }
    }

    /// Runs one op, appending its events to `t`. `peer` holds the events bpfnest recorded for
    /// this op (kernel side only).
    fn exec(&mut self, op: &Op, t: &mut Trace, peer: Option<&[String]>) {
        let empty = |t: &mut Trace| t.events.push("empty slot".into());
        match op {
            Op::Create { slot, attr, inner } => {
                let (name, a) = ATTRS[*attr];
                let a = if is_outer(a.map_type) {
                    a.inner_map(self.raw(*inner))
                } else {
                    a
                };
                // A failed create leaves the slot as it was; a new map replaces the old one
                // (closed after the create, so the two numbers differ).
                let r = self.b.create(&a);
                if r.is_ok() {
                    self.close(*slot);
                }
                self.install(t, &format!("create {name}"), *slot, r);
            }
            Op::Close(slot) => {
                let c = self.close(*slot);
                t.events.push(format!("close: {c}"));
            }
            Op::GetById { slot, nth } => {
                if self.ids.is_empty() {
                    return t.events.push("no ids".into());
                }
                let id = self.ids[nth % self.ids.len()];
                let mut r = self.b.get_by_id(id);
                if self.settle && r.is_ok() {
                    let want_err = peer
                        .and_then(|p| p.first())
                        .is_some_and(|e| e.contains("Err(ENOENT"));
                    let t0 = Instant::now();
                    while want_err && r.is_ok() && t0.elapsed() < Duration::from_secs(2) {
                        drop(r);
                        std::thread::sleep(Duration::from_millis(2));
                        r = self.b.get_by_id(id);
                    }
                }
                if r.is_ok() {
                    self.close(*slot);
                }
                self.install(t, "get_by_id", *slot, r);
            }
            Op::Update {
                slot,
                key,
                val,
                fd,
                flags,
            } => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                let v = self.value(m, *val, *fd);
                let k = Self::key(m, *key);
                t.rec("update", m.update_elem(k.as_deref(), &v, *flags));
            }
            Op::Lookup { slot, key, flags } => {
                let Some(m) = self.slots[*slot].take() else {
                    return empty(t);
                };
                let outer = is_outer(m.info().map_type);
                let mut v = vec![0u8; Self::vsize(&*m, self.ncpus)];
                let k = Self::key(&*m, *key);
                let r = m.lookup_elem(k.as_deref(), &mut v, *flags);
                let s = match r {
                    Ok(()) => format!("Ok({})", self.show(t, outer, &v)),
                    Err(e) => format!("Err({e:?})"),
                };
                t.events.push(format!("lookup: {s}"));
                self.slots[*slot] = Some(m);
            }
            Op::Delete { slot, key } => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                let k = Self::key(m, *key);
                t.rec("delete", m.delete_elem(k.as_deref()));
            }
            Op::LookupAndDelete { slot, key } => {
                let Some(m) = self.slots[*slot].take() else {
                    return empty(t);
                };
                let outer = is_outer(m.info().map_type);
                let mut v = vec![0u8; Self::vsize(&*m, self.ncpus)];
                let k = Self::key(&*m, *key);
                let s = match m.lookup_and_delete_elem(k.as_deref(), &mut v, 0) {
                    Ok(()) => format!("Ok({})", self.show(t, outer, &v)),
                    Err(e) => format!("Err({e:?})"),
                };
                t.events.push(format!("lookup_and_delete: {s}"));
                self.slots[*slot] = Some(m);
            }
            Op::Walk { slot, start } => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                let ks = m.info().key_size as usize;
                let mut prev = start.and_then(|s| Self::key(m, s));
                let mut next = vec![0u8; ks];
                let mut seen = Vec::new();
                let end = loop {
                    match m.get_next_key(prev.as_deref(), &mut next) {
                        Ok(()) => {
                            let mut b = [0u8; 4];
                            let n = ks.min(4);
                            b[..n].copy_from_slice(&next[..n]);
                            seen.push(u32::from_ne_bytes(b));
                            prev = Some(next.clone());
                            if seen.len() > 16 {
                                break Ok(());
                            }
                        }
                        Err(e) => break Err(e),
                    }
                };
                t.events.push(format!("walk: {seen:?} then {end:?}"));
            }
            Op::Freeze(slot) => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                t.rec("freeze", m.freeze());
            }
            Op::LookupBatch {
                slot,
                count,
                delete,
            } => {
                let Some(m) = self.slots[*slot].take() else {
                    return empty(t);
                };
                let outer = is_outer(m.info().map_type);
                let ks = m.info().key_size as usize;
                let vs = Self::vsize(&*m, self.ncpus);
                let mut pos: Option<Vec<u8>> = None;
                for _ in 0..12 {
                    let mut out = vec![0u8; 4.max(ks)];
                    let mut keys = vec![0u8; ks * *count as usize];
                    let mut vals = vec![0u8; vs * *count as usize];
                    let mut a = BatchArgs {
                        in_batch: pos.as_deref(),
                        out_batch: &mut out,
                        keys: &mut keys,
                        values: &mut vals,
                        count: *count,
                        elem_flags: 0,
                        flags: 0,
                    };
                    let r = if *delete {
                        m.lookup_and_delete_batch(&mut a)
                    } else {
                        m.lookup_batch(&mut a)
                    };
                    let n = (a.count.min(*count)) as usize;
                    let got = a.count;
                    let mut shown = Vec::new();
                    for i in 0..n {
                        let k = if ks >= 4 {
                            u32::from_ne_bytes(keys[i * ks..i * ks + 4].try_into().unwrap())
                        } else {
                            0
                        };
                        let v = self.show(t, outer, &vals[i * vs..(i + 1) * vs]);
                        shown.push(format!("{k}={v}"));
                    }
                    t.events.push(format!(
                        "lookup_batch(delete {delete}): {r:?} count {got} [{}]",
                        shown.join(", ")
                    ));
                    if r.is_err() {
                        break;
                    }
                    pos = Some(out);
                }
                self.slots[*slot] = Some(m);
            }
            Op::UpdateBatch {
                slot,
                keys,
                val,
                fd,
                elem_flags,
            } => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                let ks = m.info().key_size as usize;
                let mut kb = Vec::new();
                let mut vb = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    let mut kk = k.to_ne_bytes().to_vec();
                    kk.resize(ks, 0);
                    kb.extend_from_slice(&kk);
                    vb.extend(self.value(m, val.wrapping_add(i as u64 * 16), *fd));
                }
                let mut out = [0u8; 8];
                let mut a = BatchArgs {
                    in_batch: None,
                    out_batch: &mut out,
                    keys: &mut kb,
                    values: &mut vb,
                    count: keys.len() as u32,
                    elem_flags: *elem_flags,
                    flags: 0,
                };
                let r = m.update_batch(&mut a);
                t.events
                    .push(format!("update_batch: {r:?} count {}", a.count));
            }
            Op::DeleteBatch { slot, keys } => {
                let Some(m) = self.slots[*slot].as_deref() else {
                    return empty(t);
                };
                let ks = m.info().key_size as usize;
                let vs = Self::vsize(m, self.ncpus);
                let mut kb = Vec::new();
                for k in keys {
                    let mut kk = k.to_ne_bytes().to_vec();
                    kk.resize(ks, 0);
                    kb.extend_from_slice(&kk);
                }
                let mut vb = vec![0u8; vs * keys.len()];
                let mut out = [0u8; 8];
                let mut a = BatchArgs {
                    in_batch: None,
                    out_batch: &mut out,
                    keys: &mut kb,
                    values: &mut vb,
                    count: keys.len() as u32,
                    elem_flags: 0,
                    flags: 0,
                };
                let r = m.delete_batch(&mut a);
                t.events
                    .push(format!("delete_batch: {r:?} count {}", a.count));
            }
        }
    }
}

/// The kernel's free fds from the lowest one on, at the start of a case: maps get them in this
/// order, as bpfnest's handles come 3, 4, 5, … (other fds of the test process may sit between).
fn kernel_free_fds(k: &bpfnest::Kernel) -> Vec<u32> {
    let probe = k
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 4, 1))
        .expect("probe map");
    let base = probe.raw();
    drop(probe);
    (base..base + 256)
        .filter(|fd| std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_err())
        .take(FREE)
        .collect()
}

/// Outcomes per event kind (`create array: Ok`, `update: Err(EINVAL)`, …), printed at the end
/// so a run shows what it exercised.
static TALLY: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

fn tally(events: &[String]) {
    let mut t = TALLY.lock().unwrap();
    for e in events {
        let (what, r) = e.split_once(": ").unwrap_or((e, ""));
        let r = if r.starts_with("Ok") {
            "Ok"
        } else {
            r.split(' ').next().unwrap_or("")
        };
        *t.entry(format!("{what}: {r}")).or_default() += 1;
    }
}

/// Runs one sequence on both sides, op by op.
fn run_case(kernel: &bpfnest::Kernel, ops: &[Op]) -> Result<(), TestCaseError> {
    let ncpus = kernel.nr_cpus() as usize;
    let rt = Runtime::new(bpfnest::Config {
        nr_cpus: kernel.nr_cpus(),
        ..bpfnest::Config::default()
    });
    let kfree = kernel_free_fds(kernel);
    let mut a = World::new(&rt, ncpus, (3..3 + FREE as u32).collect(), false);
    let mut b = World::new(kernel, ncpus, kfree, true);
    let (mut ta, mut tb) = (Trace::default(), Trace::default());
    for op in prelude() {
        a.exec(&op, &mut ta, None);
        let peer = ta.events.clone();
        b.exec(&op, &mut tb, Some(&peer));
    }
    if ta.events != tb.events {
        return Err(TestCaseError::fail(format!(
            "the prelude diverges\n  bpfnest: {:?}\n  kernel:  {:?}",
            ta.events, tb.events
        )));
    }
    for (i, op) in ops.iter().enumerate() {
        let (na, nb) = (ta.events.len(), tb.events.len());
        a.exec(op, &mut ta, None);
        let peer = ta.events[na..].to_vec();
        b.exec(op, &mut tb, Some(&peer));
        EXECUTED.fetch_add(1, Ordering::Relaxed);
        tally(&tb.events[nb..]);
        let theirs = &tb.events[nb..];
        if peer != theirs {
            if !REPORTED.swap(true, Ordering::Relaxed) {
                eprintln!(
                    "kdiff_random: first divergence at op {i} of {} (shrinking…): {op:?}\n  \
                     bpfnest: {peer:?}\n  kernel:  {theirs:?}",
                    ops.len()
                );
            }
            return Err(TestCaseError::fail(format!(
                "op {i} diverges: {op:?}\n  bpfnest: {peer:?}\n  kernel:  {theirs:?}"
            )));
        }
    }
    // Every fd and handle goes with the worlds (kernel maps before the next case's base probe).
    drop(b);
    drop(a);
    Ok(())
}

#[test]
fn kdiff_random() {
    let Some(kernel) = kdiff::kernel() else {
        return;
    };
    let target: u64 = std::env::var("BPFNEST_KDIFF_OPS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("BPFNEST_KDIFF_OPS: a number of operations")
        })
        .unwrap_or(DEFAULT_OPS);
    let seed: u64 = std::env::var("BPFNEST_KDIFF_SEED")
        .ok()
        .map(|s| s.parse().expect("BPFNEST_KDIFF_SEED: a u64"))
        .unwrap_or(0x6b64_6966_665f_7264);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    eprintln!("kdiff_random: seed {seed} (BPFNEST_KDIFF_SEED), target {target} operations");
    let config = Config {
        cases: CHUNK,
        failure_persistence: None,
        max_shrink_iters: 2048,
        max_shrink_time: 120_000,
        ..Config::default()
    };
    // One runner per chunk of cases (a runner runs its `cases` once), all forked from one seed.
    let mut master = TestRunner::new_with_rng(
        config.clone(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let strategy = proptest::collection::vec(op(), 0..=MAX_OPS);
    let t0 = Instant::now();
    let mut sequences = 0u64;
    while EXECUTED.load(Ordering::Relaxed) < target {
        let mut runner = TestRunner::new_with_rng(config.clone(), master.new_rng());
        let r = runner.run(&strategy, |ops| run_case(&kernel, &ops));
        sequences += u64::from(CHUNK);
        match r {
            Ok(()) => {}
            Err(TestError::Fail(why, ops)) => panic!(
                "kdiff_random: bpfnest and the kernel diverge (seed {seed}).\n{why}\n\
                 minimal sequence ({} ops, after the prelude {:?}):\n{}",
                ops.len(),
                prelude(),
                ops.iter()
                    .enumerate()
                    .map(|(i, op)| format!("  {i:>3}: {op:?}\n"))
                    .collect::<String>()
            ),
            Err(e) => panic!("kdiff_random: {e}"),
        }
    }
    let total = EXECUTED.load(Ordering::Relaxed);
    eprintln!(
        "kdiff_random: {sequences} sequences x {:.1} ops = {total} operations in {:.1?}",
        total as f64 / sequences as f64,
        t0.elapsed()
    );
    if std::env::var_os("BPFNEST_KDIFF_TALLY").is_some() {
        for (k, n) in TALLY.lock().unwrap().iter() {
            eprintln!("  {n:>8}  {k}");
        }
    }
    assert!(total >= target);
}

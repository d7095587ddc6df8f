// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The table every hash map type shares: buckets of nulls-terminated lists, element memory
//! (preallocated pool or one allocation per element), hashing, lock-free lookups, iteration
//! and freeing. The type-independent half of `kernel/bpf/hashtab.c`.
//!
//! Readers of the bucket lists hold no lock: they run inside a read-side section (programs,
//! and syscalls through [`crate::syscall`]). Every other access to a list happens with its
//! bucket lock held, through [`Locked`].

use core::mem;
use core::ptr::{self, NonNull};
use std::alloc::{self, Layout};

use super::Kind;
use crate::bpf_map::{BpfMap, MapRef};
use crate::errno::{Errno, Result};
use crate::map::jhash::{jhash, jhash2_bytes};
use crate::map::map_in_map::fd_put_ptr;
use crate::primitive::{AtomicPtr, AtomicU32, AtomicUsize, Mutex, MutexGuard, Ordering};
use crate::record::{copy_map_value_in, BtfFieldKind, BtfRecord, ValueLock};
use crate::storage::{copy_from_value, copy_to_value, zero_value, Slab};
use crate::uapi::round_up8;

/// `sizeof(struct bpf_htab)` on x86_64, kernel 6.18 (fdinfo `memlock` of a NO_PREALLOC hash
/// with 8 buckets and no elements is 1024 = 896 + 8 * 16).
const SIZEOF_BPF_HTAB: u64 = 896;
/// `sizeof(struct bucket)`: an `hlist_nulls_head` and a resilient spinlock, padded.
pub(super) const SIZEOF_BUCKET: u64 = 16;
/// `sizeof(struct htab_elem)`: what precedes the key in a kernel element.
pub(super) const SIZEOF_HTAB_ELEM: u64 = 48;
/// `sizeof(struct llist_node)`: `bpf_mem_alloc`'s per-object overhead.
const LLIST_NODE_SZ: u64 = 8;
/// `sizeof(void *)`.
const PTR_SIZE: u64 = 8;

/// End of the intrusive free list.
const NO_ELEM: u32 = u32::MAX;

/// The nulls marker ending bucket `idx`'s list (`INIT_HLIST_NULLS_HEAD(head, idx)`): odd, so it
/// can never be an element address.
const fn nulls(idx: u32) -> usize {
    ((idx as usize) << 1) | 1
}

const fn is_nulls(link: usize) -> bool {
    link & 1 != 0
}

const fn nulls_value(link: usize) -> u32 {
    (link >> 1) as u32
}

/// Header of an element (the kernel's `struct htab_elem` minus its unions).
///
/// The element continues with the key at [`Htab::key_off`] and the value area at
/// [`Htab::value_off`]: `round_up(value_size, 8)` bytes, or one such slot per possible CPU for
/// the per-CPU types, or nothing for HASH_OF_MAPS, whose value is [`ElemHdr::inner`].
#[repr(C)]
pub(super) struct ElemHdr {
    /// The nulls-list link: the next element's address or a bucket's nulls marker. Written
    /// with the bucket lock held; readers load it Acquire. Left intact when the element is
    /// unlinked, so a reader standing on it can carry on (`hlist_nulls_del_rcu`).
    next: AtomicUsize,
    /// The key's full hash; written before the element is linked.
    hash: AtomicU32,
    /// Free-list link of a pooled element (index or [`NO_ELEM`]); only touched with the free
    /// list lock held. Separate from `next`, like the kernel's `fnode` overlaying `pprev`, so
    /// readers never follow a free-list link.
    flink: AtomicU32,
    /// HASH_OF_MAPS: the inner map, owning one reference while the element is linked; null
    /// otherwise. Stored Release, loaded Acquire.
    inner: AtomicPtr<BpfMap>,
}

impl ElemHdr {
    fn new() -> ElemHdr {
        ElemHdr {
            next: AtomicUsize::new(0),
            hash: AtomicU32::new(0),
            flink: AtomicU32::new(NO_ELEM),
            inner: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

/// An element of a [`Htab`].
///
/// Invariant, promised once by [`Elem::from_addr`]'s callers: the element's memory stays
/// allocated while the `Elem` is used. Pooled elements live as long as their table. An
/// allocated element lives until a grace period after it was unlinked, so it may be used by
/// a reader inside a read-side section that found it linked, by a holder of its bucket lock
/// while it is linked, and by whoever exclusively owns it (fresh, or unlinked and not yet
/// handed to [`Htab::free_htab_elem`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Elem(NonNull<ElemHdr>);

impl Elem {
    /// # Safety
    /// `addr` is the address of an initialised element header of a live table, and the
    /// returned value is only used as the type invariant allows.
    unsafe fn from_addr(addr: usize) -> Elem {
        // SAFETY: element addresses are never 0 (they come from allocations).
        Elem(unsafe { NonNull::new_unchecked(addr as *mut ElemHdr) })
    }

    fn addr(self) -> usize {
        self.0.as_ptr() as usize
    }

    fn base(self) -> *mut u8 {
        self.0.as_ptr() as *mut u8
    }

    fn hdr<'a>(self) -> &'a ElemHdr {
        // SAFETY: the type invariant keeps the header allocated and initialised while used.
        unsafe { self.0.as_ref() }
    }
}

/// `struct bucket`.
struct Bucket {
    /// First element's address, or this bucket's nulls marker. Stores that link an element
    /// are Release (with the bucket lock held); readers load Acquire.
    head: AtomicUsize,
    /// `raw_lock`: serialises every change to this bucket's list.
    lock: Mutex<()>,
}

/// The free list of a preallocated non-LRU table (the kernel's `pcpu_freelist`).
struct FreeList {
    /// First free element (linked through [`ElemHdr::flink`]), or [`NO_ELEM`].
    head: u32,
    /// Elements `fresh..nr_elems` were never handed out and have no initialised header yet:
    /// the pool is populated lazily so that a large map costs nothing until it fills.
    fresh: u32,
}

/// Where elements come from.
enum Store {
    /// Preallocated elements (the default): `nr_elems` of them in one slab that lives as long
    /// as the table. A deleted element is reused at once (the nulls markers make lock-free
    /// readers notice a move to another bucket).
    Pool {
        slab: Slab,
        nr_elems: u32,
        /// Non-LRU tables; LRU tables hand their elements to the LRU instead, and every header
        /// is initialised at creation.
        free: Option<Mutex<FreeList>>,
        /// HASH only (`htab_has_extra_elems`): one spare element per possible CPU, swapped
        /// with the old element when a key is replaced (`extra_elems`). A mutex per slot
        /// because user-space threads may claim the same CPU number.
        extra: Box<[Mutex<u32>]>,
    },
    /// `BPF_F_NO_PREALLOC`: one allocation per element, freed after a grace period of both
    /// flavours once unlinked (`bpf_mem_alloc` waits for tasks-trace RCU too, so sleepable
    /// programs are covered).
    Malloc,
}

/// A hash table (`struct bpf_htab`).
pub(super) struct Htab {
    pub(super) kind: Kind,
    /// `map->key_size`.
    pub(super) key_size: usize,
    /// `map->value_size`.
    pub(super) value_size: usize,
    /// `round_up(value_size, 8)`: one per-CPU slot, or the plain value area.
    pub(super) pcpu_size: usize,
    /// Number of possible CPUs (per-CPU slots, spare elements).
    pub(super) nr_cpus: u32,
    /// `map->max_entries` after the per-CPU LRU rounding.
    pub(super) max_entries: u32,
    /// A power of two, at most 2^27.
    n_buckets: u32,
    /// Seed of `htab_map_hash`; 0 with `BPF_F_ZERO_SEED`.
    hashrnd: u32,
    /// `n_buckets` buckets.
    buckets: Box<[Bucket]>,
    /// Offset of the key in an element (after the header, 8-aligned).
    key_off: usize,
    /// Offset of the value area (`key_off + round_up(key_size, 8)`).
    value_off: usize,
    /// One element; its size is a multiple of its alignment.
    layout: Layout,
    store: Store,
    /// NO_PREALLOC: elements allocated and not yet freed (`htab->count`); bounded by
    /// `max_entries` except transiently while a key is replaced.
    count: AtomicU32,
}

/// What [`Htab::new`] needs besides the kind.
pub(super) struct Geometry {
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    /// Already rounded for per-CPU LRU lists and checked against 2^31.
    pub(super) max_entries: u32,
    pub(super) n_buckets: u32,
    pub(super) prealloc: bool,
    pub(super) zero_seed: bool,
    pub(super) nr_cpus: u32,
}

/// `get_random_u32` for the per-map seed: std's per-process random keys, advanced per call.
fn get_random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(0x6874_6162);
    let v = h.finish();
    (v ^ (v >> 32)) as u32
}

/// `htab_map_hash`: `jhash2` over 32-bit words when the key length allows it, else `jhash`.
pub(super) fn htab_map_hash(key: &[u8], hashrnd: u32) -> u32 {
    if key.len().is_multiple_of(4) {
        jhash2_bytes(key, hashrnd)
    } else {
        jhash(key, hashrnd)
    }
}

/// Locks `m`; a poisoned lock only means another thread panicked while holding it, and the
/// lists it guards are updated with single stores, so they are consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `bpf_obj_free_fields` as far as bpfnest keeps state in fields: releases (zeroes) kptrs,
/// timers, workqueues, task_work and graph roots. Locks, refcounts and graph nodes are left
/// alone, as in the kernel: a lock may be held by a concurrent `BPF_F_LOCK` copy.
///
/// # Safety
/// `value` must be valid for writes of the record's extent and 8-byte aligned.
pub(super) unsafe fn obj_free_fields(rec: Option<&BtfRecord>, value: *mut u8) {
    let Some(rec) = rec else { return };
    for f in rec.fields() {
        let release = matches!(
            f.kind,
            BtfFieldKind::Timer
                | BtfFieldKind::Workqueue
                | BtfFieldKind::TaskWork
                | BtfFieldKind::Kptr { .. }
                | BtfFieldKind::ListHead { .. }
                | BtfFieldKind::RbRoot { .. }
        );
        if release {
            // SAFETY: the field lies inside the value (BtfRecord invariant).
            unsafe { zero_value(value.add(f.offset as usize), f.kind.size() as usize) };
        }
    }
}

/// `zero_map_value`: zeroes `len` bytes of a value except its special fields.
///
/// # Safety
/// As [`obj_free_fields`] for `len` bytes.
pub(super) unsafe fn zero_map_value(rec: Option<&BtfRecord>, value: *mut u8, len: usize) {
    let mut cur = 0usize;
    for f in rec.map(|r| r.fields()).unwrap_or(&[]) {
        let off = (f.offset as usize).min(len);
        if off > cur {
            // SAFETY: cur..off lies inside 0..len.
            unsafe { zero_value(value.add(cur), off - cur) };
        }
        cur = cur.max(f.offset as usize + f.kind.size() as usize);
    }
    if cur < len {
        // SAFETY: cur..len lies inside the value.
        unsafe { zero_value(value.add(cur), len - cur) };
    }
}

/// `copy_map_value_locked`: copies `src` into the value at `dst` (special fields skipped)
/// holding the value's `bpf_spin_lock` at `lock_off`.
///
/// # Safety
/// `dst` must be an 8-aligned value of at least `src.len()` bytes with a spin lock at
/// `lock_off`.
pub(super) unsafe fn copy_map_value_locked_in(
    rec: Option<&BtfRecord>,
    lock_off: u32,
    dst: *mut u8,
    src: &[u8],
) {
    // SAFETY: the lock word is a 4-aligned special field of the value, only accessed atomically.
    let l = unsafe { ValueLock::from_ptr(dst.add(lock_off as usize)) };
    l.lock();
    // SAFETY: the caller's promise.
    unsafe { copy_map_value_in(rec, dst, src) };
    l.unlock();
}

/// `copy_map_value_locked(.., lock_src = true)` followed by `check_and_init_map_value`: the
/// value at `src` copied out under its lock, special fields zeroed in `dst`.
///
/// # Safety
/// `src` must be an 8-aligned value of at least `dst.len()` bytes with a spin lock at
/// `lock_off`.
pub(super) unsafe fn copy_map_value_locked_out(
    rec: Option<&BtfRecord>,
    lock_off: u32,
    dst: &mut [u8],
    src: *mut u8,
) {
    // SAFETY: as in `copy_map_value_locked_in`.
    let l = unsafe { ValueLock::from_ptr(src.add(lock_off as usize)) };
    l.lock();
    // SAFETY: the caller's promise.
    unsafe { crate::record::copy_map_value_out(rec, dst, src) };
    l.unlock();
}

/// `check_flags`: `BPF_NOEXIST` on a present key, `BPF_EXIST` on an absent one.
pub(super) fn check_flags(exists: bool, flags: u64) -> Result<()> {
    let f = flags & !crate::uapi::BPF_F_LOCK;
    if exists && f == crate::uapi::BPF_NOEXIST {
        return Err(Errno::EEXIST);
    }
    if !exists && f == crate::uapi::BPF_EXIST {
        return Err(Errno::ENOENT);
    }
    Ok(())
}

struct SendElem(Elem, Layout);
// SAFETY: moved into an RCU callback that is the element's only remaining owner.
unsafe impl Send for SendElem {}

impl Htab {
    /// `htab_map_alloc` from the bucket count on: seed, buckets, element memory. Preallocated
    /// LRU tables get every header initialised (the LRU owns all elements from the start);
    /// the spare elements of a preallocated HASH come first in the pool.
    pub(super) fn new(kind: Kind, g: &Geometry) -> Result<Htab> {
        let key_size = g.key_size as usize;
        let pcpu_size = round_up8(g.value_size as u64) as usize;
        let align = mem::align_of::<ElemHdr>().max(8);
        let key_off = mem::size_of::<ElemHdr>().next_multiple_of(align);
        let value_off = key_off
            .checked_add(round_up8(key_size as u64) as usize)
            .ok_or(Errno::ENOMEM)?;
        let area = match kind {
            Kind::Percpu | Kind::LruPercpu => pcpu_size
                .checked_mul(g.nr_cpus as usize)
                .ok_or(Errno::ENOMEM)?,
            Kind::OfMaps => 0,
            Kind::Hash | Kind::Lru => pcpu_size,
        };
        let size = value_off
            .checked_add(area)
            .and_then(|s| s.checked_next_multiple_of(align))
            .ok_or(Errno::ENOMEM)?;
        let layout = Layout::from_size_align(size, align).map_err(|_| Errno::ENOMEM)?;

        let mut buckets = Vec::new();
        buckets
            .try_reserve_exact(g.n_buckets as usize)
            .map_err(|_| Errno::ENOMEM)?;
        buckets.extend((0..g.n_buckets).map(|i| Bucket {
            head: AtomicUsize::new(nulls(i)),
            lock: Mutex::new(()),
        }));

        let store = if g.prealloc {
            let extras = if kind.has_extra_elems() { g.nr_cpus } else { 0 };
            let nr_elems = g.max_entries.checked_add(extras).ok_or(Errno::ENOMEM)?;
            let bytes = size.checked_mul(nr_elems as usize).ok_or(Errno::ENOMEM)?;
            let slab = Slab::new_zeroed(bytes, align)?;
            let lru = kind.is_lru();
            let store = Store::Pool {
                slab,
                nr_elems,
                free: (!lru).then(|| {
                    Mutex::new(FreeList {
                        head: NO_ELEM,
                        fresh: extras,
                    })
                }),
                extra: (0..extras).map(Mutex::new).collect(),
            };
            let init = if lru { nr_elems } else { extras };
            if let Store::Pool { slab, .. } = &store {
                for i in 0..init {
                    // SAFETY: element i lies inside the slab, is aligned, and nobody else can
                    // see the table yet.
                    unsafe {
                        ptr::write(
                            slab.as_ptr().add(i as usize * size) as *mut ElemHdr,
                            ElemHdr::new(),
                        )
                    };
                }
            }
            store
        } else {
            Store::Malloc
        };

        Ok(Htab {
            kind,
            key_size,
            value_size: g.value_size as usize,
            pcpu_size,
            nr_cpus: g.nr_cpus,
            max_entries: g.max_entries,
            n_buckets: g.n_buckets,
            hashrnd: if g.zero_seed { 0 } else { get_random_u32() },
            buckets: buckets.into_boxed_slice(),
            key_off,
            value_off,
            layout,
            store,
            count: AtomicU32::new(0),
        })
    }

    /// Whether elements are preallocated (`htab_is_prealloc`).
    pub(super) fn is_prealloc(&self) -> bool {
        matches!(self.store, Store::Pool { .. })
    }

    /// `htab_map_hash` with this table's seed.
    pub(super) fn hash(&self, key: &[u8]) -> u32 {
        htab_map_hash(key, self.hashrnd)
    }

    fn bucket_index(&self, hash: u32) -> u32 {
        hash & (self.n_buckets - 1)
    }

    /// Number of buckets.
    pub(super) fn n_buckets(&self) -> u32 {
        self.n_buckets
    }

    // --- element memory -------------------------------------------------------------------

    /// Pooled element `idx`. Panics on an index outside the pool (a bug, never input).
    pub(super) fn elem_at(&self, idx: u32) -> Elem {
        let Store::Pool { slab, nr_elems, .. } = &self.store else {
            unreachable!("elem_at on a NO_PREALLOC table")
        };
        assert!(idx < *nr_elems, "element index {idx} outside the pool");
        // SAFETY: inside the slab; pooled elements live as long as the table, and the header
        // of every element the pool has handed out was initialised then.
        unsafe { Elem::from_addr(slab.as_ptr() as usize + idx as usize * self.layout.size()) }
    }

    /// Index of a pooled element.
    pub(super) fn elem_index(&self, e: Elem) -> u32 {
        let Store::Pool { slab, .. } = &self.store else {
            unreachable!("elem_index on a NO_PREALLOC table")
        };
        ((e.addr() - slab.as_ptr() as usize) / self.layout.size()) as u32
    }

    /// `__pcpu_freelist_pop`: a free pooled element, or `None` when every one is in use.
    pub(super) fn pop_free(&self) -> Option<Elem> {
        let Store::Pool {
            free: Some(free),
            nr_elems,
            slab,
            ..
        } = &self.store
        else {
            unreachable!("pop_free on a table without a free list")
        };
        let mut fl = lock(free);
        if fl.head != NO_ELEM {
            let e = self.elem_at(fl.head);
            fl.head = e.hdr().flink.load(Ordering::Relaxed);
            return Some(e);
        }
        if fl.fresh == *nr_elems {
            return None;
        }
        let idx = fl.fresh;
        let p = slab
            .as_ptr()
            .wrapping_add(idx as usize * self.layout.size()) as *mut ElemHdr;
        // SAFETY: element `idx` was never handed out, so nobody can see it; the free-list lock
        // is held while `fresh` moves past it, so no other thread initialises it too.
        unsafe { ptr::write(p, ElemHdr::new()) };
        fl.fresh += 1;
        Some(self.elem_at(idx))
    }

    /// `pcpu_freelist_push`: the element may be handed out again at once.
    fn push_free(&self, e: Elem) {
        let Store::Pool {
            free: Some(free), ..
        } = &self.store
        else {
            unreachable!("push_free on a table without a free list")
        };
        let mut fl = lock(free);
        e.hdr().flink.store(fl.head, Ordering::Relaxed);
        fl.head = self.elem_index(e);
    }

    /// The spare-element slot of `cpu` (HASH prealloc only).
    pub(super) fn extra_slot(&self, cpu: u32) -> MutexGuard<'_, u32> {
        let Store::Pool { extra, .. } = &self.store else {
            unreachable!("extra_slot on a NO_PREALLOC table")
        };
        lock(&extra[(cpu % self.nr_cpus) as usize])
    }

    /// `bpf_mem_cache_alloc` with `alloc_htab_elem`'s accounting: `E2BIG` when a new key would
    /// exceed `max_entries` (a replacement may overshoot by one until the old element goes),
    /// `ENOMEM` when the allocator refuses.
    pub(super) fn malloc_elem(&self, replacing: bool) -> Result<Elem> {
        if replacing {
            self.count.fetch_add(1, Ordering::Relaxed);
        } else {
            let max = self.max_entries;
            self.count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                    (c < max).then_some(c + 1)
                })
                .map_err(|_| Errno::E2BIG)?;
        }
        // SAFETY: the layout has a non-zero size (at least the header).
        let p = unsafe { alloc::alloc_zeroed(self.layout) } as *mut ElemHdr;
        if p.is_null() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return Err(Errno::ENOMEM);
        }
        // SAFETY: fresh allocation of the element layout, aligned for the header.
        unsafe { ptr::write(p, ElemHdr::new()) };
        // SAFETY: initialised above; owned by the caller until it links or frees it.
        Ok(unsafe { Elem::from_addr(p as usize) })
    }

    /// An element for a new key: from the free list (`E2BIG` when empty) or the allocator.
    pub(super) fn alloc_elem(&self) -> Result<Elem> {
        if self.is_prealloc() {
            self.pop_free().ok_or(Errno::E2BIG)
        } else {
            self.malloc_elem(false)
        }
    }

    /// Frees an allocated element after a tasks-trace and then a normal grace period.
    fn free_malloc_deferred(&self, map: &BpfMap, e: Elem) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        let cell = SendElem(e, self.layout);
        map.rcu().call_rcu_tasks_trace_then_rcu(Box::new(move || {
            let c = cell;
            // SAFETY: unlinked before the grace periods began, so no reader can still hold it;
            // allocated by `malloc_elem` with this layout.
            unsafe {
                ptr::drop_in_place(c.0 .0.as_ptr());
                alloc::dealloc(c.0.base(), c.1);
            }
        }));
    }

    /// `free_htab_elem` for the non-LRU types, after the element was unlinked and its bucket
    /// unlocked: drops a HASH_OF_MAPS inner map with deferral (`htab_put_fd_value`), releases
    /// special fields, and returns the element to the pool or frees it after a grace period.
    pub(super) fn free_htab_elem(&self, map: &BpfMap, e: Elem) {
        if let Some(inner) = self.take_inner(e) {
            fd_put_ptr(map, inner, true);
        }
        self.free_fields(map.record(), e);
        if self.is_prealloc() {
            self.push_free(e);
        } else {
            self.free_malloc_deferred(map, e);
        }
    }

    /// Takes the inner-map reference out of an element its caller owns exclusively.
    pub(super) fn take_inner(&self, e: Elem) -> Option<MapRef> {
        if self.kind != Kind::OfMaps {
            return None;
        }
        // AcqRel: the Acquire half pairs with the Release that stored the pointer, so the
        // reference is ours with everything its storer did.
        let p = e.hdr().inner.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null slot owns one reference given away by `MapRef::into_raw`; the
        // swap took it out, so it is reclaimed exactly once.
        (!p.is_null()).then(|| unsafe { MapRef::from_raw(p) })
    }

    /// Stores a fresh element's inner map (HASH_OF_MAPS), giving it the reference.
    pub(super) fn set_inner(&self, e: Elem, inner: MapRef) {
        // Release: pairs with the Acquire loads in `inner_of`.
        e.hdr()
            .inner
            .store(inner.into_raw() as *mut BpfMap, Ordering::Release);
    }

    /// Replaces a linked element's inner map in place; returns the old reference.
    pub(super) fn replace_inner(&self, e: Elem, inner: MapRef) -> Option<MapRef> {
        // AcqRel: Release publishes the new map to readers' Acquire loads; Acquire takes over
        // the old reference with its storer's writes.
        let p = e
            .hdr()
            .inner
            .swap(inner.into_raw() as *mut BpfMap, Ordering::AcqRel);
        // SAFETY: as in `take_inner`: the old pointer owned one reference, reclaimed once.
        (!p.is_null()).then(|| unsafe { MapRef::from_raw(p) })
    }

    /// The inner map an element holds, for a reader inside a read-side section.
    pub(super) fn inner_of(&self, e: Elem) -> Option<NonNull<BpfMap>> {
        // Acquire: pairs with the Release in `set_inner`/`replace_inner`.
        NonNull::new(e.hdr().inner.load(Ordering::Acquire))
    }

    // --- keys and values ------------------------------------------------------------------

    fn key_ptr(&self, e: Elem) -> *mut u8 {
        e.base().wrapping_add(self.key_off)
    }

    /// Start of the value area (the value, or CPU 0's slot).
    pub(super) fn value_ptr(&self, e: Elem) -> *mut u8 {
        e.base().wrapping_add(self.value_off)
    }

    /// The slot of `cpu` in a per-CPU element. CPU numbers past the possible ones wrap, so a
    /// misconfigured caller cannot reach outside the element.
    pub(super) fn pcpu_ptr(&self, e: Elem, cpu: u32) -> *mut u8 {
        self.value_ptr(e)
            .wrapping_add((cpu % self.nr_cpus) as usize * self.pcpu_size)
    }

    /// Writes the key and its hash into an element the caller owns.
    pub(super) fn init_elem(&self, e: Elem, key: &[u8], hash: u32) {
        // SAFETY: key_size bytes at key_off lie inside the element (Elem invariant: alive).
        unsafe { copy_to_value(self.key_ptr(e), &key[..self.key_size]) };
        e.hdr().hash.store(hash, Ordering::Relaxed);
    }

    /// Copies an element's key into `out` (`key_size` bytes).
    pub(super) fn read_key(&self, e: Elem, out: &mut [u8]) {
        // SAFETY: as in `init_elem`.
        unsafe { copy_from_value(&mut out[..self.key_size], self.key_ptr(e)) };
    }

    /// `memcmp(l->key, key, key_size) == 0`, reading the element's key in word copies (a
    /// pooled element may be rewritten under a lock-free reader).
    fn key_eq(&self, e: Elem, key: &[u8]) -> bool {
        let mut buf = [0u8; 64];
        let kp = self.key_ptr(e);
        let mut off = 0;
        while off < self.key_size {
            let n = (self.key_size - off).min(buf.len());
            // SAFETY: off..off+n lies inside the element's key.
            unsafe { copy_from_value(&mut buf[..n], kp.wrapping_add(off)) };
            if buf[..n] != key[off..off + n] {
                return false;
            }
            off += n;
        }
        true
    }

    /// `check_and_free_fields`: releases the special fields of every value of the element.
    pub(super) fn free_fields(&self, rec: Option<&BtfRecord>, e: Elem) {
        if rec.is_none_or(|r| r.is_empty()) {
            return;
        }
        if self.kind.is_percpu() {
            for cpu in 0..self.nr_cpus {
                // SAFETY: the slot is a live, 8-aligned value of this element.
                unsafe { obj_free_fields(rec, self.pcpu_ptr(e, cpu)) };
            }
        } else {
            // SAFETY: as above.
            unsafe { obj_free_fields(rec, self.value_ptr(e)) };
        }
    }

    // --- lookups and iteration --------------------------------------------------------------

    /// `lookup_nulls_elem_raw`: the element holding `key`, without the bucket lock. Restarts
    /// when the walk ends on another bucket's nulls marker: a pooled element it passed was
    /// deleted and reused in another bucket meanwhile.
    ///
    /// Callers are inside a read-side section (every `MapOps` entry point is).
    pub(super) fn lookup_nulls(&self, hash: u32, key: &[u8]) -> Option<Elem> {
        let idx = self.bucket_index(hash);
        let bucket = &self.buckets[idx as usize];
        loop {
            // Acquire (here and on each `next`): pairs with the Release in `link_head` and
            // `unlink`, so the element's hash, key and value are visible.
            let mut cur = bucket.head.load(Ordering::Acquire);
            while !is_nulls(cur) {
                // SAFETY: a non-marker link is the address of an element of this table, alive
                // for the caller's read-side section (or for the table's life when pooled).
                let e = unsafe { Elem::from_addr(cur) };
                if e.hdr().hash.load(Ordering::Relaxed) == hash && self.key_eq(e, key) {
                    return Some(e);
                }
                cur = e.hdr().next.load(Ordering::Acquire);
            }
            if nulls_value(cur) == idx {
                return None;
            }
        }
    }

    /// First element of the first non-empty bucket at or after `from`.
    fn first_from(&self, from: usize) -> Option<Elem> {
        self.buckets.get(from..)?.iter().find_map(|b| {
            // Acquire: as in `lookup_nulls`.
            let head = b.head.load(Ordering::Acquire);
            // SAFETY: as in `lookup_nulls`.
            (!is_nulls(head)).then(|| unsafe { Elem::from_addr(head) })
        })
    }

    /// `htab_map_get_next_key`: the next element of the key's bucket, else the first element
    /// of the following non-empty bucket; an absent (or no) key gives the table's first
    /// element; `ENOENT` past the last. Context: syscall (inside a read-side section).
    pub(super) fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<()> {
        let out = next_key.get_mut(..self.key_size).ok_or(Errno::EINVAL)?;
        let mut from = 0usize;
        if let Some(key) = key {
            let key = key.get(..self.key_size).ok_or(Errno::EINVAL)?;
            let hash = self.hash(key);
            if let Some(e) = self.lookup_nulls(hash, key) {
                // Acquire: as in `lookup_nulls`.
                let next = e.hdr().next.load(Ordering::Acquire);
                if !is_nulls(next) {
                    // SAFETY: as in `lookup_nulls`.
                    self.read_key(unsafe { Elem::from_addr(next) }, out);
                    return Ok(());
                }
                from = self.bucket_index(hash) as usize + 1;
            }
        }
        let e = self.first_from(from).ok_or(Errno::ENOENT)?;
        self.read_key(e, out);
        Ok(())
    }

    /// Visits the linked elements bucket by bucket without locks (`bpf_for_each_hash_elem`)
    /// until `f` returns `true`; returns how many were visited. The caller is inside a
    /// read-side section.
    pub(super) fn for_each_linked(&self, mut f: impl FnMut(Elem) -> bool) -> u32 {
        let mut n = 0u32;
        for b in self.buckets.iter() {
            // Acquire: as in `lookup_nulls`.
            let mut cur = b.head.load(Ordering::Acquire);
            while !is_nulls(cur) {
                // SAFETY: as in `lookup_nulls`.
                let e = unsafe { Elem::from_addr(cur) };
                n = n.wrapping_add(1);
                if f(e) {
                    return n;
                }
                cur = e.hdr().next.load(Ordering::Acquire);
            }
        }
        n
    }

    /// `htab_lock_bucket` for the bucket of `hash`.
    pub(super) fn lock_bucket(&self, hash: u32) -> Locked<'_> {
        self.lock_index(self.bucket_index(hash))
    }

    /// `htab_lock_bucket` for bucket `idx` (batches walk buckets by index).
    pub(super) fn lock_index(&self, idx: u32) -> Locked<'_> {
        let bucket = &self.buckets[idx as usize];
        Locked {
            htab: self,
            bucket,
            _guard: lock(&bucket.lock),
        }
    }

    /// Zeroes the timer and workqueue fields of every linked value (`htab_map_free_timers_and_wq`
    /// on the last user reference). Free pooled elements had their fields released when freed.
    pub(super) fn free_timers_and_wq(&self, map: &BpfMap) {
        let Some(rec) = map.record() else { return };
        let offs: Vec<u32> = rec
            .fields()
            .iter()
            .filter(|f| matches!(f.kind, BtfFieldKind::Timer | BtfFieldKind::Workqueue))
            .map(|f| f.offset)
            .collect();
        if offs.is_empty() {
            return;
        }
        map.with_read_lock(|| {
            self.for_each_linked(|e| {
                for &off in &offs {
                    // SAFETY: a 16-byte special field inside a live value.
                    unsafe { zero_value(self.value_ptr(e).wrapping_add(off as usize), 16) };
                }
                false
            });
        });
    }

    /// `htab_map_mem_usage`, with the kernel's structure sizes.
    pub(super) fn mem_usage(&self) -> u64 {
        let ncpus = self.nr_cpus as u64;
        let pcpu = self.pcpu_size as u64;
        let percpu = self.kind.is_percpu();
        let elem_size = SIZEOF_HTAB_ELEM
            + round_up8(self.key_size as u64)
            + if percpu { PTR_SIZE } else { pcpu };
        let mut usage = SIZEOF_BPF_HTAB + SIZEOF_BUCKET * self.n_buckets as u64;
        if self.is_prealloc() {
            let mut n = self.max_entries as u64;
            if self.kind.has_extra_elems() {
                n += ncpus;
            }
            usage += elem_size * n;
            if percpu {
                usage += pcpu * ncpus * n;
            } else if !self.kind.is_lru() {
                usage += PTR_SIZE * ncpus;
            }
        } else {
            let n = self.count.load(Ordering::Relaxed) as u64;
            usage += (elem_size + LLIST_NODE_SZ) * n;
            if percpu {
                usage += (LLIST_NODE_SZ + PTR_SIZE) * n + pcpu * ncpus * n;
            }
        }
        usage
    }
}

impl Drop for Htab {
    /// `htab_map_free` (and `fd_htab_map_free`): nothing can reach the table any more, so
    /// inner maps are dropped without deferral and allocated elements freed at once.
    fn drop(&mut self) {
        let malloc = !self.is_prealloc();
        for b in self.buckets.iter() {
            let mut cur = b.head.load(Ordering::Relaxed);
            while !is_nulls(cur) {
                // SAFETY: linked elements are alive; the table is exclusively ours.
                let e = unsafe { Elem::from_addr(cur) };
                cur = e.hdr().next.load(Ordering::Relaxed);
                drop(self.take_inner(e));
                if malloc {
                    // SAFETY: allocated by `malloc_elem` with this layout, linked only here.
                    unsafe {
                        ptr::drop_in_place(e.0.as_ptr());
                        alloc::dealloc(e.base(), self.layout);
                    }
                }
            }
        }
        if let Store::Pool {
            slab,
            nr_elems,
            free,
            ..
        } = &mut self.store
        {
            let init = match free {
                Some(fl) => {
                    fl.get_mut()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .fresh
                }
                None => *nr_elems,
            };
            for i in 0..init as usize {
                // SAFETY: headers 0..init were initialised; nothing uses them any more.
                unsafe {
                    ptr::drop_in_place(slab.as_ptr().add(i * self.layout.size()) as *mut ElemHdr)
                };
            }
        }
    }
}

/// A bucket with its lock held: the only way to change a list.
pub(super) struct Locked<'a> {
    htab: &'a Htab,
    bucket: &'a Bucket,
    _guard: MutexGuard<'a, ()>,
}

impl Locked<'_> {
    /// `lookup_elem_raw`: the element holding `key` in this bucket.
    pub(super) fn lookup(&self, hash: u32, key: &[u8]) -> Option<Elem> {
        let mut found = None;
        self.walk(|e| {
            if e.hdr().hash.load(Ordering::Relaxed) == hash && self.htab.key_eq(e, key) {
                found = Some(e);
                true
            } else {
                false
            }
        });
        found
    }

    /// Calls `f` on each element in list order until it returns `true`.
    fn walk(&self, mut f: impl FnMut(Elem) -> bool) {
        // Relaxed: every store to this list was made under the lock we hold.
        let mut cur = self.bucket.head.load(Ordering::Relaxed);
        while !is_nulls(cur) {
            // SAFETY: linked elements are alive while their bucket lock is held.
            let e = unsafe { Elem::from_addr(cur) };
            if f(e) {
                return;
            }
            cur = e.hdr().next.load(Ordering::Relaxed);
        }
    }

    /// The elements of this bucket, head first.
    pub(super) fn elems(&self) -> Vec<Elem> {
        let mut v = Vec::new();
        self.walk(|e| {
            v.push(e);
            false
        });
        v
    }

    /// `hlist_nulls_add_head_rcu`: a concurrent search finds the new element before an old
    /// one with the same key.
    pub(super) fn link_head(&self, e: Elem) {
        let head = self.bucket.head.load(Ordering::Relaxed);
        e.hdr().next.store(head, Ordering::Relaxed);
        // Release: pairs with readers' Acquire loads; everything written into the element
        // before (hash, key, value, inner map) is visible to whoever finds it.
        self.bucket.head.store(e.addr(), Ordering::Release);
    }

    /// `hlist_nulls_del_rcu`: unlinks `e` if it is in this bucket; its own `next` stays as it
    /// was, so readers standing on it finish their walk. Returns whether it was found.
    pub(super) fn unlink(&self, e: Elem) -> bool {
        let mut link: &AtomicUsize = &self.bucket.head;
        loop {
            let cur = link.load(Ordering::Relaxed);
            if is_nulls(cur) {
                return false;
            }
            if cur == e.addr() {
                let next = e.hdr().next.load(Ordering::Relaxed);
                // Release: pairs with readers' Acquire loads of this link.
                link.store(next, Ordering::Release);
                return true;
            }
            // SAFETY: linked elements are alive while their bucket lock is held.
            link = &unsafe { Elem::from_addr(cur) }.hdr().next;
        }
    }
}

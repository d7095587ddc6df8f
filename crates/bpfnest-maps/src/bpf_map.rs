// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`BpfMap`]: the generic map object (`struct bpf_map`) and its two reference counts.
//!
//! Every map has, as in `kernel/bpf/syscall.c`:
//! * `refcnt`, counting every reference: handles, pins, programs using the map, and each
//!   occupied slot of an outer map. [`MapRef`] is one such reference.
//! * `usercnt`, counting references user space can see: handles and pins. [`UserRef`] holds
//!   one of each. When `usercnt` reaches 0 the type's `release_uref` runs (timers are cancelled,
//!   program arrays cleared).
//!
//! When `refcnt` reaches 0 the id is removed from the id table at once (so get-by-id fails
//! from then on), and the memory is freed:
//! * after a tasks-trace grace period and then a normal one if `free_after_mult_rcu_gp` was set
//!   (the map was removed from an outer map used by sleepable programs);
//! * after a normal grace period if `free_after_rcu_gp` was set (removed from any outer map);
//! * at once otherwise: nothing can reach the map without holding a reference.
//!
//! Maps live in a `Box` leaked at creation and reclaimed by the last `MapRef`; references are
//! counted pointers rather than `Arc`s because the kernel's rules (get-by-id racing with the
//! last put, deferral decided at removal time) need the count and the id table under one lock.

use core::fmt;
use core::ptr::NonNull;

use crate::errno::Result;
use crate::ops::MapOps;
use crate::primitive::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
use crate::record::BtfRecord;
use crate::registry::MapTypeOps;
use crate::runtime::Core;
use crate::uapi::*;

/// The inner-map template an outer map keeps (`inner_map_meta`, `bpf_map_meta_alloc`).
///
/// A private copy: the outer map holds no reference to the template map itself.
#[derive(Clone, Debug)]
pub struct MapMeta {
    /// Template type.
    pub map_type: u32,
    /// Template key size.
    pub key_size: u32,
    /// Template value size.
    pub value_size: u32,
    /// Template flags as stored (without `BPF_F_RDONLY`/`BPF_F_WRONLY`).
    pub map_flags: u32,
    /// Template `max_entries`.
    pub max_entries: u32,
    /// Deep copy of the template's special-field record.
    pub record: Option<BtfRecord>,
    /// ARRAY/PERCPU_ARRAY templates: the template's Spectre-v1 index mask (else 0).
    pub index_mask: u32,
    /// ARRAY/PERCPU_ARRAY templates: `round_up(value_size, 8)` (else 0).
    pub elem_size: u32,
    /// ARRAY/PERCPU_ARRAY templates: whether the template's creator could bypass masking.
    pub bypass_spec_v1: bool,
    pub(crate) type_ops: &'static MapTypeOps,
}

/// The generic part of every map (`struct bpf_map`).
pub struct BpfMap {
    pub(crate) map_type: u32,
    pub(crate) key_size: u32,
    pub(crate) value_size: u32,
    pub(crate) max_entries: u32,
    /// Flags as stored: `BPF_F_RDONLY`/`BPF_F_WRONLY` belong to handles and are stripped.
    pub(crate) map_flags: u32,
    pub(crate) map_extra: u64,
    pub(crate) numa_node: u32,
    pub(crate) name: [u8; BPF_OBJ_NAME_LEN],
    pub(crate) btf_id: u32,
    pub(crate) btf_key_type_id: u32,
    pub(crate) btf_value_type_id: u32,
    pub(crate) btf_vmlinux_value_type_id: u32,
    /// 0 once removed from the id table.
    pub(crate) id: AtomicU32,
    pub(crate) refcnt: AtomicU64,
    pub(crate) usercnt: AtomicU64,
    pub(crate) frozen: AtomicBool,
    /// Writers in flight plus writable mmaps (`bpf_map_write_active`): freeze fails while > 0.
    pub(crate) writecnt: AtomicU64,
    pub(crate) freeze_mutex: parking_lot::Mutex<()>,
    pub(crate) record: Option<BtfRecord>,
    /// Sticky deferral marks set when the map leaves an outer map (`need_defer`).
    pub(crate) free_after_rcu_gp: AtomicBool,
    pub(crate) free_after_mult_rcu_gp: AtomicBool,
    /// Loaded sleepable programs using this map; consulted only on outer maps.
    pub(crate) sleepable_refcnt: AtomicU64,
    /// Created with `excl_prog_hash` (6.18): may be neither template nor inner map.
    pub(crate) excl: bool,
    /// Whether the creator could bypass Spectre-v1 masking (CAP_PERFMON/CAP_SYS_ADMIN).
    pub(crate) bypass_spec_v1: bool,
    pub(crate) type_ops: &'static MapTypeOps,
    pub(crate) ops: Box<dyn MapOps>,
    pub(crate) core: crate::primitive::Arc<Core>,
}

impl fmt::Debug for BpfMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpfMap")
            .field("type", &map_type_name(self.map_type).unwrap_or("?"))
            .field("id", &self.id())
            .field("key_size", &self.key_size)
            .field("value_size", &self.value_size)
            .field("max_entries", &self.max_entries)
            .field("map_flags", &format_args!("{:#x}", self.map_flags))
            .finish()
    }
}

impl BpfMap {
    /// `enum bpf_map_type`.
    pub fn map_type(&self) -> u32 {
        self.map_type
    }
    /// Key size in bytes.
    pub fn key_size(&self) -> u32 {
        self.key_size
    }
    /// Value size in bytes (for outer maps: 4).
    pub fn value_size(&self) -> u32 {
        self.value_size
    }
    /// `max_entries` as created.
    pub fn max_entries(&self) -> u32 {
        self.max_entries
    }
    /// Flags as stored and reported by `BPF_OBJ_GET_INFO_BY_FD`.
    pub fn map_flags(&self) -> u32 {
        self.map_flags
    }
    /// NUMA node (`NUMA_NO_NODE` unless created with `BPF_F_NUMA_NODE`).
    pub fn numa_node(&self) -> u32 {
        self.numa_node
    }
    /// `map_extra`.
    pub fn map_extra(&self) -> u64 {
        self.map_extra
    }
    /// The id, or 0 after the last reference was dropped.
    pub fn id(&self) -> u32 {
        self.id.load(Ordering::Relaxed)
    }
    /// The name as stored (at most 15 bytes).
    pub fn name(&self) -> &str {
        let n = self
            .name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(BPF_OBJ_NAME_LEN);
        // Names are validated to [A-Za-z0-9_.] at creation.
        core::str::from_utf8(&self.name[..n]).unwrap_or("")
    }
    /// Whether `BPF_MAP_FREEZE` succeeded on this map.
    pub fn frozen(&self) -> bool {
        self.frozen.load(Ordering::Acquire)
    }
    /// The special-field record, if any.
    pub fn record(&self) -> Option<&BtfRecord> {
        self.record.as_ref()
    }
    /// The inner-map template of an outer map.
    pub fn inner_map_meta(&self) -> Option<&MapMeta> {
        self.ops.inner_map_meta()
    }
    /// The type's operations.
    pub fn ops(&self) -> &dyn MapOps {
        &*self.ops
    }

    /// The type's private state, if it is a `T` (`container_of` with a type check).
    pub fn ops_as<T: MapOps>(&self) -> Option<&T> {
        let any: &dyn core::any::Any = &*self.ops;
        any.downcast_ref::<T>()
    }

    /// Whether a read-side section of `guard` keeps inner maps of this outer map alive:
    /// always for the normal flavour; for the tasks-trace flavour only while a sleepable
    /// program uses this map, since only then do removed inner maps wait for that flavour's
    /// grace period too (`free_after_mult_rcu_gp`).
    pub fn guard_protects_inner(&self, guard: &crate::rcu::RcuGuard<'_>) -> bool {
        guard.belongs_to(&self.core.rcu.normal)
            || (guard.belongs_to(&self.core.rcu.tasks_trace) && self.sleepable_refcnt() > 0)
    }
    /// Number of possible CPUs of the runtime that owns this map.
    pub fn nr_cpus(&self) -> u32 {
        self.core.nr_cpus
    }
    /// Current user reference count (handles and pins).
    pub fn usercnt(&self) -> u64 {
        self.usercnt.load(Ordering::Acquire)
    }
    /// Current reference count.
    pub fn refcnt(&self) -> u64 {
        self.refcnt.load(Ordering::Acquire)
    }
    /// Runs `f` in a syscall-side read-side section (normal flavour) of the owning runtime.
    pub(crate) fn with_read_lock<R>(&self, f: impl FnOnce() -> R) -> R {
        self.core.with_read_lock(f)
    }

    /// The RCU flavours of the owning runtime.
    pub fn rcu(&self) -> &crate::rcu::Rcu {
        &self.core.rcu
    }
    /// Whether the creator could bypass Spectre-v1 index masking.
    pub fn bypass_spec_v1(&self) -> bool {
        self.bypass_spec_v1
    }

    /// Size of a value as user space exchanges it (`bpf_map_value_size`): per-CPU types carry
    /// one 8-byte-rounded value per possible CPU; fd-holding maps carry a `u32`.
    pub fn sys_value_size(&self) -> usize {
        match self.map_type {
            BPF_MAP_TYPE_PERCPU_HASH
            | BPF_MAP_TYPE_LRU_PERCPU_HASH
            | BPF_MAP_TYPE_PERCPU_ARRAY
            | BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE => {
                round_up8(self.value_size as u64) as usize * self.core.nr_cpus as usize
            }
            BPF_MAP_TYPE_PROG_ARRAY
            | BPF_MAP_TYPE_PERF_EVENT_ARRAY
            | BPF_MAP_TYPE_CGROUP_ARRAY
            | BPF_MAP_TYPE_ARRAY_OF_MAPS
            | BPF_MAP_TYPE_HASH_OF_MAPS => 4,
            _ => self.value_size as usize,
        }
    }

    /// `bpf_map_inc_sleepable`-side counter: a sleepable program started using this map.
    pub fn inc_sleepable(&self) {
        // SeqCst: the removal path reads this to pick a deferral flavour; see `put_deferred`.
        self.sleepable_refcnt.fetch_add(1, Ordering::SeqCst);
    }
    /// A sleepable program using this map was freed.
    ///
    /// Call this only once the program can no longer be running: after a tasks-trace grace
    /// period that began after its last run (the kernel frees sleepable programs that way).
    /// Dropping the count earlier would let a removed inner map skip the tasks-trace wait while
    /// a run of that program may still hold it.
    pub fn dec_sleepable(&self) {
        self.sleepable_refcnt.fetch_sub(1, Ordering::SeqCst);
    }
    /// Number of loaded sleepable programs using this map.
    pub fn sleepable_refcnt(&self) -> u64 {
        self.sleepable_refcnt.load(Ordering::SeqCst)
    }

    /// Takes one more reference (`bpf_map_inc`). Never fails: counts are 64-bit.
    pub fn inc(&self) -> MapRef {
        self.refcnt.fetch_add(1, Ordering::Relaxed);
        MapRef(NonNull::from(self))
    }

    /// Takes a reference and a user reference (`bpf_map_inc_with_uref`).
    pub fn inc_with_uref(&self) -> UserRef {
        let r = self.inc();
        self.usercnt.fetch_add(1, Ordering::Relaxed);
        UserRef(r)
    }

    /// `__bpf_map_inc_not_zero(map, true)`: the get-by-id path. Called with the id table
    /// locked, so a concurrent last put cannot free the map before this returns.
    pub(crate) fn inc_not_zero_with_uref(&self) -> Option<UserRef> {
        let mut cur = self.refcnt.load(Ordering::Relaxed);
        loop {
            if cur == 0 {
                return None;
            }
            match self.refcnt.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(v) => cur = v,
            }
        }
        self.usercnt.fetch_add(1, Ordering::Relaxed);
        Some(UserRef(MapRef(NonNull::from(self))))
    }

    /// Marks the map for deferred freeing because it left a slot of `outer`
    /// (`bpf_map_fd_put_ptr(..., need_defer = true)`).
    fn mark_deferred(&self, outer: &BpfMap) {
        // A sleepable program can only reach this inner map through an outer map whose
        // sleepable_refcnt it raised when it was loaded, before it ever ran; reading the count
        // now (after the slot was cleared) therefore sees every program that may hold the map.
        // SeqCst fence: store-load ordering between the slot's swap (AcqRel, which alone does
        // not order a later load) and the count read; pairs with the SeqCst increment in
        // `inc_sleepable` (loom model `sleepable_refcnt_picks_deferral`).
        fence(Ordering::SeqCst);
        if outer.sleepable_refcnt() > 0 {
            self.free_after_mult_rcu_gp.store(true, Ordering::Relaxed);
        } else {
            self.free_after_rcu_gp.store(true, Ordering::Relaxed);
        }
    }

    /// Runs `f` with the writer count raised (`bpf_map_write_active_inc/dec`).
    pub(crate) fn write_active<R>(&self, f: impl FnOnce() -> R) -> R {
        self.writecnt.fetch_add(1, Ordering::SeqCst);
        let r = f();
        self.writecnt.fetch_sub(1, Ordering::SeqCst);
        r
    }

    /// Bytes charged to this map.
    pub fn mem_usage(&self) -> u64 {
        self.ops.mem_usage(self)
    }
}

/// One `refcnt` reference to a map (`bpf_map_inc` … `bpf_map_put`).
///
/// Dropping the last one removes the map's id and frees it, after the grace periods its
/// deferral marks ask for.
pub struct MapRef(NonNull<BpfMap>);

// SAFETY: a MapRef is a counted pointer to a Sync object; the count is atomic.
unsafe impl Send for MapRef {}
// SAFETY: as above; `&MapRef` only gives `&BpfMap`.
unsafe impl Sync for MapRef {}

impl MapRef {
    /// Wraps a freshly created map whose `refcnt` and `usercnt` are both 1.
    pub(crate) fn from_new(map: Box<BpfMap>) -> UserRef {
        map.refcnt.store(1, Ordering::Relaxed);
        map.usercnt.store(1, Ordering::Relaxed);
        UserRef(MapRef(NonNull::from(Box::leak(map))))
    }

    /// The raw pointer, for slots that store maps as pointers. Ownership of the count moves
    /// to the pointer; get it back with [`MapRef::from_raw`].
    pub(crate) fn into_raw(self) -> *const BpfMap {
        let p = self.0.as_ptr() as *const BpfMap;
        core::mem::forget(self);
        p
    }

    /// Reclaims a count previously given away by [`MapRef::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and its count must not have been reclaimed already.
    pub(crate) unsafe fn from_raw(p: *const BpfMap) -> MapRef {
        // SAFETY: into_raw never produces null.
        MapRef(unsafe { NonNull::new_unchecked(p as *mut BpfMap) })
    }

    /// Drops this reference as an outer map does when the map leaves one of its slots
    /// while the outer map lives: whoever drops the last reference frees it only after the
    /// grace period(s) that `outer`'s programs require.
    pub fn put_deferred(self, outer: &BpfMap) {
        self.mark_deferred(outer);
        drop(self);
    }

    /// Same map (pointer identity)?
    pub fn ptr_eq(a: &MapRef, b: &MapRef) -> bool {
        a.0 == b.0
    }
}

impl core::ops::Deref for MapRef {
    type Target = BpfMap;
    fn deref(&self) -> &BpfMap {
        // SAFETY: the count held by this MapRef keeps the map allocated.
        unsafe { self.0.as_ref() }
    }
}

impl Clone for MapRef {
    fn clone(&self) -> MapRef {
        self.inc()
    }
}

impl fmt::Debug for MapRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

struct SendPtr(NonNull<BpfMap>);
// SAFETY: the pointer is only used to free a map no one else references.
unsafe impl Send for SendPtr {}

impl Drop for MapRef {
    fn drop(&mut self) {
        // Release: pairs with the Acquire fence below in whichever thread drops the last count,
        // so every use through this reference happens before the free.
        if self.refcnt.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        // Acquire load rather than `fence(Acquire)` (same effect: it reads the release sequence
        // of every earlier decrement), as std's Arc does, because ThreadSanitizer cannot model
        // fences and would report the free below as racing with earlier users.
        self.refcnt.load(Ordering::Acquire);
        let map: &BpfMap = self;
        map.core.free_map_id(map);
        let ptr = SendPtr(self.0);
        let free = move || {
            let p = ptr;
            // SAFETY: refcnt is 0 and the id is gone, so no new reference can be made; the
            // grace periods below (if any) let readers that found the map through an outer
            // slot finish first.
            drop(unsafe { Box::from_raw(p.0.as_ptr()) });
        };
        if map.free_after_mult_rcu_gp.load(Ordering::Relaxed) {
            let rcu = map.core.rcu.clone();
            rcu.call_rcu_tasks_trace_then_rcu(Box::new(free));
        } else if map.free_after_rcu_gp.load(Ordering::Relaxed) {
            let rcu = map.core.rcu.normal.clone();
            rcu.call_rcu(Box::new(free));
        } else {
            free();
        }
    }
}

/// A reference plus a user reference: what a handle or a pin holds.
pub struct UserRef(MapRef);

impl UserRef {
    /// The plain reference.
    pub fn map_ref(&self) -> &MapRef {
        &self.0
    }
    /// Another user reference to the same map.
    pub fn clone_uref(&self) -> UserRef {
        self.0.inc_with_uref()
    }
}

impl core::ops::Deref for UserRef {
    type Target = BpfMap;
    fn deref(&self) -> &BpfMap {
        &self.0
    }
}

impl Drop for UserRef {
    fn drop(&mut self) {
        // bpf_map_put_uref: the hook runs before the plain reference is dropped (by the field
        // drop that follows), so the map is alive while it runs.
        // AcqRel: the hook must see every user's last writes.
        if self.0.usercnt.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.ops.release_uref(&self.0);
        }
    }
}

impl fmt::Debug for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

/// Result alias re-exported for map modules.
pub type MapResult<T> = Result<T>;

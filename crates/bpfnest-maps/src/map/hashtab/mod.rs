// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Hash tables: `BPF_MAP_TYPE_HASH`, `PERCPU_HASH`, `LRU_HASH`, `LRU_PERCPU_HASH` and
//! `HASH_OF_MAPS`. Mirrors `kernel/bpf/hashtab.c` (v6.18).
//!
//! # Layout
//!
//! ```text
//!  buckets[n_buckets]  (n_buckets = roundup_pow_of_two(max_entries))
//!  +---------+
//!  | head  --+--> elem --> elem --> (nulls 0)      bucket = hash & (n_buckets - 1)
//!  | lock    |
//!  +---------+
//!  | head  --+--> (nulls 1)                        an empty bucket: its own marker
//!  +---------+
//!      ...
//!  elem: [ next | hash | flink | inner ][ key, round_up(key_size, 8) ][ value area ]
//!  value area: round_up(value_size, 8) bytes; per-CPU types: one such slot per possible CPU;
//!              HASH_OF_MAPS: none (the inner map pointer is in the header).
//! ```
//!
//! The hash is the kernel's `htab_map_hash`: `jhash2` over 32-bit words when `key_size % 4 ==
//! 0`, else `jhash`, seeded per map (0 with `BPF_F_ZERO_SEED`, which makes the iteration order
//! of `get_next_key` and the batches exactly Linux's). New elements go to the head of their
//! bucket; replacing a key links a new element, so the key moves to the head (HASH, LRU_HASH),
//! except where the kernel updates in place (PERCPU_HASH, LRU_PERCPU_HASH, HASH_OF_MAPS, and
//! `BPF_F_LOCK` updates), where it keeps its position.
//!
//! # Locking and reclamation
//!
//! * Writers take the bucket lock; lookups from programs and syscalls walk the lists without
//!   locks inside a read-side section (`crate::rcu`). Links are published with Release stores
//!   and read with Acquire loads.
//! * Preallocated tables (the default) never free element memory before the map itself: a
//!   deleted element goes back on the free list *at once* and may be reused for another key in
//!   another bucket while a reader still stands on it. Lists therefore end in a *nulls* marker
//!   naming their bucket (`hlist_nulls`): a reader whose walk ends on another bucket's marker
//!   restarts. A full table that deletes one key can insert another immediately.
//! * HASH keeps one spare element per possible CPU for replacing a key in a full table
//!   (`extra_elems`); PERCPU, LRU and HASH_OF_MAPS update in place or through the LRU instead.
//! * `BPF_F_NO_PREALLOC` tables allocate per insert (`E2BIG` past `max_entries`) and free an
//!   unlinked element after a tasks-trace and then a normal grace period (`bpf_mem_alloc` hands
//!   memory back only after both), so readers of either flavour, sleepable programs included,
//!   never see freed memory.
//! * LRU tables take free elements from [`crate::map::lru_list::BpfLru`]; lock order is LRU
//!   then bucket, so the LRU is only called with no bucket lock held.
//!
//! # Deviations
//! * The kernel's bucket lock is a resilient spinlock that can fail with `EBUSY`/`EDEADLK` on
//!   re-entry from a program running in NMI context; nothing re-enters here, so it never
//!   fails.
//! * `BPF_F_NO_COMMON_LRU` rounds `max_entries` up to a multiple of the CPU count; the kernel
//!   reports the rounded value in `BPF_OBJ_GET_INFO_BY_FD`. The table uses the rounded count,
//!   but `crate::syscall` fills the map header from the attributes, so info shows the value
//!   asked for until the core lets `map_alloc` adjust it.
//! * Spare elements are per "CPU number" with a lock each, since user-space threads may share
//!   a number; the kernel relies on disabled preemption.
//! * `bpf_mem_alloc` may also hand a freed NO_PREALLOC element to the next insert on the same
//!   CPU at once; here every insert gets fresh zeroed memory (not observable from user space).

use crate::attr::MapAttr;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::map::map_in_map;
use crate::ops::{MapOps, OpCtx};
use crate::rcu::RcuGuard;
use crate::registry::{AllocCtx, BtfKind, MapTypeOps};
use crate::uapi::*;

/// The entry points every hash table shares.
///
/// Expects in scope: `HtabTable`, `BpfMap`, `Result`, `Errno`, `BatchArgs`, `OpCtx`,
/// `InlineLookup`, `NonNull`, `BPF_F_LOCK`, `generic_map_update_batch`,
/// `generic_map_delete_batch`.
macro_rules! htab_common_ops {
    () => {
        /// `htab_map_get_next_key`. Context: syscall.
        fn get_next_key(
            &self,
            _map: &BpfMap,
            key: Option<&[u8]>,
            next_key: &mut [u8],
        ) -> Result<()> {
            self.table().get_next_key(key, next_key)
        }

        /// No `map_push_elem`: the verifier refuses the helper on a hash map with `EINVAL`.
        fn push_elem(&self, _map: &BpfMap, _value: &[u8], _flags: u64) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// No `map_pop_elem`: refused by the verifier with `EINVAL`.
        fn pop_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// No `map_peek_elem`: refused by the verifier with `EINVAL`.
        fn peek_elem(&self, _map: &BpfMap, _value: &mut [u8]) -> Result<()> {
            Err(Errno::EINVAL)
        }

        /// `generic_map_update_batch`. Context: syscall.
        fn update_batch(
            &self,
            map: &BpfMap,
            ctx: &OpCtx<'_>,
            args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            generic_map_update_batch(map, ctx, args)
        }

        /// `generic_map_delete_batch`, which refuses `BPF_F_LOCK` on a map without a spin lock
        /// with `EINVAL` and `count` untouched (kernel 6.18), before deleting anything.
        /// Context: syscall.
        fn delete_batch(
            &self,
            map: &BpfMap,
            ctx: &OpCtx<'_>,
            args: &mut BatchArgs<'_>,
        ) -> Result<()> {
            if args.elem_flags & BPF_F_LOCK != 0
                && map.record().and_then(|r| r.spin_lock_off()).is_none()
            {
                return Err(Errno::EINVAL);
            }
            generic_map_delete_batch(map, ctx, args)
        }

        /// No `map_mmap`: `bpf_map_mmap` answers `ENOTSUPP`.
        fn mmap(&self, _map: &BpfMap) -> Result<(NonNull<u8>, usize)> {
            Err(Errno::ENOTSUPP)
        }

        /// The kernel inlines hash lookups as a call of `__htab_map_lookup_elem`; bpfnest's
        /// engine calls [`MapOps::lookup_elem`], which is the same thing.
        fn gen_lookup(&self, _map: &BpfMap) -> Option<InlineLookup> {
            None
        }

        /// `htab_map_mem_usage`.
        fn mem_usage(&self, _map: &BpfMap) -> u64 {
            self.table().mem_usage()
        }
    };
}

mod batch;
mod hash;
mod lru;
mod of_maps;
mod percpu;
mod table;

pub use hash::HtabMap;
pub use lru::{LruHtabMap, LruPercpuHtabMap};
pub use of_maps::HtabOfMaps;
pub use percpu::PercpuHtabMap;

/// Which kernel ops table a table serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hash,
    Percpu,
    Lru,
    LruPercpu,
    OfMaps,
}

impl Kind {
    /// `htab_is_percpu`.
    fn is_percpu(self) -> bool {
        matches!(self, Kind::Percpu | Kind::LruPercpu)
    }

    /// `htab_is_lru`.
    fn is_lru(self) -> bool {
        matches!(self, Kind::Lru | Kind::LruPercpu)
    }

    /// `htab_has_extra_elems`: the others update in place or evict instead.
    fn has_extra_elems(self) -> bool {
        self == Kind::Hash
    }
}

/// Gives the shared entry points ([`htab_common_ops`]) their table.
trait HtabTable {
    fn table(&self) -> &table::Htab;
}

/// `BPF_F_ACCESS_MASK`.
const BPF_F_ACCESS_MASK: u32 = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG;

/// `HTAB_CREATE_FLAG_MASK`: every flag a hash table accepts.
pub const HTAB_CREATE_FLAG_MASK: u32 =
    BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_ACCESS_MASK | BPF_F_ZERO_SEED;

/// `PCPU_MIN_UNIT_SIZE`: a per-CPU value (rounded to 8) may not exceed it.
pub const PCPU_MIN_UNIT_SIZE: u64 = 32 << 10;

/// Keys are hashed into `n_buckets <= U32_MAX / sizeof(struct bucket)` buckets: at most 2^27.
const MAX_BUCKETS: u64 = u32::MAX as u64 / table::SIZEOF_BUCKET;

/// `bpf_map_flags_access_ok`: a program may not be denied both reads and writes.
fn map_flags_access_ok(flags: u32) -> bool {
    flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG) != (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
}

/// `htab_map_alloc_check`: pure attribute checks, in the kernel's order. Context: syscall.
///
/// `EPERM` for `BPF_F_ZERO_SEED` without CAP_SYS_ADMIN; `EINVAL` for flags outside
/// [`HTAB_CREATE_FLAG_MASK`] or both program-access flags, and for `BPF_F_NO_COMMON_LRU` on a
/// non-LRU type; `ENOTSUPP` for an LRU without preallocation; `EINVAL` for a NUMA node on a
/// per-CPU type or LRU list, then for a zero `max_entries`, `key_size` or `value_size`;
/// `E2BIG` when key and value do not fit one kmalloc with the element header, or a per-CPU
/// value exceeds [`PCPU_MIN_UNIT_SIZE`].
fn htab_map_alloc_check(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<()> {
    let percpu = matches!(
        attr.map_type,
        BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_LRU_PERCPU_HASH
    );
    let lru = matches!(
        attr.map_type,
        BPF_MAP_TYPE_LRU_HASH | BPF_MAP_TYPE_LRU_PERCPU_HASH
    );
    // Each CPU gets its own LRU list: unrelated to per-CPU values.
    let percpu_lru = attr.map_flags & BPF_F_NO_COMMON_LRU != 0;
    let prealloc = attr.map_flags & BPF_F_NO_PREALLOC == 0;
    let zero_seed = attr.map_flags & BPF_F_ZERO_SEED != 0;
    let numa_node = if attr.map_flags & BPF_F_NUMA_NODE != 0 {
        attr.numa_node
    } else {
        NUMA_NO_NODE
    };

    if zero_seed && !ctx.caps.sys_admin {
        // Guards against a local DoS by predictable buckets.
        return Err(Errno::EPERM);
    }
    if attr.map_flags & !HTAB_CREATE_FLAG_MASK != 0 || !map_flags_access_ok(attr.map_flags) {
        return Err(Errno::EINVAL);
    }
    if !lru && percpu_lru {
        return Err(Errno::EINVAL);
    }
    if lru && !prealloc {
        return Err(Errno::ENOTSUPP);
    }
    if numa_node != NUMA_NO_NODE && (percpu || percpu_lru) {
        return Err(Errno::EINVAL);
    }
    if attr.max_entries == 0 || attr.key_size == 0 || attr.value_size == 0 {
        return Err(Errno::EINVAL);
    }
    // User space could not access an element this big through the syscall.
    if attr.key_size as u64 + attr.value_size as u64 >= KMALLOC_MAX_SIZE - table::SIZEOF_HTAB_ELEM {
        return Err(Errno::E2BIG);
    }
    if percpu && round_up8(attr.value_size as u64) > PCPU_MIN_UNIT_SIZE {
        return Err(Errno::E2BIG);
    }
    Ok(())
}

/// `fd_htab_map_alloc_check`: the value is a 4-byte handle (`EINVAL` otherwise), checked
/// before everything else. Context: syscall.
fn fd_htab_map_alloc_check(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<()> {
    if attr.value_size != 4 {
        return Err(Errno::EINVAL);
    }
    htab_map_alloc_check(attr, ctx)
}

/// `htab_map_alloc`, assuming [`htab_map_alloc_check`] passed. Context: syscall.
///
/// A per-CPU LRU rounds `max_entries` up to a multiple of the CPU count so every CPU's list
/// gets the same number of elements (down instead if rounding up wraps). `E2BIG` past 2^31
/// entries or 2^27 buckets (`U32_MAX / sizeof(struct bucket)`); `ENOMEM` when memory cannot be
/// had.
fn htab_table(attr: &MapAttr, ctx: &AllocCtx<'_>, kind: Kind) -> Result<table::Htab> {
    let nr_cpus = ctx.nr_cpus.max(1);
    let mut max_entries = attr.max_entries;
    if attr.map_flags & BPF_F_NO_COMMON_LRU != 0 {
        // The kernel's `roundup` in unsigned int arithmetic: it may wrap.
        let up = attr.max_entries.wrapping_add(nr_cpus - 1) / nr_cpus * nr_cpus;
        max_entries = if up < attr.max_entries {
            attr.max_entries - attr.max_entries % nr_cpus
        } else {
            up
        };
    }
    if max_entries as u64 > 1u64 << 31 {
        return Err(Errno::E2BIG);
    }
    let n_buckets = max_entries.next_power_of_two();
    if n_buckets as u64 > MAX_BUCKETS {
        return Err(Errno::E2BIG);
    }
    let g = table::Geometry {
        key_size: attr.key_size,
        value_size: attr.value_size,
        max_entries,
        n_buckets,
        prealloc: attr.map_flags & BPF_F_NO_PREALLOC == 0,
        zero_seed: attr.map_flags & BPF_F_ZERO_SEED != 0,
        nr_cpus,
    };
    table::Htab::new(kind, &g)
}

fn htab_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(HtabMap(htab_table(attr, ctx, Kind::Hash)?)))
}

fn htab_percpu_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    Ok(Box::new(PercpuHtabMap(htab_table(
        attr,
        ctx,
        Kind::Percpu,
    )?)))
}

fn htab_lru_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let t = htab_table(attr, ctx, Kind::Lru)?;
    Ok(Box::new(LruHtabMap(lru::lru_table(
        t,
        attr.map_flags & BPF_F_NO_COMMON_LRU != 0,
    ))))
}

fn htab_lru_percpu_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let t = htab_table(attr, ctx, Kind::LruPercpu)?;
    Ok(Box::new(LruPercpuHtabMap(lru::lru_table(
        t,
        attr.map_flags & BPF_F_NO_COMMON_LRU != 0,
    ))))
}

/// `htab_of_map_alloc`: the template first (`EBADF`, `EINVAL`, `ENOTSUPP` from
/// [`map_in_map::meta_alloc`]), then the table. Context: syscall.
fn htab_of_map_alloc(attr: &MapAttr, ctx: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> {
    let meta = map_in_map::meta_alloc(ctx.files, attr.inner_map_fd)?;
    let htab = htab_table(attr, ctx, Kind::OfMaps)?;
    Ok(Box::new(HtabOfMaps { htab, meta }))
}

/// `map_check_no_btf`: an outer map can carry no BTF description (`ENOTSUPP`).
fn map_check_no_btf(_attr: &MapAttr, _key: BtfKind, _value: BtfKind) -> Result<()> {
    Err(Errno::ENOTSUPP)
}

/// Registry row of `BPF_MAP_TYPE_HASH` (`htab_map_ops`). Unprivileged; generic inner-map
/// compatibility.
pub static HTAB_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_HASH,
    alloc_check: Some(htab_map_alloc_check),
    alloc: htab_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: true,
};

/// Registry row of `BPF_MAP_TYPE_PERCPU_HASH` (`htab_percpu_map_ops`). Unprivileged.
pub static HTAB_PERCPU_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_PERCPU_HASH,
    alloc_check: Some(htab_map_alloc_check),
    alloc: htab_percpu_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: true,
};

/// Registry row of `BPF_MAP_TYPE_LRU_HASH` (`htab_lru_map_ops`). Needs CAP_BPF.
pub static HTAB_LRU_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_LRU_HASH,
    alloc_check: Some(htab_map_alloc_check),
    alloc: htab_lru_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: false,
};

/// Registry row of `BPF_MAP_TYPE_LRU_PERCPU_HASH` (`htab_lru_percpu_map_ops`). Needs CAP_BPF.
pub static HTAB_LRU_PERCPU_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_LRU_PERCPU_HASH,
    alloc_check: Some(htab_map_alloc_check),
    alloc: htab_lru_percpu_alloc,
    meta_equal: Some(map_in_map::meta_equal),
    check_btf: None,
    unprivileged: false,
};

/// Registry row of `BPF_MAP_TYPE_HASH_OF_MAPS` (`htab_of_maps_map_ops`). Unprivileged; no
/// `map_meta_equal` (an outer map is never an inner map); any BTF value type is `ENOTSUPP`.
pub static HTAB_OF_MAPS_MAP_OPS: MapTypeOps = MapTypeOps {
    map_type: BPF_MAP_TYPE_HASH_OF_MAPS,
    alloc_check: Some(fd_htab_map_alloc_check),
    alloc: htab_of_map_alloc,
    meta_equal: None,
    check_btf: Some(map_check_no_btf),
    unprivileged: true,
};

/// A program's `bpf_map_lookup_elem` on a HASH_OF_MAPS: the inner map stored under `key`, or
/// `None` for a missing key.
///
/// The reference lives as long as `guard`: a read-side section of `map`'s normal RCU flavour
/// (non-sleepable programs), or of its tasks-trace flavour while a sleepable program uses `map`
/// ([`BpfMap::inc_sleepable`]). An inner map removed from the table is freed only after a grace
/// period of every flavour that may hold it, and the table's own elements outlive both (pooled,
/// or freed after both grace periods). Returns `None` as well if `map` is not a hash of maps or
/// `guard` is of a flavour that does not protect it ([`BpfMap::guard_protects_inner`]).
pub fn hash_of_maps_lookup<'g>(
    map: &'g BpfMap,
    guard: &'g RcuGuard<'_>,
    key: &[u8],
) -> Option<&'g BpfMap> {
    if !map.guard_protects_inner(guard) {
        return None;
    }
    let hom = map.ops_as::<HtabOfMaps>()?;
    let p = hom.lookup_elem(
        map,
        &OpCtx {
            cpu: 0,
            files: None,
        },
        key,
    )?;
    // SAFETY: the element owned a reference on the inner map when we loaded the pointer inside
    // `guard`'s section. A map leaving the table is put with `need_defer`, so its free waits
    // for a normal grace period begun after that, and for a tasks-trace one too if the
    // sleepable count was raised; `guard_protects_inner` admitted only guards of a flavour
    // waited for.
    Some(unsafe { p.cast::<BpfMap>().as_ref() })
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::table::htab_map_hash;

    #[test]
    fn hash_picks_jhash2_for_word_keys() {
        // jhash2 over one word equals jhash over its 4 bytes on little-endian hosts, so
        // compare against lengths where the two differ: 3 bytes uses jhash.
        assert_eq!(htab_map_hash(&[], 0), 0xdead_beef);
        let k = 7u32.to_ne_bytes();
        assert_eq!(htab_map_hash(&k, 0), crate::map::jhash::jhash2(&[7], 0));
        assert_eq!(
            htab_map_hash(&k[..3], 5),
            crate::map::jhash::jhash(&k[..3], 5)
        );
    }
}

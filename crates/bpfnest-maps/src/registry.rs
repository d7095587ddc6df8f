// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The map-type table: `map_type -> operations` (mirrors `include/linux/bpf_types.h`).
//!
//! Types the kernel has but bpfnest does not implement are absent: creating one fails with
//! `EINVAL`, as the kernel does for a type compiled out of its build.

use crate::attr::MapAttr;
use crate::bpf_map::{BpfMap, MapMeta};
use crate::errno::Result;
use crate::object::FileTable;
use crate::ops::MapOps;
use crate::rcu::Rcu;
use crate::uapi::*;

/// Capabilities of the creating context (`bpf_token_capable`, `bpf_bypass_spec_v1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// CAP_SYS_ADMIN.
    pub sys_admin: bool,
    /// CAP_BPF.
    pub bpf: bool,
    /// CAP_PERFMON.
    pub perfmon: bool,
    /// CAP_NET_ADMIN.
    pub net_admin: bool,
}

impl Caps {
    /// Root: every capability.
    pub const ROOT: Caps = Caps {
        sys_admin: true,
        bpf: true,
        perfmon: true,
        net_admin: true,
    };
    /// An unprivileged user.
    pub const NONE: Caps = Caps {
        sys_admin: false,
        bpf: false,
        perfmon: false,
        net_admin: false,
    };

    /// `bpf_bypass_spec_v1`: may skip Spectre-v1 index masking.
    pub fn bypass_spec_v1(&self) -> bool {
        self.perfmon || self.sys_admin
    }
}

/// What `map_alloc_check`/`map_alloc` may consult besides the attributes.
pub struct AllocCtx<'a> {
    /// Number of possible CPUs (per-CPU storage, LRU free lists).
    pub nr_cpus: u32,
    /// The creator's capabilities.
    pub caps: Caps,
    /// The runtime's RCU flavours, for deferred frees of elements.
    pub rcu: &'a Rcu,
    /// The creator's handle table (outer maps resolve `inner_map_fd` here).
    pub files: &'a dyn FileTable,
}

/// `map_alloc_check`.
pub type AllocCheckFn = fn(&MapAttr, &AllocCtx<'_>) -> Result<()>;
/// `map_alloc`.
pub type AllocFn = fn(&MapAttr, &AllocCtx<'_>) -> Result<Box<dyn MapOps>>;
/// `map_meta_equal`.
pub type MetaEqualFn = fn(&MapMeta, &BpfMap) -> bool;
/// `map_check_btf` on the kinds of the key and value types.
pub type CheckBtfFn = fn(&MapAttr, BtfKind, BtfKind) -> Result<()>;

/// One row of the type table (the static half of `struct bpf_map_ops`).
#[derive(Debug)]
pub struct MapTypeOps {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// `map_alloc_check`: pure validation, run before anything is allocated.
    pub alloc_check: Option<AllocCheckFn>,
    /// `map_alloc`: may assume `alloc_check` passed.
    pub alloc: AllocFn,
    /// `map_meta_equal`: can a map be inserted into an outer map whose template is `meta`?
    /// `None`: the type can never be an inner map (template refused with `ENOTSUPP`).
    pub meta_equal: Option<MetaEqualFn>,
    /// `map_check_btf` with the kinds of the key and value types. `None` as in the kernel:
    /// then a key type id is mandatory.
    pub check_btf: Option<CheckBtfFn>,
    /// Whether the type is in the "unprivileged" list of `map_create` (no CAP_BPF needed).
    pub unprivileged: bool,
}

/// What `map_check_btf` needs to know about a BTF type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtfKind {
    /// Type id 0.
    Void,
    /// A 32-bit integer (`btf_type_is_i32`).
    Int32,
    /// Another integer.
    Int,
    /// A struct.
    Struct,
    /// A union (LPM tries refuse union keys).
    Union,
    /// A `DATASEC` (global data maps).
    Datasec,
    /// Anything else.
    Other,
}

/// The operations of `map_type`, or `None` for an unknown or unimplemented type.
pub fn find(map_type: u32) -> Option<&'static MapTypeOps> {
    use crate::map::*;
    Some(match map_type {
        BPF_MAP_TYPE_ARRAY => &arraymap::ARRAY_MAP_OPS,
        BPF_MAP_TYPE_PERCPU_ARRAY => &arraymap::PERCPU_ARRAY_MAP_OPS,
        BPF_MAP_TYPE_PROG_ARRAY => &arraymap::PROG_ARRAY_MAP_OPS,
        BPF_MAP_TYPE_ARRAY_OF_MAPS => &arraymap::ARRAY_OF_MAPS_MAP_OPS,
        BPF_MAP_TYPE_HASH => &hashtab::HTAB_MAP_OPS,
        BPF_MAP_TYPE_PERCPU_HASH => &hashtab::HTAB_PERCPU_MAP_OPS,
        BPF_MAP_TYPE_LRU_HASH => &hashtab::HTAB_LRU_MAP_OPS,
        BPF_MAP_TYPE_LRU_PERCPU_HASH => &hashtab::HTAB_LRU_PERCPU_MAP_OPS,
        BPF_MAP_TYPE_HASH_OF_MAPS => &hashtab::HTAB_OF_MAPS_MAP_OPS,
        BPF_MAP_TYPE_LPM_TRIE => &lpm_trie::TRIE_MAP_OPS,
        BPF_MAP_TYPE_QUEUE => &queue_stack::QUEUE_MAP_OPS,
        BPF_MAP_TYPE_STACK => &queue_stack::STACK_MAP_OPS,
        BPF_MAP_TYPE_BLOOM_FILTER => &bloom_filter::BLOOM_FILTER_MAP_OPS,
        BPF_MAP_TYPE_RINGBUF => &ringbuf::RINGBUF_MAP_OPS,
        _ => return None,
    })
}

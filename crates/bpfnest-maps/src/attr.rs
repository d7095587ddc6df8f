// SPDX-License-Identifier: Apache-2.0 OR MIT
//! [`MapAttr`]: the raw integers of `BPF_MAP_CREATE`, exactly as user space passes them.
//!
//! Nothing here is validated: unknown types and flag bits must reach the code that returns the
//! kernel's errno for them.

use crate::uapi::BPF_OBJ_NAME_LEN;

/// The map-create part of `union bpf_attr`.
///
/// `inner_map_fd` and `btf_fd` are *handle numbers* in the creating [`crate::Runtime`]'s handle
/// table, the userspace counterpart of a process's fd table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapAttr {
    /// `enum bpf_map_type`, raw.
    pub map_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries (for RINGBUF: the data size in bytes).
    pub max_entries: u32,
    /// `BPF_F_*` flags, raw.
    pub map_flags: u32,
    /// Handle of the inner-map template (outer map types only; ignored by every other type).
    pub inner_map_fd: u32,
    /// NUMA node, honoured only with `BPF_F_NUMA_NODE`.
    pub numa_node: u32,
    /// Name, NUL-padded; at most 15 bytes are meaningful.
    pub map_name: [u8; BPF_OBJ_NAME_LEN],
    /// Offload target; bpfnest has no devices, so non-zero fails as an absent device would.
    pub map_ifindex: u32,
    /// Handle of a loaded BTF object.
    pub btf_fd: u32,
    /// BTF type id of the key.
    pub btf_key_type_id: u32,
    /// BTF type id of the value.
    pub btf_value_type_id: u32,
    /// BTF type id of a vmlinux value type (struct_ops only).
    pub btf_vmlinux_value_type_id: u32,
    /// Type-specific extra (bloom filter hash count, arena address).
    pub map_extra: u64,
    /// Size of `excl_prog_hash` (6.18): non-zero makes the map exclusive to one program.
    pub excl_prog_hash_size: u32,
}

impl MapAttr {
    /// An attribute set with the four basic fields and everything else zero.
    pub const fn new(map_type: u32, key_size: u32, value_size: u32, max_entries: u32) -> MapAttr {
        MapAttr {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags: 0,
            inner_map_fd: 0,
            numa_node: 0,
            map_name: [0; BPF_OBJ_NAME_LEN],
            map_ifindex: 0,
            btf_fd: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
            map_extra: 0,
            excl_prog_hash_size: 0,
        }
    }

    /// Sets `map_flags`.
    pub const fn flags(mut self, map_flags: u32) -> MapAttr {
        self.map_flags = map_flags;
        self
    }

    /// Sets `inner_map_fd` to a template handle number.
    pub const fn inner_map(mut self, handle: u32) -> MapAttr {
        self.inner_map_fd = handle;
        self
    }

    /// Sets `map_extra`.
    pub const fn extra(mut self, map_extra: u64) -> MapAttr {
        self.map_extra = map_extra;
        self
    }

    /// Sets the name, copying up to 16 bytes as `strncpy` into `map_name` would.
    pub fn name(mut self, name: &str) -> MapAttr {
        self.map_name = [0; BPF_OBJ_NAME_LEN];
        let n = name.len().min(BPF_OBJ_NAME_LEN);
        self.map_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        self
    }
}

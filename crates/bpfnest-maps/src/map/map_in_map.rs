// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Map-in-map glue shared by ARRAY_OF_MAPS and HASH_OF_MAPS. Mirrors `kernel/bpf/map_in_map.c`.
//!
//! * [`meta_alloc`] copies what the template fixes into a private [`MapMeta`]; the outer map
//!   keeps no reference to the template.
//! * [`meta_equal`] is the generic `bpf_map_meta_equal`; types with extra rules (ARRAY, XSKMAP)
//!   wrap it in their registry row.
//! * [`fd_get_ptr`] resolves the handle in an update's value and checks it against the meta
//!   with the *template type's* `meta_equal`; [`fd_put_ptr`] drops a removed inner map with
//!   the deferral its outer map requires.
//!
//! Inner maps are stored as `*const BpfMap` slots owning one `refcnt` (never a user
//! reference, so an inner map whose handles are all closed has `usercnt == 0`, as on Linux).

use crate::bpf_map::{BpfMap, MapMeta, MapRef};
use crate::errno::{Errno, Result};
use crate::object::FileTable;
use crate::record::record_equal;
use crate::uapi::*;

/// `bpf_map_meta_alloc`: builds the outer map's private copy of the template at `inner_fd`.
///
/// Errors in the kernel's order: `EBADF` (not open), `EINVAL` (not a map), `EINVAL` (the
/// template is itself an outer map: one level of nesting only), `ENOTSUPP` (the type has no
/// `map_meta_equal`), `ENOTSUPP` (an exclusive map, 6.18).
pub fn meta_alloc(files: &dyn FileTable, inner_fd: u32) -> Result<MapMeta> {
    let inner = files.map_get(inner_fd)?;
    if inner.inner_map_meta().is_some() {
        return Err(Errno::EINVAL);
    }
    if inner.type_ops.meta_equal.is_none() {
        return Err(Errno::ENOTSUPP);
    }
    if inner.excl {
        return Err(Errno::ENOTSUPP);
    }
    let is_array = matches!(
        inner.map_type,
        BPF_MAP_TYPE_ARRAY | BPF_MAP_TYPE_PERCPU_ARRAY
    );
    Ok(MapMeta {
        map_type: inner.map_type,
        key_size: inner.key_size,
        value_size: inner.value_size,
        map_flags: inner.map_flags,
        max_entries: inner.max_entries,
        record: inner.record.clone().filter(|r| !r.is_empty()),
        index_mask: if is_array {
            array_index_mask(inner.max_entries)
        } else {
            0
        },
        elem_size: if is_array {
            round_up8(inner.value_size as u64) as u32
        } else {
            0
        },
        bypass_spec_v1: is_array && inner.bypass_spec_v1,
        type_ops: inner.type_ops,
    })
}

/// The array index mask the kernel computes in `array_map_alloc`: next power of two minus one.
pub fn array_index_mask(max_entries: u32) -> u32 {
    if max_entries <= 1 {
        return 0;
    }
    let bits = 32 - (max_entries - 1).leading_zeros();
    ((1u64 << bits) - 1) as u32
}

/// `bpf_map_meta_equal`: type, key size, value size, stored flags and special-field record.
/// `max_entries` is not compared (since 5.10).
pub fn meta_equal(meta: &MapMeta, map: &BpfMap) -> bool {
    meta.map_type == map.map_type
        && meta.key_size == map.key_size
        && meta.value_size == map.value_size
        && meta.map_flags == map.map_flags
        && record_equal(meta.record.as_ref(), map.record.as_ref())
}

/// `bpf_map_fd_get_ptr`: resolves the handle an outer-map update carries and takes one
/// `refcnt` reference on the inner map if it matches the template.
///
/// `EBADF`/`EINVAL` from the handle lookup, `ENOTSUPP` for an exclusive map, `EINVAL` when the
/// template's `map_meta_equal` refuses the map (an outer map never matches: its type differs).
pub fn fd_get_ptr(outer: &BpfMap, files: &dyn FileTable, ufd: u32) -> Result<MapRef> {
    let inner = files.map_get(ufd)?;
    if inner.excl {
        return Err(Errno::ENOTSUPP);
    }
    let meta = outer.inner_map_meta().ok_or(Errno::EINVAL)?;
    let eq = meta.type_ops.meta_equal.ok_or(Errno::EINVAL)?;
    if eq(meta, &inner) {
        Ok(inner)
    } else {
        Err(Errno::EINVAL)
    }
}

/// `bpf_map_fd_put_ptr`: releases a slot's reference. `need_defer` is true when the outer map
/// lives on (replace, delete): programs may still be using the inner map, so its free waits
/// for the grace periods `outer`'s programs require. It is false while the outer map itself is
/// being freed, when no program can hold it.
pub fn fd_put_ptr(outer: &BpfMap, inner: MapRef, need_defer: bool) {
    if need_defer {
        inner.put_deferred(outer);
    } else {
        drop(inner);
    }
}

/// `bpf_map_fd_sys_lookup_elem`: what user space reads from a slot is the inner map's id.
pub fn fd_sys_lookup_elem(inner: &BpfMap) -> u32 {
    inner.id()
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    #[test]
    fn index_mask_is_next_pow2_minus_one() {
        assert_eq!(array_index_mask(1), 0);
        assert_eq!(array_index_mask(2), 1);
        assert_eq!(array_index_mask(3), 3);
        assert_eq!(array_index_mask(5), 7);
        assert_eq!(array_index_mask(8), 7);
        assert_eq!(array_index_mask(u32::MAX), u32::MAX);
    }
}

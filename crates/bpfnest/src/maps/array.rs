// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::{check_map, impl_try_from_handle, op_err, MapError};

/// A typed view of a `BPF_MAP_TYPE_ARRAY`: `max_entries` values of type `V`, indexed by `u32`.
#[doc(alias = "BPF_MAP_TYPE_ARRAY")]
#[derive(Debug)]
pub struct Array<T, V> {
    map: T,
    _v: PhantomData<V>,
}

impl<T: Borrow<MapHandle>, V: Pod> Array<T, V> {
    /// Checks the map's type and sizes.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_ARRAY],
            Some(4),
            Some(size_of::<V>()),
        )?;
        Ok(Array {
            map,
            _v: PhantomData,
        })
    }

    /// `max_entries`.
    pub fn len(&self) -> u32 {
        self.map.borrow().info().max_entries
    }

    /// Whether the array has no entries (never: arrays have at least one).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index` (`flags`: 0 or `BPF_F_LOCK`). Out of range gives `ENOENT`.
    pub fn get(&self, index: u32, flags: u64) -> Result<V, MapError> {
        let h = self.map.borrow();
        let mut v = V::zeroed();
        h.lookup_elem(
            Some(&index.to_ne_bytes()),
            bytemuck::bytes_of_mut(&mut v),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM"))?;
        Ok(v)
    }

    /// All values in index order.
    pub fn iter(&self) -> impl Iterator<Item = Result<V, MapError>> + '_ {
        (0..self.len()).map(move |i| self.get(i, 0))
    }

    /// The underlying handle.
    pub fn handle(&self) -> &MapHandle {
        self.map.borrow()
    }
}

impl<T: BorrowMut<MapHandle>, V: Pod> Array<T, V> {
    /// Stores `value` at `index` (`flags`: `BPF_ANY`, `BPF_EXIST`, optionally `BPF_F_LOCK`).
    /// Out of range gives `E2BIG`; `BPF_NOEXIST` gives `EEXIST`, as every slot exists.
    pub fn set(&mut self, index: u32, value: impl Borrow<V>, flags: u64) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(
            Some(&index.to_ne_bytes()),
            bytemuck::bytes_of(value.borrow()),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }
}

impl_try_from_handle!(Array<V>);

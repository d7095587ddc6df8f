// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::{Errno, MapHandle};
use bytemuck::Pod;

use super::{check_map, impl_try_from_handle, MapError};

/// A typed view of a `BPF_MAP_TYPE_BLOOM_FILTER`.
#[doc(alias = "BPF_MAP_TYPE_BLOOM_FILTER")]
#[derive(Debug)]
pub struct BloomFilter<T, V> {
    map: T,
    _v: PhantomData<V>,
}

impl<T: Borrow<MapHandle>, V: Pod> BloomFilter<T, V> {
    /// Checks the map's type and value size.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_BLOOM_FILTER],
            Some(0),
            Some(size_of::<V>()),
        )?;
        Ok(BloomFilter {
            map,
            _v: PhantomData,
        })
    }

    /// Whether `value` may be in the set (false positives possible, false negatives not).
    pub fn contains(&self, value: &V) -> Result<bool, MapError> {
        let h = self.map.borrow();
        let mut v = *value;
        match h.lookup_elem(None, bytemuck::bytes_of_mut(&mut v), 0) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(MapError::Op {
                op: "BPF_MAP_LOOKUP_ELEM",
                map_id: h.id(),
                errno,
            }),
        }
    }
}

impl<T: BorrowMut<MapHandle>, V: Pod> BloomFilter<T, V> {
    /// Adds `value`.
    pub fn insert(&mut self, value: impl Borrow<V>, flags: u64) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(None, bytemuck::bytes_of(value.borrow()), flags)
            .map_err(|errno| MapError::Op {
                op: "BPF_MAP_UPDATE_ELEM",
                map_id: h.id(),
                errno,
            })
    }
}

impl_try_from_handle!(BloomFilter<V>);

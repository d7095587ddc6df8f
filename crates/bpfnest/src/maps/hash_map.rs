// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::per_cpu::{buf_len, PerCpuValues};
use super::{check_map, enoent_none, impl_try_from_handle, keys, op_err, MapError};

/// A typed view of a `BPF_MAP_TYPE_HASH` or `BPF_MAP_TYPE_LRU_HASH`.
#[doc(alias = "BPF_MAP_TYPE_HASH")]
#[doc(alias = "BPF_MAP_TYPE_LRU_HASH")]
#[derive(Debug)]
pub struct HashMap<T, K, V> {
    map: T,
    _kv: PhantomData<(K, V)>,
}

impl<T: Borrow<MapHandle>, K: Pod, V: Pod> HashMap<T, K, V> {
    /// Checks the map's type and sizes.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LRU_HASH],
            Some(size_of::<K>()),
            Some(size_of::<V>()),
        )?;
        Ok(HashMap {
            map,
            _kv: PhantomData,
        })
    }

    /// The value for `key`, `None` if absent.
    pub fn get(&self, key: &K, flags: u64) -> Result<Option<V>, MapError> {
        let h = self.map.borrow();
        let mut v = V::zeroed();
        enoent_none(
            h.lookup_elem(
                Some(bytemuck::bytes_of(key)),
                bytemuck::bytes_of_mut(&mut v),
                flags,
            )
            .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
        )
        .map(|o| o.map(|()| v))
    }

    /// Keys in the kernel's iteration order (bucket order).
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        keys::<K, T>(&self.map)
    }

    /// The underlying handle.
    pub fn handle(&self) -> &MapHandle {
        self.map.borrow()
    }

    /// `(key, value)` pairs in iteration order; keys deleted meanwhile are skipped.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, V), MapError>> + '_ {
        self.keys().filter_map(move |k| match k {
            Ok(k) => self.get(&k, 0).transpose().map(|v| v.map(|v| (k, v))),
            Err(e) => Some(Err(e)),
        })
    }
}

impl<T: BorrowMut<MapHandle>, K: Pod, V: Pod> HashMap<T, K, V> {
    /// Inserts or replaces (`flags`: `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`, `BPF_F_LOCK`).
    pub fn insert(
        &mut self,
        key: impl Borrow<K>,
        value: impl Borrow<V>,
        flags: u64,
    ) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(
            Some(bytemuck::bytes_of(key.borrow())),
            bytemuck::bytes_of(value.borrow()),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }

    /// Removes `key` (`ENOENT` if absent).
    pub fn remove(&mut self, key: &K) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.delete_elem(Some(bytemuck::bytes_of(key)))
            .map_err(op_err(h, "BPF_MAP_DELETE_ELEM"))
    }
}

impl_try_from_handle!(HashMap<K, V>);

/// A typed view of a `BPF_MAP_TYPE_PERCPU_HASH` or `BPF_MAP_TYPE_LRU_PERCPU_HASH`.
#[doc(alias = "BPF_MAP_TYPE_PERCPU_HASH")]
#[doc(alias = "BPF_MAP_TYPE_LRU_PERCPU_HASH")]
#[derive(Debug)]
pub struct PerCpuHashMap<T, K, V> {
    map: T,
    _kv: PhantomData<(K, V)>,
}

impl<T: Borrow<MapHandle>, K: Pod, V: Pod> PerCpuHashMap<T, K, V> {
    /// Checks the map's type and sizes.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_LRU_PERCPU_HASH],
            Some(size_of::<K>()),
            Some(size_of::<V>()),
        )?;
        Ok(PerCpuHashMap {
            map,
            _kv: PhantomData,
        })
    }

    /// Every CPU's value for `key`, `None` if absent.
    pub fn get(&self, key: &K, flags: u64) -> Result<Option<PerCpuValues<V>>, MapError> {
        let h = self.map.borrow();
        let mut buf = vec![0u8; buf_len::<V>(h)];
        enoent_none(
            h.lookup_elem(Some(bytemuck::bytes_of(key)), &mut buf, flags)
                .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
        )
        .map(|o| o.map(|()| PerCpuValues::from_bytes(&buf)))
    }

    /// Keys in iteration order.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        keys::<K, T>(&self.map)
    }
}

impl<T: BorrowMut<MapHandle>, K: Pod, V: Pod> PerCpuHashMap<T, K, V> {
    /// Inserts or replaces every CPU's value for `key`.
    pub fn insert(
        &mut self,
        key: impl Borrow<K>,
        values: PerCpuValues<V>,
        flags: u64,
    ) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        let nr_cpus = h.runtime().nr_cpus() as usize;
        if values.len() != nr_cpus {
            return Err(MapError::InvalidCpuCount {
                got: values.len(),
                nr_cpus,
            });
        }
        h.update_elem(
            Some(bytemuck::bytes_of(key.borrow())),
            &values.to_bytes(),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &K) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.delete_elem(Some(bytemuck::bytes_of(key)))
            .map_err(op_err(h, "BPF_MAP_DELETE_ELEM"))
    }
}

impl_try_from_handle!(PerCpuHashMap<K, V>);

// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::{check_map, enoent_none, impl_try_from_handle, keys, op_err, MapError};

/// A typed view of a `BPF_MAP_TYPE_ARRAY_OF_MAPS`: slots hold inner maps; user space inserts
/// by handle and reads back the inner map's id.
///
/// ```
/// use bpfnest::maps::ArrayOfMaps;
/// use bpfnest::{uapi::*, Errno, MapAttr, Runtime};
///
/// let rt = Runtime::default();
/// // BPF_F_INNER_MAP lets inner arrays differ in max_entries.
/// let tmpl = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1).flags(BPF_F_INNER_MAP))?;
/// let outer = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 8).inner_map(tmpl.raw()))?;
/// let big = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1024).flags(BPF_F_INNER_MAP))?;
///
/// let mut slots = ArrayOfMaps::new(outer)?;
/// slots.set(3, &big, BPF_ANY)?;
/// assert_eq!(slots.get(3)?, Some(big.id()));
/// // Array-of-maps updates take BPF_ANY only, as on Linux.
/// assert_eq!(slots.set(4, &big, BPF_NOEXIST).unwrap_err().errno(), Some(Errno::EINVAL));
/// slots.clear_index(3)?;
/// assert_eq!(slots.get(3)?, None);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "BPF_MAP_TYPE_ARRAY_OF_MAPS")]
#[derive(Debug)]
pub struct ArrayOfMaps<T> {
    map: T,
}

impl<T: Borrow<MapHandle>> ArrayOfMaps<T> {
    /// Checks the map's type.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_ARRAY_OF_MAPS],
            Some(4),
            Some(4),
        )?;
        Ok(ArrayOfMaps { map })
    }

    /// The id of the inner map at `index`; `None` for an empty slot or an index out of range.
    pub fn get(&self, index: u32) -> Result<Option<u32>, MapError> {
        let h = self.map.borrow();
        let mut id = [0u8; 4];
        enoent_none(
            h.lookup_elem(Some(&index.to_ne_bytes()), &mut id, 0)
                .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
        )
        .map(|o| o.map(|()| u32::from_ne_bytes(id)))
    }

    /// `max_entries`.
    pub fn len(&self) -> u32 {
        self.map.borrow().info().max_entries
    }

    /// The underlying handle.
    pub fn handle(&self) -> &MapHandle {
        self.map.borrow()
    }

    /// Whether the outer map has no slots (never).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T: BorrowMut<MapHandle>> ArrayOfMaps<T> {
    /// Puts `inner` into slot `index`. Returns once no non-sleepable program can still see the
    /// map that was there before. `flags` must be `BPF_ANY` (the kernel rejects the others).
    pub fn set(&mut self, index: u32, inner: &MapHandle, flags: u64) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(
            Some(&index.to_ne_bytes()),
            &inner.raw().to_ne_bytes(),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }

    /// Empties slot `index` (`ENOENT` if already empty, `E2BIG` out of range).
    pub fn clear_index(&mut self, index: u32) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.delete_elem(Some(&index.to_ne_bytes()))
            .map_err(op_err(h, "BPF_MAP_DELETE_ELEM"))
    }
}

/// A typed view of a `BPF_MAP_TYPE_HASH_OF_MAPS` keyed by `K`.
///
/// ```
/// use bpfnest::maps::{HashMap, HashOfMaps};
/// use bpfnest::{uapi::*, Errno, MapAttr, Runtime};
///
/// let rt = Runtime::default();
/// let tmpl = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 64))?;
/// let outer = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, 16).inner_map(tmpl.raw()))?;
/// let mut per_tenant = HashOfMaps::<_, u32>::new(outer)?;
///
/// let mut counters: HashMap<_, u32, u64> = HashMap::new(rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 8))?)?;
/// counters.insert(1, 10, BPF_ANY)?;
/// per_tenant.insert(7, counters.handle(), BPF_NOEXIST)?;
/// assert_eq!(per_tenant.get(&7)?, Some(counters.handle().id()));
/// assert_eq!(per_tenant.insert(7, counters.handle(), BPF_NOEXIST).unwrap_err().errno(), Some(Errno::EEXIST));
///
/// // Replacing returns once no non-sleepable program can still see the old inner map.
/// let fresh = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 32))?;
/// per_tenant.insert(7, &fresh, BPF_EXIST)?;
/// assert_eq!(per_tenant.get(&7)?, Some(fresh.id()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "BPF_MAP_TYPE_HASH_OF_MAPS")]
#[derive(Debug)]
pub struct HashOfMaps<T, K> {
    map: T,
    _k: PhantomData<K>,
}

impl<T: Borrow<MapHandle>, K: Pod> HashOfMaps<T, K> {
    /// Checks the map's type and key size.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_HASH_OF_MAPS],
            Some(size_of::<K>()),
            Some(4),
        )?;
        Ok(HashOfMaps {
            map,
            _k: PhantomData,
        })
    }

    /// The id of the inner map under `key`, `None` if absent.
    pub fn get(&self, key: &K) -> Result<Option<u32>, MapError> {
        let h = self.map.borrow();
        let mut id = [0u8; 4];
        enoent_none(
            h.lookup_elem(Some(bytemuck::bytes_of(key)), &mut id, 0)
                .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
        )
        .map(|o| o.map(|()| u32::from_ne_bytes(id)))
    }

    /// Keys in iteration order.
    pub fn keys(&self) -> impl Iterator<Item = Result<K, MapError>> + '_ {
        keys::<K, T>(&self.map)
    }

    /// The underlying handle.
    pub fn handle(&self) -> &MapHandle {
        self.map.borrow()
    }
}

impl<T: BorrowMut<MapHandle>, K: Pod> HashOfMaps<T, K> {
    /// Inserts or replaces the inner map under `key` (`BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`).
    /// Returns once no non-sleepable program can still see a replaced map.
    pub fn insert(
        &mut self,
        key: impl Borrow<K>,
        inner: &MapHandle,
        flags: u64,
    ) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(
            Some(bytemuck::bytes_of(key.borrow())),
            &inner.raw().to_ne_bytes(),
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

impl<'a> TryFrom<&'a MapHandle> for ArrayOfMaps<&'a MapHandle> {
    type Error = MapError;
    fn try_from(h: &'a MapHandle) -> Result<Self, MapError> {
        ArrayOfMaps::new(h)
    }
}
impl<'a> TryFrom<&'a mut MapHandle> for ArrayOfMaps<&'a mut MapHandle> {
    type Error = MapError;
    fn try_from(h: &'a mut MapHandle) -> Result<Self, MapError> {
        ArrayOfMaps::new(h)
    }
}
impl TryFrom<MapHandle> for ArrayOfMaps<MapHandle> {
    type Error = MapError;
    fn try_from(h: MapHandle) -> Result<Self, MapError> {
        ArrayOfMaps::new(h)
    }
}
impl_try_from_handle!(HashOfMaps<K>);

// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;
use std::ops::Deref;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::{check_map, impl_try_from_handle, op_err, MapError};

/// One value per possible CPU, as per-CPU maps exchange them with user space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerCpuValues<V>(Box<[V]>);

impl<V: Pod> PerCpuValues<V> {
    /// Wraps one value per possible CPU.
    pub fn new(values: Vec<V>) -> Self {
        PerCpuValues(values.into_boxed_slice())
    }

    /// Splits the kernel's layout (`round_up(size_of V, 8)` bytes per CPU).
    pub(crate) fn from_bytes(buf: &[u8]) -> Self {
        let stride = round_up8(size_of::<V>() as u64) as usize;
        PerCpuValues(
            buf.chunks(stride)
                .map(|c| bytemuck::pod_read_unaligned(&c[..size_of::<V>()]))
                .collect(),
        )
    }

    /// Builds the kernel's layout.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let stride = round_up8(size_of::<V>() as u64) as usize;
        let mut out = vec![0u8; stride * self.0.len()];
        for (c, v) in out.chunks_mut(stride).zip(self.0.iter()) {
            c[..size_of::<V>()].copy_from_slice(bytemuck::bytes_of(v));
        }
        out
    }
}

impl<V> Deref for PerCpuValues<V> {
    type Target = [V];
    fn deref(&self) -> &[V] {
        &self.0
    }
}

pub(crate) fn buf_len<V>(h: &MapHandle) -> usize {
    round_up8(size_of::<V>() as u64) as usize * h.runtime().nr_cpus() as usize
}

/// A typed view of a `BPF_MAP_TYPE_PERCPU_ARRAY`.
///
/// ```
/// use bpfnest::maps::{PerCpuArray, PerCpuValues};
/// use bpfnest::{uapi::*, Config, MapAttr, Runtime};
///
/// // Per-CPU values come as one value per *possible* CPU; the count is a runtime setting.
/// let rt = Runtime::new(Config { nr_cpus: 4, ..Config::default() });
/// let mut pa = PerCpuArray::<_, u32>::new(rt.map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2))?)?;
/// pa.set(0, PerCpuValues::new(vec![1, 2, 3, 4]), BPF_ANY)?;
/// assert_eq!(&*pa.get(0, 0)?, &[1, 2, 3, 4]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[doc(alias = "BPF_MAP_TYPE_PERCPU_ARRAY")]
#[derive(Debug)]
pub struct PerCpuArray<T, V> {
    map: T,
    _v: PhantomData<V>,
}

impl<T: Borrow<MapHandle>, V: Pod> PerCpuArray<T, V> {
    /// Checks the map's type and sizes.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_PERCPU_ARRAY],
            Some(4),
            Some(size_of::<V>()),
        )?;
        Ok(PerCpuArray {
            map,
            _v: PhantomData,
        })
    }

    /// `max_entries`.
    pub fn len(&self) -> u32 {
        self.map.borrow().info().max_entries
    }

    /// Whether the array has no entries (never).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every CPU's value at `index`.
    pub fn get(&self, index: u32, flags: u64) -> Result<PerCpuValues<V>, MapError> {
        let h = self.map.borrow();
        let mut buf = vec![0u8; buf_len::<V>(h)];
        h.lookup_elem(Some(&index.to_ne_bytes()), &mut buf, flags)
            .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM"))?;
        Ok(PerCpuValues::from_bytes(&buf))
    }
}

impl<T: BorrowMut<MapHandle>, V: Pod> PerCpuArray<T, V> {
    /// Stores one value per CPU at `index`.
    pub fn set(&mut self, index: u32, values: PerCpuValues<V>, flags: u64) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        let nr_cpus = h.runtime().nr_cpus() as usize;
        if values.len() != nr_cpus {
            return Err(MapError::InvalidCpuCount {
                got: values.len(),
                nr_cpus,
            });
        }
        h.update_elem(Some(&index.to_ne_bytes()), &values.to_bytes(), flags)
            .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }
}

impl_try_from_handle!(PerCpuArray<V>);

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Typed views over maps, in the style of aya: sizes are checked once in `try_from`, reads need
//! `T: Borrow<MapHandle>`, writes `T: BorrowMut<MapHandle>`, and keys and values are
//! [`Pod`] types.
//!
//! `ENOENT` from a lookup becomes `Ok(None)` here and only here: the byte-level layer below
//! always reports the kernel's errno.

mod array;
mod bloom_filter;
mod hash_map;
mod lpm_trie;
mod of_maps;
mod per_cpu;
mod queue_stack;

use std::borrow::Borrow;

pub use array::Array;
pub use bloom_filter::BloomFilter;
pub use bpfnest_maps::BatchArgs;
pub use bytemuck::Pod;
pub use hash_map::{HashMap, PerCpuHashMap};
pub use lpm_trie::{Key, LpmTrie};
pub use of_maps::{ArrayOfMaps, HashOfMaps};
pub use per_cpu::{PerCpuArray, PerCpuValues};
pub use queue_stack::{Queue, Stack};

use bpfnest_maps::{Errno, MapHandle};

/// Errors of the typed views. Every variant that came from a map operation keeps its errno.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum MapError {
    /// A map operation failed with the kernel's errno.
    #[error("{op} on map {map_id} failed: {errno}")]
    Op {
        /// The bpf(2) command (`"BPF_MAP_UPDATE_ELEM"`).
        op: &'static str,
        /// Id of the map.
        map_id: u32,
        /// The errno.
        errno: Errno,
    },
    /// Creating the map failed.
    #[error("map creation failed: {errno}")]
    Create {
        /// The errno.
        errno: Errno,
    },
    /// The map's type is not one this view accepts.
    #[error("invalid map type {map_type}")]
    InvalidMapType {
        /// The map's `map_type`.
        map_type: u32,
    },
    /// The view's key type has the wrong size.
    #[error("invalid key size {size}, expected {expected}")]
    InvalidKeySize {
        /// `size_of::<K>()`.
        size: usize,
        /// The map's key size.
        expected: usize,
    },
    /// The view's value type has the wrong size.
    #[error("invalid value size {size}, expected {expected}")]
    InvalidValueSize {
        /// `size_of::<V>()`.
        size: usize,
        /// The map's value size.
        expected: usize,
    },
    /// A per-CPU value set does not have one value per possible CPU.
    #[error("{got} per-CPU values given, the map has {nr_cpus} CPUs")]
    InvalidCpuCount {
        /// Values given.
        got: usize,
        /// Possible CPUs.
        nr_cpus: usize,
    },
}

impl MapError {
    /// The kernel errno behind this error, if it came from an operation.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            MapError::Op { errno, .. } | MapError::Create { errno } => Some(*errno),
            _ => None,
        }
    }
}

/// Checks the map type and key/value sizes of a handle once, at view construction.
pub(crate) fn check_map(
    h: &MapHandle,
    types: &[u32],
    key: Option<usize>,
    value: Option<usize>,
) -> Result<(), MapError> {
    let info = h.info();
    if !types.contains(&info.map_type) {
        return Err(MapError::InvalidMapType {
            map_type: info.map_type,
        });
    }
    if let Some(k) = key {
        if k != info.key_size as usize {
            return Err(MapError::InvalidKeySize {
                size: k,
                expected: info.key_size as usize,
            });
        }
    }
    if let Some(v) = value {
        if v != info.value_size as usize {
            return Err(MapError::InvalidValueSize {
                size: v,
                expected: info.value_size as usize,
            });
        }
    }
    Ok(())
}

/// Wraps an errno from `op` on `h`.
pub(crate) fn op_err(h: &MapHandle, op: &'static str) -> impl FnOnce(Errno) -> MapError {
    let map_id = h.id();
    move |errno| MapError::Op { op, map_id, errno }
}

/// Folds `ENOENT` into `Ok(None)` (typed views only).
pub(crate) fn enoent_none<T>(r: Result<T, MapError>) -> Result<Option<T>, MapError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(MapError::Op {
            errno: Errno::ENOENT,
            ..
        }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Iterates a map's keys with `BPF_MAP_GET_NEXT_KEY` (`bpf_map_get_next_key` loops).
pub(crate) fn keys<K: Pod, T: Borrow<MapHandle>>(
    map: &T,
) -> impl Iterator<Item = Result<K, MapError>> + '_ {
    let mut prev: Option<K> = None;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let h = map.borrow();
        let mut next = K::zeroed();
        let r = h.get_next_key(
            prev.as_ref().map(bytemuck::bytes_of),
            bytemuck::bytes_of_mut(&mut next),
        );
        match r {
            Ok(()) => {
                prev = Some(next);
                Some(Ok(next))
            }
            Err(Errno::ENOENT) => {
                done = true;
                None
            }
            Err(errno) => {
                done = true;
                Some(Err(MapError::Op {
                    op: "BPF_MAP_GET_NEXT_KEY",
                    map_id: h.id(),
                    errno,
                }))
            }
        }
    })
}

macro_rules! impl_try_from_handle {
    ($view:ident < $($g:ident),* >) => {
        impl<'a, $($g: Pod),*> TryFrom<&'a MapHandle> for $view<&'a MapHandle, $($g),*> {
            type Error = MapError;
            fn try_from(h: &'a MapHandle) -> Result<Self, MapError> {
                $view::new(h)
            }
        }
        impl<'a, $($g: Pod),*> TryFrom<&'a mut MapHandle> for $view<&'a mut MapHandle, $($g),*> {
            type Error = MapError;
            fn try_from(h: &'a mut MapHandle) -> Result<Self, MapError> {
                $view::new(h)
            }
        }
        impl<$($g: Pod),*> TryFrom<MapHandle> for $view<MapHandle, $($g),*> {
            type Error = MapError;
            fn try_from(h: MapHandle) -> Result<Self, MapError> {
                $view::new(h)
            }
        }
    };
}
pub(crate) use impl_try_from_handle;

// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::{check_map, enoent_none, impl_try_from_handle, op_err, MapError};

/// An LPM trie key: a prefix length in bits and the data (`struct bpf_lpm_trie_key_u8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key<K> {
    prefix_len: u32,
    data: K,
}

impl<K: Pod> Key<K> {
    /// A key matching the first `prefix_len` bits of `data`.
    pub fn new(prefix_len: u32, data: K) -> Self {
        Key { prefix_len, data }
    }
    /// Prefix length in bits.
    pub fn prefix_len(&self) -> u32 {
        self.prefix_len
    }
    /// The data.
    pub fn data(&self) -> K {
        self.data
    }
    /// The kernel's byte layout: `u32` prefix length, then the data, unpadded.
    fn to_bytes(self) -> Vec<u8> {
        let mut b = self.prefix_len.to_ne_bytes().to_vec();
        b.extend_from_slice(bytemuck::bytes_of(&self.data));
        b
    }
    fn from_bytes(b: &[u8]) -> Self {
        let (p, d) = b.split_at(4);
        Key {
            prefix_len: u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
            data: bytemuck::pod_read_unaligned(d),
        }
    }
}

/// A typed view of a `BPF_MAP_TYPE_LPM_TRIE`.
#[doc(alias = "BPF_MAP_TYPE_LPM_TRIE")]
#[derive(Debug)]
pub struct LpmTrie<T, K, V> {
    map: T,
    _kv: PhantomData<(K, V)>,
}

impl<T: Borrow<MapHandle>, K: Pod, V: Pod> LpmTrie<T, K, V> {
    /// Checks the map's type and sizes.
    pub fn new(map: T) -> Result<Self, MapError> {
        check_map(
            map.borrow(),
            &[BPF_MAP_TYPE_LPM_TRIE],
            Some(4 + size_of::<K>()),
            Some(size_of::<V>()),
        )?;
        Ok(LpmTrie {
            map,
            _kv: PhantomData,
        })
    }

    /// The value of the longest prefix matching `key`, `None` if none matches.
    pub fn get(&self, key: &Key<K>, flags: u64) -> Result<Option<V>, MapError> {
        let h = self.map.borrow();
        let mut v = V::zeroed();
        enoent_none(
            h.lookup_elem(Some(&key.to_bytes()), bytemuck::bytes_of_mut(&mut v), flags)
                .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
        )
        .map(|o| o.map(|()| v))
    }

    /// Keys in the kernel's order (postorder).
    pub fn keys(&self) -> impl Iterator<Item = Result<Key<K>, MapError>> + '_ {
        let mut prev: Option<Vec<u8>> = None;
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let h = self.map.borrow();
            let mut next = vec![0u8; 4 + size_of::<K>()];
            match h.get_next_key(prev.as_deref(), &mut next) {
                Ok(()) => {
                    let k = Key::from_bytes(&next);
                    prev = Some(next);
                    Some(Ok(k))
                }
                Err(bpfnest_maps::Errno::ENOENT) => {
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
}

impl<T: BorrowMut<MapHandle>, K: Pod, V: Pod> LpmTrie<T, K, V> {
    /// Inserts or replaces the value for a prefix.
    pub fn insert(
        &mut self,
        key: &Key<K>,
        value: impl Borrow<V>,
        flags: u64,
    ) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.update_elem(
            Some(&key.to_bytes()),
            bytemuck::bytes_of(value.borrow()),
            flags,
        )
        .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
    }

    /// Removes a prefix.
    pub fn remove(&mut self, key: &Key<K>) -> Result<(), MapError> {
        let h = self.map.borrow_mut();
        h.delete_elem(Some(&key.to_bytes()))
            .map_err(op_err(h, "BPF_MAP_DELETE_ELEM"))
    }
}

impl_try_from_handle!(LpmTrie<K, V>);

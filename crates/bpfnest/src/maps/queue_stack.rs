// SPDX-License-Identifier: Apache-2.0 OR MIT
use std::borrow::{Borrow, BorrowMut};
use std::marker::PhantomData;

use bpfnest_maps::uapi::*;
use bpfnest_maps::MapHandle;
use bytemuck::Pod;

use super::{check_map, enoent_none, impl_try_from_handle, op_err, MapError};

macro_rules! fifo_view {
    ($name:ident, $ty:expr, $alias:literal, $doc:literal) => {
        #[doc = $doc]
        #[doc(alias = $alias)]
        #[derive(Debug)]
        pub struct $name<T, V> {
            map: T,
            _v: PhantomData<V>,
        }

        impl<T: Borrow<MapHandle>, V: Pod> $name<T, V> {
            /// Checks the map's type and value size.
            pub fn new(map: T) -> Result<Self, MapError> {
                check_map(map.borrow(), &[$ty], Some(0), Some(size_of::<V>()))?;
                Ok($name {
                    map,
                    _v: PhantomData,
                })
            }

            /// The next value without removing it, `None` if empty.
            pub fn peek(&self) -> Result<Option<V>, MapError> {
                let h = self.map.borrow();
                let mut v = V::zeroed();
                enoent_none(
                    h.lookup_elem(None, bytemuck::bytes_of_mut(&mut v), 0)
                        .map_err(op_err(h, "BPF_MAP_LOOKUP_ELEM")),
                )
                .map(|o| o.map(|()| v))
            }
        }

        impl<T: BorrowMut<MapHandle>, V: Pod> $name<T, V> {
            /// Pushes `value` (`BPF_EXIST` overwrites the oldest value when full).
            pub fn push(&mut self, value: impl Borrow<V>, flags: u64) -> Result<(), MapError> {
                let h = self.map.borrow_mut();
                h.update_elem(None, bytemuck::bytes_of(value.borrow()), flags)
                    .map_err(op_err(h, "BPF_MAP_UPDATE_ELEM"))
            }

            /// Removes and returns the next value, `None` if empty.
            pub fn pop(&mut self) -> Result<Option<V>, MapError> {
                let h = self.map.borrow_mut();
                let mut v = V::zeroed();
                enoent_none(
                    h.lookup_and_delete_elem(None, bytemuck::bytes_of_mut(&mut v), 0)
                        .map_err(op_err(h, "BPF_MAP_LOOKUP_AND_DELETE_ELEM")),
                )
                .map(|o| o.map(|()| v))
            }
        }

        impl_try_from_handle!($name<V>);
    };
}

fifo_view!(
    Queue,
    BPF_MAP_TYPE_QUEUE,
    "BPF_MAP_TYPE_QUEUE",
    "A typed view of a `BPF_MAP_TYPE_QUEUE` (FIFO)."
);
fifo_view!(
    Stack,
    BPF_MAP_TYPE_STACK,
    "BPF_MAP_TYPE_STACK",
    "A typed view of a `BPF_MAP_TYPE_STACK` (LIFO)."
);

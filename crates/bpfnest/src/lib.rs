// SPDX-License-Identifier: Apache-2.0 OR MIT
//! bpfnest: the Linux BPF map subsystem — above all map-in-map — in an ordinary process.
//!
//! This crate is the public face: typed views in the style of aya over the byte-level maps of
//! [`bpfnest_maps`]. Every error keeps the kernel's errno ([`MapError::errno`]).
//!
//! ```
//! use bpfnest::maps::{Array, ArrayOfMaps, HashMap};
//! use bpfnest::{MapAttr, Runtime, uapi::*};
//!
//! let rt = Runtime::default();
//! // A template and two inner arrays of the same shape.
//! let template = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))?;
//! let outer = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(template.raw()))?;
//! drop(template); // the outer map keeps its own copy of the template
//!
//! let inner = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))?;
//! let mut values: Array<_, u64> = Array::try_from(&inner)?;
//! values.set(1, 42, 0)?;
//!
//! let mut slots = ArrayOfMaps::try_from(&outer)?;
//! slots.set(0, &inner, 0)?;
//! assert_eq!(slots.get(0)?, Some(inner.id())); // user space reads back the inner map's id
//! assert_eq!(slots.get(1)?, None);
//!
//! // A wrong-shaped inner map is refused with the kernel's EINVAL.
//! let other = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4))?;
//! let err = slots.set(1, &other, 0).unwrap_err();
//! assert_eq!(err.errno(), Some(bpfnest::Errno::EINVAL));
//! # let _ = HashMap::<_, u32, u64>::try_from(&other)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod maps;

pub use bpfnest_maps::{uapi, Config, Errno, MapAttr, MapHandle, MapInfo, Runtime};
pub use maps::MapError;

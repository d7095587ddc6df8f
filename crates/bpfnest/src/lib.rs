// SPDX-License-Identifier: Apache-2.0 OR MIT
//! bpfnest: the Linux BPF map subsystem — above all map-in-map — in an ordinary process.
//!
//! This crate is the public face: typed views in the style of aya over the byte-level maps of
//! [`bpfnest_maps`]. Every error keeps the kernel's errno ([`MapError::errno`]).
//!
//! ```
//! use bpfnest::maps::{Array, ArrayOfMaps};
//! use bpfnest::{uapi::*, Errno, MapAttr, Runtime};
//!
//! let rt = Runtime::default();
//! // The template fixes the shape of every inner map; the outer map keeps its own copy.
//! let template = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))?;
//! let outer = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(template.raw()))?;
//! drop(template);
//!
//! let mut inner = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))?;
//! Array::<_, u64>::new(&mut inner)?.set(1, 42, BPF_ANY)?;
//!
//! let mut slots = ArrayOfMaps::new(outer)?;
//! slots.set(0, &inner, BPF_ANY)?;
//! assert_eq!(slots.get(0)?, Some(inner.id())); // user space reads back the inner map's id
//! assert_eq!(slots.get(1)?, None);
//!
//! // A wrongly shaped inner map is refused with the kernel's EINVAL.
//! let other = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4))?;
//! assert_eq!(slots.set(1, &other, BPF_ANY).unwrap_err().errno(), Some(Errno::EINVAL));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod maps;

pub use backend::{Backend, Kernel, MapBackend};
pub use bpfnest_maps::{uapi, BatchArgs, Config, Errno, MapAttr, MapHandle, MapInfo, Runtime};
pub use maps::MapError;

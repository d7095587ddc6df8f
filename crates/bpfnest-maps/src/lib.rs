// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The Linux BPF map subsystem in userspace.
//!
//! `bpfnest-maps` re-implements `kernel/bpf`'s maps so that a process gets exactly the results
//! Linux gives: the same values, the same errno, the same refusals in the same order. Its centre
//! is map-in-map (`BPF_MAP_TYPE_ARRAY_OF_MAPS`, `BPF_MAP_TYPE_HASH_OF_MAPS`).
//!
//! # Model
//! * A [`Runtime`] owns what the kernel keeps globally: map ids (cyclic from 1), a handle table
//!   (the counterpart of a process's fds), a pin namespace (bpffs), the number of CPUs, and two
//!   RCU flavours.
//! * [`MapHandle`]s behave like map fds: each holds a reference and a user reference;
//!   read-only and write-only handles refuse the other direction with `EPERM`.
//! * Every map type implements [`MapOps`], modelled on `struct bpf_map_ops`; the registry maps
//!   `map_type` to its operations as `include/linux/bpf_types.h` does.
//! * [`syscall`] runs the bpf(2) map commands with the kernel's generic checks in the kernel's
//!   order. Input stays raw (`u32` types and flags, `u64` update flags) until that layer has
//!   returned the kernel's errno for it.
//!
//! # Errno contract
//! Every operation returns [`Errno`] exactly as bpf(2) would, including `ENOTSUPP` (524),
//! which is distinct from `EOPNOTSUPP` (95).
//!
//! # Reclamation
//! Program runs are read-side sections of the [`rcu`] flavours (normal for non-sleepable
//! programs, tasks-trace for sleepable ones). A map removed from an outer map, and a hash element
//! deleted or evicted, is freed only after the grace periods that make every reader that could
//! have found it finish first. A syscall-side outer-map update returns only once no
//! non-sleepable reader can still see the old inner map.
#![warn(missing_docs)]

pub mod attr;
pub mod bpf_map;
pub mod errno;
pub mod map;
pub mod mmap;
pub mod object;
pub mod ops;
pub(crate) mod primitive;
pub mod rcu;
pub mod record;
pub mod registry;
pub mod runtime;
pub(crate) mod storage;
pub mod syscall;
pub mod uapi;

pub use attr::MapAttr;
pub use bpf_map::{BpfMap, MapMeta, MapRef, UserRef};
pub use errno::{Errno, Result};
pub use mmap::MapMmap;
pub use object::{BpfProg, BtfObject, FMode, FileObject, FileTable};
pub use ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
pub use record::{BtfField, BtfFieldKind, BtfRecord, KptrFlavour};
pub use registry::Caps;
pub use runtime::{Config, Handle, MapHandle, Runtime};
pub use syscall::MapInfo;

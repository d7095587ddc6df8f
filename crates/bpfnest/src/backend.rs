// SPDX-License-Identifier: Apache-2.0 OR MIT
//! One interface over both backends: the userspace runtime ([`Runtime`] / [`MapHandle`]) and,
//! through `bpfnest-sys`, the kernel's bpf(2). Tests, the object loader and the CLI run the same
//! sequence on either side.
//!
//! Values that carry handles on Linux (`inner_map_fd`, outer-map update values) carry
//! [`MapBackend::raw`] numbers: handle numbers in the userspace runtime, fds in the kernel
//! backend. Handles map to fds only here, at this boundary; the runtime knows no fds.

use bpfnest_maps::{BatchArgs, Errno, MapAttr, MapHandle, MapInfo, Runtime};

/// The map commands of bpf(2) on one open map (a handle or an fd).
pub trait MapBackend {
    /// The number that stands for this map in values and attributes (handle or fd).
    fn raw(&self) -> u32;
    /// `BPF_OBJ_GET_INFO_BY_FD`.
    fn info(&self) -> MapInfo;
    /// `BPF_MAP_LOOKUP_ELEM`.
    fn lookup_elem(&self, key: Option<&[u8]>, value: &mut [u8], flags: u64) -> Result<(), Errno>;
    /// `BPF_MAP_UPDATE_ELEM`.
    fn update_elem(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<(), Errno>;
    /// `BPF_MAP_DELETE_ELEM`.
    fn delete_elem(&self, key: Option<&[u8]>) -> Result<(), Errno>;
    /// `BPF_MAP_GET_NEXT_KEY`.
    fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<(), Errno>;
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
    fn lookup_and_delete_elem(
        &self,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno>;
    /// `BPF_MAP_FREEZE`.
    fn freeze(&self) -> Result<(), Errno>;
    /// `BPF_MAP_LOOKUP_BATCH`.
    fn lookup_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno>;
    /// `BPF_MAP_LOOKUP_AND_DELETE_BATCH`.
    fn lookup_and_delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno>;
    /// `BPF_MAP_UPDATE_BATCH`.
    fn update_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno>;
    /// `BPF_MAP_DELETE_BATCH`.
    fn delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno>;
}

/// Creating and finding maps: what a process does with bpf(2) besides element commands.
pub trait Backend {
    /// An open map.
    type Map: MapBackend;
    /// `"bpfnest"` or `"kernel"`, for messages.
    fn name(&self) -> &'static str;
    /// Number of possible CPUs (per-CPU value layout).
    fn nr_cpus(&self) -> u32;
    /// `BPF_MAP_CREATE`.
    fn map_create(&self, attr: &MapAttr) -> Result<Self::Map, Errno>;
    /// `BPF_MAP_GET_FD_BY_ID`.
    fn map_get_fd_by_id(&self, id: u32, open_flags: u32) -> Result<Self::Map, Errno>;
}

impl MapBackend for MapHandle {
    fn raw(&self) -> u32 {
        MapHandle::raw(self)
    }
    fn info(&self) -> MapInfo {
        MapHandle::info(self)
    }
    fn lookup_elem(&self, key: Option<&[u8]>, value: &mut [u8], flags: u64) -> Result<(), Errno> {
        MapHandle::lookup_elem(self, key, value, flags)
    }
    fn update_elem(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<(), Errno> {
        MapHandle::update_elem(self, key, value, flags)
    }
    fn delete_elem(&self, key: Option<&[u8]>) -> Result<(), Errno> {
        MapHandle::delete_elem(self, key)
    }
    fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<(), Errno> {
        MapHandle::get_next_key(self, key, next_key)
    }
    fn lookup_and_delete_elem(
        &self,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        MapHandle::lookup_and_delete_elem(self, key, value, flags)
    }
    fn freeze(&self) -> Result<(), Errno> {
        MapHandle::freeze(self)
    }
    fn lookup_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        MapHandle::lookup_batch(self, args)
    }
    fn lookup_and_delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        MapHandle::lookup_and_delete_batch(self, args)
    }
    fn update_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        MapHandle::update_batch(self, args)
    }
    fn delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        MapHandle::delete_batch(self, args)
    }
}

impl Backend for Runtime {
    type Map = MapHandle;
    fn name(&self) -> &'static str {
        "bpfnest"
    }
    fn nr_cpus(&self) -> u32 {
        Runtime::nr_cpus(self)
    }
    fn map_create(&self, attr: &MapAttr) -> Result<MapHandle, Errno> {
        Runtime::map_create(self, attr)
    }
    fn map_get_fd_by_id(&self, id: u32, open_flags: u32) -> Result<MapHandle, Errno> {
        Runtime::map_get_fd_by_id(self, id, open_flags)
    }
}

/// The real kernel, through raw bpf(2) (`bpfnest-sys`).
#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    nr_cpus: u32,
}

impl Kernel {
    /// The kernel backend, if bpf(2) works here (a one-entry array can be created).
    pub fn probe() -> Result<Kernel, bpfnest_sys::SysError> {
        bpfnest_sys::probe()?;
        Ok(Kernel {
            nr_cpus: bpfnest_maps::runtime::possible_cpus(),
        })
    }
}

impl Backend for Kernel {
    type Map = bpfnest_sys::FdMap;
    fn name(&self) -> &'static str {
        "kernel"
    }
    fn nr_cpus(&self) -> u32 {
        self.nr_cpus
    }
    fn map_create(&self, attr: &MapAttr) -> Result<bpfnest_sys::FdMap, Errno> {
        bpfnest_sys::FdMap::map_create(attr).map_err(Errno::from)
    }
    fn map_get_fd_by_id(&self, id: u32, open_flags: u32) -> Result<bpfnest_sys::FdMap, Errno> {
        bpfnest_sys::map_get_fd_by_id(id, open_flags).map_err(Errno::from)
    }
}

impl MapBackend for bpfnest_sys::FdMap {
    fn raw(&self) -> u32 {
        bpfnest_sys::FdMap::raw(self)
    }
    /// Info from the kernel; a failure here (the fd is ours and open) means a kernel bug, so it
    /// is reported as an all-zero info with the cached id.
    fn info(&self) -> MapInfo {
        bpfnest_sys::FdMap::info(self).unwrap_or_else(|_| MapInfo {
            map_type: self.map_type(),
            id: self.id(),
            key_size: self.key_size(),
            value_size: self.value_size(),
            max_entries: self.max_entries(),
            map_flags: 0,
            name: [0; 16],
            btf_id: 0,
            btf_key_type_id: 0,
            btf_value_type_id: 0,
            btf_vmlinux_value_type_id: 0,
            map_extra: 0,
            frozen: false,
        })
    }
    fn lookup_elem(&self, key: Option<&[u8]>, value: &mut [u8], flags: u64) -> Result<(), Errno> {
        bpfnest_sys::FdMap::lookup_elem(self, key, value, flags).map_err(Errno::from)
    }
    fn update_elem(&self, key: Option<&[u8]>, value: &[u8], flags: u64) -> Result<(), Errno> {
        bpfnest_sys::FdMap::update_elem(self, key, value, flags).map_err(Errno::from)
    }
    fn delete_elem(&self, key: Option<&[u8]>) -> Result<(), Errno> {
        bpfnest_sys::FdMap::delete_elem(self, key).map_err(Errno::from)
    }
    fn get_next_key(&self, key: Option<&[u8]>, next_key: &mut [u8]) -> Result<(), Errno> {
        bpfnest_sys::FdMap::get_next_key(self, key, next_key).map_err(Errno::from)
    }
    fn lookup_and_delete_elem(
        &self,
        key: Option<&[u8]>,
        value: &mut [u8],
        flags: u64,
    ) -> Result<(), Errno> {
        bpfnest_sys::FdMap::lookup_and_delete_elem(self, key, value, flags).map_err(Errno::from)
    }
    fn freeze(&self) -> Result<(), Errno> {
        bpfnest_sys::FdMap::freeze(self).map_err(Errno::from)
    }
    fn lookup_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        bpfnest_sys::FdMap::lookup_batch(self, args).map_err(Errno::from)
    }
    fn lookup_and_delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        bpfnest_sys::FdMap::lookup_and_delete_batch(self, args).map_err(Errno::from)
    }
    fn update_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        bpfnest_sys::FdMap::update_batch(self, args).map_err(Errno::from)
    }
    fn delete_batch(&self, args: &mut BatchArgs<'_>) -> Result<(), Errno> {
        bpfnest_sys::FdMap::delete_batch(self, args).map_err(Errno::from)
    }
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_HASH_OF_MAPS` (`htab_of_maps_map_ops`): a hash table whose values are inner
//! maps. See `crate::map::map_in_map` for the template and the compatibility test.
//!
//! * User space writes a map handle and reads back the inner map's id; programs get the inner
//!   map itself ([`super::hash_of_maps_lookup`]).
//! * Each element owns one `refcnt` reference on its inner map ([`super::table::ElemHdr`]'s
//!   `inner`). Replacing a key swaps the pointer in place (no new element, so it works on a
//!   full table and the key keeps its position); the old map is dropped with deferral *after*
//!   the bucket lock is released (the Nov-2024 lock-ordering fix). A failed insert drops the
//!   fresh reference at once: nobody could have seen it.
//! * Freeing the outer map drops every inner reference without deferral (no program can
//!   run with the outer map any more).

use core::ptr::NonNull;

use super::table::{check_flags, Htab};
use super::HtabTable;
use crate::bpf_map::{BpfMap, MapMeta, MapRef};
use crate::errno::{Errno, Result};
use crate::map::map_in_map::{fd_get_ptr, fd_put_ptr, fd_sys_lookup_elem};
use crate::ops::{BatchArgs, InlineLookup, MapOps, OpCtx};
use crate::syscall::{generic_map_delete_batch, generic_map_update_batch};
use crate::uapi::*;

/// The `BPF_MAP_TYPE_HASH_OF_MAPS` ops table (`htab_of_maps_map_ops`).
pub struct HtabOfMaps {
    pub(super) htab: Htab,
    /// The template's private copy (`inner_map_meta`); lives as long as the outer map.
    pub(super) meta: MapMeta,
}

impl HtabTable for HtabOfMaps {
    fn table(&self) -> &Htab {
        &self.htab
    }
}

impl HtabOfMaps {
    /// `htab_map_update_elem_in_place` for an fd table. On success returns the reference the
    /// key held before (if any); on failure gives `inner` back with the errno.
    fn update_in_place(
        &self,
        key: &[u8],
        inner: MapRef,
        flags: u64,
    ) -> core::result::Result<Option<MapRef>, (Errno, MapRef)> {
        let h = &self.htab;
        if flags > BPF_EXIST {
            return Err((Errno::EINVAL, inner));
        }
        let Some(key) = key.get(..h.key_size) else {
            return Err((Errno::EINVAL, inner));
        };
        let hash = h.hash(key);
        let b = h.lock_bucket(hash);
        let old = b.lookup(hash, key);
        if let Err(e) = check_flags(old.is_some(), flags) {
            return Err((e, inner));
        }
        if let Some(old) = old {
            return Ok(h.replace_inner(old, inner));
        }
        let e = match h.alloc_elem() {
            Ok(e) => e,
            Err(err) => return Err((err, inner)),
        };
        h.init_elem(e, key, hash);
        h.set_inner(e, inner);
        b.link_head(e);
        Ok(None)
    }
}

impl MapOps for HtabOfMaps {
    htab_common_ops!();

    /// `htab_of_map_lookup_elem`: the inner map (`READ_ONCE` of the slot). Context: program.
    /// It stays valid until the caller's read-side section ends: a removed inner map is freed
    /// only after the grace periods the outer map's programs require.
    fn lookup_elem(&self, _map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Option<NonNull<u8>> {
        let key = key.get(..self.htab.key_size)?;
        let e = self.htab.lookup_nulls(self.htab.hash(key), key)?;
        self.htab.inner_of(e).map(NonNull::cast)
    }

    /// The verifier accepts only `bpf_map_lookup_elem` on outer maps.
    fn lookup_percpu_elem(&self, _map: &BpfMap, _key: &[u8], _cpu: u32) -> Option<NonNull<u8>> {
        None
    }

    /// `bpf_fd_htab_map_lookup_elem`: the inner map's id; `ENOENT` for a missing key.
    /// Context: syscall.
    fn lookup_elem_sys(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        key: &[u8],
        value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        let key = key.get(..self.htab.key_size).ok_or(Errno::EINVAL)?;
        let out = value.get_mut(..4).ok_or(Errno::EINVAL)?;
        let e = self
            .htab
            .lookup_nulls(self.htab.hash(key), key)
            .ok_or(Errno::ENOENT)?;
        let inner = self.htab.inner_of(e).ok_or(Errno::ENOENT)?;
        // SAFETY: the syscall runs inside a normal read-side section, and an inner map that
        // leaves the table is freed at the earliest one normal grace period later.
        let id = fd_sys_lookup_elem(unsafe { inner.as_ref() });
        out.copy_from_slice(&id.to_ne_bytes());
        Ok(())
    }

    /// `bpf_fd_htab_map_update_elem`: resolves the handle in `value` *first* (`EBADF`,
    /// `EINVAL`, `ENOTSUPP` even when the flags are also bad), then updates in place: `EINVAL`
    /// for flags above `BPF_EXIST`, `EEXIST`/`ENOENT`, `E2BIG` for a new key in a full table.
    /// Context: syscall (programs cannot update outer maps: the verifier refuses with `EINVAL`).
    fn update_elem(
        &self,
        map: &BpfMap,
        ctx: &OpCtx<'_>,
        key: &[u8],
        value: &[u8],
        flags: u64,
    ) -> Result<()> {
        let files = ctx.files.ok_or(Errno::EINVAL)?;
        let ufd = value.get(..4).ok_or(Errno::EINVAL)?;
        let inner = fd_get_ptr(
            map,
            files,
            u32::from_ne_bytes([ufd[0], ufd[1], ufd[2], ufd[3]]),
        )?;
        match self.update_in_place(key, inner, flags) {
            Ok(old) => {
                // After the bucket lock: the put may free a map, which takes other locks.
                if let Some(old) = old {
                    fd_put_ptr(map, old, true);
                }
                Ok(())
            }
            Err((err, fresh)) => {
                fd_put_ptr(map, fresh, false);
                Err(err)
            }
        }
    }

    /// `htab_map_delete_elem`: the inner map is dropped with deferral. Context: syscall
    /// (programs are refused by the verifier).
    fn delete_elem(&self, map: &BpfMap, _ctx: &OpCtx<'_>, key: &[u8]) -> Result<()> {
        self.htab.delete_elem(map, key)
    }

    /// No `map_lookup_and_delete_elem` in `htab_of_maps_map_ops`: `ENOTSUPP` (kernel 6.18:
    /// 524; `crate::syscall` answers before calling this).
    fn lookup_and_delete_elem(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _key: Option<&[u8]>,
        _value: &mut [u8],
        _flags: u64,
    ) -> Result<()> {
        Err(Errno::ENOTSUPP)
    }

    /// `htab_map_lookup_batch`: values are inner map ids. Context: syscall.
    fn lookup_batch(&self, map: &BpfMap, _ctx: &OpCtx<'_>, args: &mut BatchArgs<'_>) -> Result<()> {
        self.htab
            .lookup_and_delete_batch(map, args, false, &|e| self.htab.free_htab_elem(map, e))
    }

    /// `htab_map_lookup_and_delete_batch`: ids out; the inner maps are dropped with deferral
    /// after each bucket is unlocked. Context: syscall.
    fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        _ctx: &OpCtx<'_>,
        args: &mut BatchArgs<'_>,
    ) -> Result<()> {
        self.htab
            .lookup_and_delete_batch(map, args, true, &|e| self.htab.free_htab_elem(map, e))
    }

    /// No `map_for_each_callback`: the verifier refuses `bpf_for_each_map_elem` on an outer
    /// map with `ENOTSUPP` ("callback function not allowed for map").
    fn for_each_callback(
        &self,
        _map: &BpfMap,
        _ctx: &OpCtx<'_>,
        _f: &mut dyn FnMut(&[u8], NonNull<u8>) -> bool,
    ) -> Result<u32> {
        Err(Errno::ENOTSUPP)
    }

    /// The template's copy (`map->inner_map_meta`).
    fn inner_map_meta(&self) -> Option<&MapMeta> {
        Some(&self.meta)
    }
}

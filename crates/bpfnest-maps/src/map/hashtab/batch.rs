// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `__htab_map_lookup_and_delete_batch`: the batch lookups of every hash type.
//!
//! The position (`in_batch`/`out_batch`) is a `u32` bucket index, and a batch only ever takes
//! whole buckets: a bucket that does not fit in what is left of `count` ends the batch (with
//! `ENOSPC` if nothing was copied yet), and walking past the last bucket ends it with `ENOENT`.

use super::table::{Elem, Htab};
use super::Kind;
use crate::bpf_map::BpfMap;
use crate::errno::{Errno, Result};
use crate::ops::BatchArgs;
use crate::uapi::*;

impl Htab {
    /// `__htab_map_lookup_and_delete_batch`. Deleted elements are handed to `free` after their
    /// bucket is unlocked (LRU pushes and inner-map puts may not run under a bucket lock).
    ///
    /// Errors in the kernel's order, `count` untouched: `EINVAL` for `elem_flags` other than
    /// `BPF_F_LOCK` or `BPF_F_LOCK` without a spin lock, `EINVAL` for non-zero `flags`. Then
    /// `count == 0` returns at once; otherwise `count` is reset and an `in_batch` at or past
    /// the last bucket gives `ENOENT`. At the end `out_batch` holds the next bucket and `count`
    /// the number of elements copied. Context: syscall.
    pub(super) fn lookup_and_delete_batch(
        &self,
        map: &BpfMap,
        args: &mut BatchArgs<'_>,
        do_delete: bool,
        free: &dyn Fn(Elem),
    ) -> Result<()> {
        let rec = map.record();
        let elem_flags = args.elem_flags;
        if elem_flags & !BPF_F_LOCK != 0
            || (elem_flags & BPF_F_LOCK != 0 && rec.and_then(|r| r.spin_lock_off()).is_none())
        {
            return Err(Errno::EINVAL);
        }
        if args.flags != 0 {
            return Err(Errno::EINVAL);
        }
        let max_count = args.count;
        if max_count == 0 {
            return Ok(());
        }
        args.count = 0;
        let mut batch = 0u32;
        if let Some(ib) = args.in_batch {
            let b = ib.get(..4).ok_or(Errno::EFAULT)?;
            batch = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        }
        if batch >= self.n_buckets() {
            return Err(Errno::ENOENT);
        }

        let ks = self.key_size;
        let vs = map.sys_value_size();
        let mut total = 0u32;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let ret = loop {
            let b = self.lock_index(batch);
            let elems = b.elems();
            let cnt = elems.len();
            if cnt > (max_count - total) as usize {
                drop(b);
                break if total == 0 {
                    Err(Errno::ENOSPC)
                } else {
                    Ok(())
                };
            }
            keys.clear();
            keys.resize(cnt * ks, 0);
            values.clear();
            values.resize(cnt * vs, 0);
            for (i, &e) in elems.iter().enumerate() {
                self.read_key(e, &mut keys[i * ks..(i + 1) * ks]);
                let dst = &mut values[i * vs..(i + 1) * vs];
                if self.kind == Kind::OfMaps {
                    // The value user space sees is the inner map's id
                    // (`map_fd_sys_lookup_elem`).
                    let id = self.inner_of(e).map_or(0, |p| {
                        // SAFETY: a linked element owns a reference on its inner map, and
                        // its bucket is locked.
                        crate::map::map_in_map::fd_sys_lookup_elem(unsafe { p.as_ref() })
                    });
                    dst[..4].copy_from_slice(&id.to_ne_bytes());
                } else {
                    self.copy_value_sys(rec, e, dst, elem_flags)?;
                }
                if do_delete {
                    b.unlink(e);
                }
            }
            drop(b);
            if do_delete {
                for &e in &elems {
                    free(e);
                }
            }
            // copy_to_user: a short user buffer is EFAULT with `count` left at 0, after the
            // deletions (as in the kernel).
            let (Some(kd), Some(vd)) = (
                args.keys
                    .get_mut(total as usize * ks..(total as usize + cnt) * ks),
                args.values
                    .get_mut(total as usize * vs..(total as usize + cnt) * vs),
            ) else {
                return Err(Errno::EFAULT);
            };
            kd.copy_from_slice(&keys);
            vd.copy_from_slice(&values);
            total += cnt as u32;
            batch += 1;
            if batch >= self.n_buckets() {
                break Err(Errno::ENOENT);
            }
        };
        let ob = args.out_batch.get_mut(..4).ok_or(Errno::EFAULT)?;
        ob.copy_from_slice(&batch.to_ne_bytes());
        args.count = total;
        ret
    }
}

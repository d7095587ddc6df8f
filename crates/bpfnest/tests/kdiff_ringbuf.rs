// SPDX-License-Identifier: Apache-2.0 OR MIT
//! RINGBUF on both backends: the create errno matrix and the element commands a ring buffer
//! refuses. USER_RINGBUF is not implemented by bpfnest (see [`diverges_user_ringbuf_create`]).

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::MapAttr;
use kdiff::{diff, DynBackend, Trace};

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    create_errno_for(b, t, BPF_MAP_TYPE_RINGBUF);
}

fn create_errno_for(b: &dyn DynBackend, t: &mut Trace, map_type: u32) {
    {
        let ty = map_type;
        for (ks, vs, me) in [
            (0, 0, 4096),
            (0, 0, 8192),
            (0, 0, 1 << 16),
            (0, 0, 0),
            (0, 0, 4095),
            (0, 0, 4097),
            (0, 0, 12288),
            (0, 0, 2048),
            (0, 0, 1 << 31),
            (0, 0, u32::MAX),
            (4, 0, 4096),
            (0, 4, 4096),
            (4, 4, 4096),
        ] {
            t.rec(
                &format!("{ty} k{ks} v{vs} n{me}"),
                b.create(&MapAttr::new(ty, ks, vs, me))
                    .map(|m| m.info().max_entries),
            );
        }
        for bit in 0..=19u32 {
            t.rec(
                &format!("{ty} flag bit {bit}"),
                b.create(&MapAttr::new(ty, 0, 0, 4096).flags(1 << bit))
                    .map(|m| m.info().map_flags),
            );
        }
        t.rec(
            &format!("{ty} map_extra"),
            b.create(&MapAttr::new(ty, 0, 0, 4096).extra(1)).map(|_| ()),
        );
        let m = b.create(&MapAttr::new(ty, 0, 0, 4096));
        t.rec("create 4096", m.as_ref().map(|_| ()).map_err(|e| *e));
        let Ok(m) = m else { return };
        let mut buf = [0u8; 8];
        t.rec("lookup", m.lookup_elem(None, &mut buf, 0));
        t.rec("lookup key", m.lookup_elem(Some(&[0; 4]), &mut buf, 0));
        t.rec("update", m.update_elem(None, &buf, 0));
        t.rec("delete", m.delete_elem(None));
        t.rec("get_next_key", m.get_next_key(None, &mut buf));
        t.rec(
            "lookup_and_delete",
            m.lookup_and_delete_elem(None, &mut buf, 0),
        );
        t.rec("freeze", m.freeze());
    }
}

#[test]
fn kdiff_ringbuf_create_errno() {
    diff("kdiff_ringbuf_create_errno", create_errno);
}

/// NOT IMPLEMENTED (not a test; docs/conformance.md): USER_RINGBUF is not one of bpfnest's map
/// types yet (`map/ringbuf.rs` implements the kernel-producer RINGBUF).
/// First divergence: step `"31 k0 v0 n4096"`: bpfnest `Err(EINVAL (22))`, kernel `Ok(4096)`;
/// every valid USER_RINGBUF create differs the same way.
#[allow(dead_code, reason = "runs once USER_RINGBUF is implemented")]
fn diverges_user_ringbuf_create() {
    diff("diverges_user_ringbuf_create", |b, t| {
        create_errno_for(b, t, BPF_MAP_TYPE_USER_RINGBUF)
    });
}

/// RINGBUF element commands: none is supported from user space (the ring is read by mmap).
fn ringbuf_ops(b: &dyn kdiff::DynBackend, t: &mut kdiff::Trace) {
    let rb = b
        .create(&bpfnest::MapAttr::new(
            bpfnest::uapi::BPF_MAP_TYPE_RINGBUF,
            0,
            0,
            4096,
        ))
        .unwrap();
    let mut v = [0u8; 8];
    t.rec("lookup", rb.lookup_elem(None, &mut [], 0));
    t.rec("update", rb.update_elem(None, &[], 0));
    t.rec("delete", rb.delete_elem(None));
    t.rec("next_key", rb.get_next_key(None, &mut []));
    t.rec(
        "lookup_and_delete",
        rb.lookup_and_delete_elem(None, &mut [], 0),
    );
    t.rec("lookup key", rb.lookup_elem(Some(&[0u8; 4]), &mut v, 0));
    let mut out = [0u8; 4];
    let (mut k, mut vv) = (vec![0u8; 4], vec![0u8; 4]);
    let mut a = bpfnest::BatchArgs {
        in_batch: None,
        out_batch: &mut out,
        keys: &mut k,
        values: &mut vv,
        count: 1,
        elem_flags: 0,
        flags: 0,
    };
    t.rec("lookup_batch", rb.lookup_batch(&mut a).map(|()| a.count));
    t.rec("freeze", rb.freeze());
    t.rec("update after freeze", rb.update_elem(None, &[], 0));
}

#[test]
fn kdiff_ringbuf_ops() {
    kdiff::diff("ringbuf ops", ringbuf_ops);
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Map handles on both backends: id relations across create/close/create,
//! `BPF_MAP_GET_FD_BY_ID` open flags, the errno of every command on read-only and write-only
//! handles, and freeze interactions between handles.
//!
//! `DynBackend::get_by_id` opens with flags 0 only, so these scenarios are generic over
//! [`Backend`] and compared by a local [`diff_generic`].

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{Backend, BatchArgs, Errno, Kernel, MapAttr, MapBackend, Runtime};
use kdiff::{k, Trace};

/// Runs the two instantiations of one scenario and asserts identical traces.
fn diff_generic(name: &str, on_rt: fn(&Runtime, &mut Trace), on_kernel: fn(&Kernel, &mut Trace)) {
    let Some(kernel) = kdiff::kernel() else {
        return;
    };
    let rt = Runtime::new(bpfnest::Config {
        nr_cpus: kernel.nr_cpus(),
        ..bpfnest::Config::default()
    });
    let (mut a, mut b) = (Trace::default(), Trace::default());
    on_rt(&rt, &mut a);
    on_kernel(&kernel, &mut b);
    for (i, (x, y)) in a.events.iter().zip(b.events.iter()).enumerate() {
        assert_eq!(
            x, y,
            "{name}: step {i} diverges (bpfnest left, kernel right)"
        );
    }
    assert_eq!(
        a.events.len(),
        b.events.len(),
        "{name}: trace lengths differ"
    );
    eprintln!(
        "kdiff {name}: {} steps identical on bpfnest and the kernel",
        a.events.len()
    );
}

fn ids<B: Backend>(b: &B, t: &mut Trace) {
    let a = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1))
        .unwrap();
    let bm = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 1))
        .unwrap();
    let (ia, ib) = (a.info().id, bm.info().id);
    t.rec_id("id a", Ok(ia));
    t.rec_id("id b", Ok(ib));
    t.rec("b > a", Ok::<_, Errno>(ib > ia));
    let a2 = b.map_get_fd_by_id(ia, 0).unwrap();
    t.rec_id("reopen a", Ok(a2.info().id));
    t.rec("reopen raw differs", Ok::<_, Errno>(a2.raw() != a.raw()));
    drop(a);
    t.rec_id(
        "a still open via second handle",
        b.map_get_fd_by_id(ia, 0).map(|m| m.info().id),
    );
    drop(a2);
    t.rec_id(
        "a after last close",
        b.map_get_fd_by_id(ia, 0).map(|m| m.info().id),
    );
    let c = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1))
        .unwrap();
    let ic = c.info().id;
    t.rec_id("id c", Ok(ic));
    t.rec("c > b (ids are not reused)", Ok::<_, Errno>(ic > ib));
    t.rec_id("id 0", b.map_get_fd_by_id(0, 0).map(|m| m.info().id));
    t.rec_id(
        "id max",
        b.map_get_fd_by_id(u32::MAX, 0).map(|m| m.info().id),
    );
    // A failed create consumes no id.
    t.rec(
        "failed create",
        b.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 0))
            .map(|_| ()),
    );
    let d = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1))
        .unwrap();
    t.rec_id("id d", Ok(d.info().id));
    t.rec("d > c", Ok::<_, Errno>(d.info().id > ic));
    drop(bm);
    t.rec_id("b closed", b.map_get_fd_by_id(ib, 0).map(|m| m.info().id));
}

fn open_flags<B: Backend>(b: &B, t: &mut Trace) {
    let m = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4))
        .unwrap();
    let id = m.info().id;
    for fl in [
        0,
        BPF_F_RDONLY,
        BPF_F_WRONLY,
        BPF_F_RDONLY | BPF_F_WRONLY,
        BPF_F_NO_PREALLOC,
        BPF_F_RDONLY_PROG,
        BPF_F_ZERO_SEED,
        1 << 31,
    ] {
        t.rec_id(
            &format!("get_fd_by_id flags {fl:#x}"),
            b.map_get_fd_by_id(id, fl).map(|h| h.info().id),
        );
    }
    // Maps created read-only/write-only for programs, and for syscalls.
    for cf in [
        BPF_F_RDONLY,
        BPF_F_WRONLY,
        BPF_F_RDONLY_PROG,
        BPF_F_WRONLY_PROG,
    ] {
        let m = b
            .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4).flags(cf))
            .unwrap();
        let id = m.info().id;
        for fl in [0, BPF_F_RDONLY, BPF_F_WRONLY] {
            t.rec(
                &format!("create {cf:#x} open {fl:#x}"),
                b.map_get_fd_by_id(id, fl).map(|h| h.info().map_flags),
            );
        }
    }
}

fn every_command<M: MapBackend>(m: &M, t: &mut Trace, what: &str) {
    let v = [1u8; 8];
    t.rec(&format!("{what} update"), m.update_elem(Some(&k(0)), &v, 0));
    let mut out = [0u8; 8];
    t.rec(
        &format!("{what} lookup"),
        m.lookup_elem(Some(&k(1)), &mut out, 0).map(|()| out),
    );
    let mut nk = [0u8; 4];
    t.rec(
        &format!("{what} get_next_key"),
        m.get_next_key(None, &mut nk).map(|()| nk),
    );
    t.rec(&format!("{what} delete"), m.delete_elem(Some(&k(2))));
    let mut out = [0u8; 8];
    t.rec(
        &format!("{what} lookup_and_delete"),
        m.lookup_and_delete_elem(Some(&k(3)), &mut out, 0)
            .map(|()| out),
    );
    let mut ob = [0u8; 4];
    let mut kb = [0u8; 8];
    let mut vb = [0u8; 16];
    for op in ["lookup", "lookup_and_delete", "update", "delete"] {
        kb[..4].copy_from_slice(&k(4));
        kb[4..].copy_from_slice(&k(5));
        let mut a = BatchArgs {
            in_batch: None,
            out_batch: &mut ob,
            keys: &mut kb,
            values: &mut vb,
            count: 2,
            elem_flags: 0,
            flags: 0,
        };
        let r = match op {
            "lookup" => m.lookup_batch(&mut a),
            "lookup_and_delete" => m.lookup_and_delete_batch(&mut a),
            "update" => m.update_batch(&mut a),
            _ => m.delete_batch(&mut a),
        };
        let c = a.count;
        t.rec(&format!("{what} {op}_batch"), r.map(|()| c));
    }
    t.rec(
        &format!("{what} info id"),
        Ok::<_, Errno>(m.info().map_flags),
    );
}

fn rdonly_wronly<B: Backend>(b: &B, t: &mut Trace) {
    let m = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 16).flags(BPF_F_ZERO_SEED))
        .unwrap();
    for i in 1..6 {
        m.update_elem(Some(&k(i)), &[i as u8; 8], 0).unwrap();
    }
    let id = m.info().id;
    let ro = b.map_get_fd_by_id(id, BPF_F_RDONLY).unwrap();
    let wo = b.map_get_fd_by_id(id, BPF_F_WRONLY).unwrap();
    every_command(&ro, t, "ro handle");
    every_command(&wo, t, "wo handle");
    t.rec("ro freeze", ro.freeze());
    t.rec("wo freeze", wo.freeze());
    every_command(&m, t, "rw handle after freeze");
    t.rec("rw freeze again", m.freeze());
    // Map created with BPF_F_RDONLY / BPF_F_WRONLY: the creating handle is restricted too.
    for cf in [BPF_F_RDONLY, BPF_F_WRONLY] {
        let m = b
            .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 16).flags(cf))
            .unwrap();
        every_command(&m, t, &format!("created {cf:#x}"));
        let h = b.map_get_fd_by_id(m.info().id, 0).unwrap();
        every_command(&h, t, &format!("created {cf:#x}, reopened 0"));
        t.rec(&format!("created {cf:#x} freeze"), m.freeze());
    }
    // Array: lookup on a write-only handle, update on a read-only one.
    let a = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 8))
        .unwrap();
    let ro = b.map_get_fd_by_id(a.info().id, BPF_F_RDONLY).unwrap();
    let wo = b.map_get_fd_by_id(a.info().id, BPF_F_WRONLY).unwrap();
    every_command(&ro, t, "array ro");
    every_command(&wo, t, "array wo");
    t.rec("array wo freeze", wo.freeze());
    t.rec("array ro freeze", ro.freeze());
}

fn freeze_across_handles<B: Backend>(b: &B, t: &mut Trace) {
    let m = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2))
        .unwrap();
    let h = b.map_get_fd_by_id(m.info().id, 0).unwrap();
    t.rec("freeze via second handle", h.freeze());
    t.rec("frozen seen on first", Ok::<_, Errno>(m.info().frozen));
    t.rec("update first", m.update_elem(Some(&k(0)), &[0; 8], 0));
    t.rec("freeze first", m.freeze());
    drop(h);
    let h2 = b.map_get_fd_by_id(m.info().id, BPF_F_WRONLY);
    t.rec(
        "wronly open of frozen map",
        h2.as_ref().map(|h| h.info().frozen).map_err(|e| *e),
    );
    if let Ok(h2) = h2 {
        t.rec(
            "update via wo on frozen",
            h2.update_elem(Some(&k(0)), &[0; 8], 0),
        );
    }
    let h3 = b.map_get_fd_by_id(m.info().id, BPF_F_RDONLY).unwrap();
    let mut out = [0u8; 8];
    t.rec(
        "lookup via ro on frozen",
        h3.lookup_elem(Some(&k(0)), &mut out, 0).map(|()| out),
    );
    // Freeze on types that refuse it or allow it.
    for (ty, ks, vs, me, f) in [
        (BPF_MAP_TYPE_HASH, 4, 8, 2, 0),
        (BPF_MAP_TYPE_QUEUE, 0, 8, 2, 0),
        (BPF_MAP_TYPE_LPM_TRIE, 8, 8, 2, BPF_F_NO_PREALLOC),
        (BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 2, 0),
        (BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0),
        (BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 2, 0),
        (BPF_MAP_TYPE_ARRAY, 4, 8, 2, BPF_F_RDONLY_PROG),
    ] {
        let m = b
            .map_create(&MapAttr::new(ty, ks, vs, me).flags(f))
            .unwrap();
        t.rec(&format!("freeze type {ty}"), m.freeze());
        t.rec(&format!("freeze type {ty} again"), m.freeze());
    }
}

fn token_open_flag<B: Backend>(b: &B, t: &mut Trace) {
    let m = b
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4))
        .unwrap();
    t.rec_id(
        "get_fd_by_id flags 0x10000",
        b.map_get_fd_by_id(m.info().id, BPF_F_TOKEN_FD)
            .map(|h| h.info().id),
    );
}

/// `BPF_MAP_GET_FD_BY_ID` with `open_flags = BPF_F_TOKEN_FD`: the kernel accepts only
/// RDONLY|WRONLY there (`EINVAL`). Found by this suite; bpfnest fixed to match.
#[test]
fn kdiff_handles_token_open_flag() {
    diff_generic(
        "kdiff_handles_token_open_flag",
        token_open_flag::<Runtime>,
        token_open_flag::<Kernel>,
    );
}

#[test]
fn kdiff_handles_ids() {
    diff_generic("kdiff_handles_ids", ids::<Runtime>, ids::<Kernel>);
}

#[test]
fn kdiff_handles_open_flags() {
    diff_generic(
        "kdiff_handles_open_flags",
        open_flags::<Runtime>,
        open_flags::<Kernel>,
    );
}

#[test]
fn kdiff_handles_rdonly_wronly() {
    diff_generic(
        "kdiff_handles_rdonly_wronly",
        rdonly_wronly::<Runtime>,
        rdonly_wronly::<Kernel>,
    );
}

#[test]
fn kdiff_handles_freeze() {
    diff_generic(
        "kdiff_handles_freeze",
        freeze_across_handles::<Runtime>,
        freeze_across_handles::<Kernel>,
    );
}

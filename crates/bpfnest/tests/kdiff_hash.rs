// SPDX-License-Identifier: Apache-2.0 OR MIT
//! HASH (preallocated and `BPF_F_NO_PREALLOC`) and PERCPU_HASH on both backends: create errno
//! matrix, update flags on full and non-full tables, lookup-and-delete, `BPF_F_ZERO_SEED`
//! iteration order, bucket batches and freeze.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{BatchArgs, Errno, MapAttr, MapBackend};
use kdiff::{diff, val, vsz, walk, DynBackend, Trace};

/// (type, extra flags) of every variant exercised.
const VARIANTS: [(u32, u32); 4] = [
    (BPF_MAP_TYPE_HASH, 0),
    (BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC),
    (BPF_MAP_TYPE_PERCPU_HASH, 0),
    (BPF_MAP_TYPE_PERCPU_HASH, BPF_F_NO_PREALLOC),
];

/// A key of `ks` bytes derived from `i`.
fn key(ks: usize, i: u32) -> Vec<u8> {
    (0..ks)
        .map(|j| (i.wrapping_mul(2654435761).wrapping_add(j as u32 * 7) >> (j % 4 * 8)) as u8)
        .collect()
}

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    for ty in [BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_PERCPU_HASH] {
        for (ks, vs, me) in [
            (4, 8, 4),
            (1, 1, 1),
            (0, 8, 4),
            (4, 0, 4),
            (4, 8, 0),
            (512, 8, 4),
            (513, 8, 4),
            (4, 32768, 2),
            (4, 1 << 20, 1),
            (4, u32::MAX, 1),
            (u32::MAX, 8, 1),
        ] {
            for f in [0, BPF_F_NO_PREALLOC] {
                t.rec(
                    &format!("{ty} k{ks} v{vs} n{me} f{f}"),
                    b.create(&MapAttr::new(ty, ks, vs, me).flags(f))
                        .map(|m| (m.info().key_size, m.info().value_size, m.info().max_entries)),
                );
            }
        }
        for bit in 0..=19u32 {
            let f = 1u32 << bit;
            t.rec(
                &format!("{ty} flag bit {bit}"),
                b.create(&MapAttr::new(ty, 4, 8, 4).flags(f))
                    .map(|m| m.info().map_flags),
            );
            t.rec(
                &format!("{ty} flag bit {bit} | no_prealloc"),
                b.create(&MapAttr::new(ty, 4, 8, 4).flags(f | BPF_F_NO_PREALLOC))
                    .map(|m| m.info().map_flags),
            );
        }
        t.rec(
            &format!("{ty} map_extra"),
            b.create(&MapAttr::new(ty, 4, 8, 4).extra(1)).map(|_| ()),
        );
        t.rec(
            &format!("{ty} rdonly_prog|wronly_prog"),
            b.create(&MapAttr::new(ty, 4, 8, 4).flags(BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG))
                .map(|_| ()),
        );
    }
}

fn update_flags(b: &dyn DynBackend, t: &mut Trace) {
    for (ty, f) in VARIANTS {
        let m = b
            .create(&MapAttr::new(ty, 4, 8, 3).flags(f | BPF_F_ZERO_SEED))
            .unwrap();
        let v = |s| val(ty, 8, s);
        for flags in [
            BPF_EXIST,
            BPF_NOEXIST,
            BPF_NOEXIST,
            BPF_ANY,
            3,
            BPF_F_LOCK,
            8,
        ] {
            t.rec(
                &format!("{ty}/{f} key 1 flags {flags}"),
                m.update_elem(Some(&key(4, 1)), &v(flags as u8), flags),
            );
        }
        t.rec("fill 2", m.update_elem(Some(&key(4, 2)), &v(2), BPF_ANY));
        t.rec(
            "fill 3",
            m.update_elem(Some(&key(4, 3)), &v(3), BPF_NOEXIST),
        );
        // Full table.
        for flags in [BPF_ANY, BPF_NOEXIST, BPF_EXIST] {
            t.rec(
                &format!("full new key flags {flags}"),
                m.update_elem(Some(&key(4, 4)), &v(4), flags),
            );
            t.rec(
                &format!("full old key flags {flags}"),
                m.update_elem(Some(&key(4, 2)), &v(20 + flags as u8), flags),
            );
        }
        let mut out = vec![0u8; vsz(ty, 8)];
        let r = m.lookup_elem(Some(&key(4, 2)), &mut out, 0);
        t.rec("lookup 2", r.map(|()| out));
        t.rec("delete 2", m.delete_elem(Some(&key(4, 2))));
        t.rec("delete 2 again", m.delete_elem(Some(&key(4, 2))));
        t.rec(
            "insert 4 after delete",
            m.update_elem(Some(&key(4, 4)), &v(4), BPF_NOEXIST),
        );
        t.rec(
            "insert 5 full",
            m.update_elem(Some(&key(4, 5)), &v(5), BPF_ANY),
        );
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete 4",
            m.lookup_and_delete_elem(Some(&key(4, 4)), &mut out, 0)
                .map(|()| out),
        );
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete 4 again",
            m.lookup_and_delete_elem(Some(&key(4, 4)), &mut out, 0),
        );
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete flags LOCK",
            m.lookup_and_delete_elem(Some(&key(4, 1)), &mut out, BPF_F_LOCK),
        );
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete flags 1",
            m.lookup_and_delete_elem(Some(&key(4, 1)), &mut out, 1),
        );
        t.rec("delete null", m.delete_elem(None));
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup missing",
            m.lookup_elem(Some(&key(4, 99)), &mut out, 0),
        );
        let mut nk = [0u8; 4];
        t.rec(
            "next of missing",
            m.get_next_key(Some(&key(4, 99)), &mut nk).map(|()| nk),
        );
        let (keys, end) = walk(&*m, 4);
        t.rec("walk", end.map(|()| keys));
        // Value padding for per-CPU values of odd size.
        let m3 = b.create(&MapAttr::new(ty, 4, 3, 2).flags(f)).unwrap();
        t.rec(
            "update v3",
            m3.update_elem(Some(&key(4, 0)), &val(ty, 3, 0xf0), 0),
        );
        let mut out = vec![0xaau8; vsz(ty, 3)];
        let r = m3.lookup_elem(Some(&key(4, 0)), &mut out, 0);
        t.rec("lookup v3", r.map(|()| out));
    }
}

fn iteration_order(b: &dyn DynBackend, t: &mut Trace) {
    for (ty, f) in VARIANTS {
        for (ks, n, max) in [
            (1usize, 200u32, 256u32),
            (4, 100, 128),
            (8, 64, 64),
            (13, 50, 100),
            (64, 30, 1000),
        ] {
            let m = b
                .create(&MapAttr::new(ty, ks as u32, 8, max).flags(f | BPF_F_ZERO_SEED))
                .unwrap();
            let n = if ks == 1 { n.min(256) } else { n };
            for i in 0..n {
                let kk = if ks == 1 { vec![i as u8] } else { key(ks, i) };
                m.update_elem(Some(&kk), &val(ty, 8, i as u8), BPF_NOEXIST)
                    .unwrap();
            }
            let (keys, end) = walk(&*m, ks);
            t.rec(&format!("{ty}/{f} ks{ks} order"), end.map(|()| keys));
            // Delete every third key and walk again.
            for i in (0..n).step_by(3) {
                let kk = if ks == 1 { vec![i as u8] } else { key(ks, i) };
                m.delete_elem(Some(&kk)).unwrap();
            }
            let (keys, end) = walk(&*m, ks);
            t.rec("order after deletes", end.map(|()| keys));
        }
    }
}

struct Batch {
    r: Result<(), Errno>,
    count: u32,
    keys: Vec<u8>,
    values: Vec<u8>,
    out: Vec<u8>,
}

fn run_batch(
    m: &dyn MapBackend,
    op: &str,
    in_b: Option<&[u8]>,
    count: u32,
    ks: usize,
    vs: usize,
    flags: (u64, u64),
) -> Batch {
    let mut out = vec![0u8; 4];
    let mut keys = vec![0u8; ks * count.max(1) as usize];
    let mut values = vec![0u8; vs * count.max(1) as usize];
    let mut a = BatchArgs {
        in_batch: in_b,
        out_batch: &mut out,
        keys: &mut keys,
        values: &mut values,
        count,
        elem_flags: flags.0,
        flags: flags.1,
    };
    let r = match op {
        "lookup" => m.lookup_batch(&mut a),
        "lookup_and_delete" => m.lookup_and_delete_batch(&mut a),
        _ => unreachable!(),
    };
    let count = a.count;
    Batch {
        r,
        count,
        keys,
        values,
        out,
    }
}

fn batches(b: &dyn DynBackend, t: &mut Trace) {
    for (ty, f) in VARIANTS {
        let vs = vsz(ty, 8);
        let m = b
            .create(&MapAttr::new(ty, 4, 8, 32).flags(f | BPF_F_ZERO_SEED))
            .unwrap();
        // Empty map.
        let x = run_batch(&*m, "lookup", None, 4, 4, vs, (0, 0));
        t.rec(
            &format!("{ty}/{f} lookup_batch empty"),
            x.r.map(|()| x.count),
        );
        // update_batch of 20 keys.
        let n = 20u32;
        let mut kb: Vec<u8> = (0..n).flat_map(|i| key(4, i)).collect();
        let mut vb: Vec<u8> = (0..n).flat_map(|i| val(ty, 8, i as u8)).collect();
        let mut ob = [0u8; 4];
        let mut a = BatchArgs {
            in_batch: None,
            out_batch: &mut ob,
            keys: &mut kb,
            values: &mut vb,
            count: n,
            elem_flags: 0,
            flags: 0,
        };
        let r = m.update_batch(&mut a);
        let c = a.count;
        t.rec("update_batch 20", r.map(|()| c));
        for (elem, fl) in [(BPF_NOEXIST, 0), (BPF_F_LOCK, 0), (0, 1), (8, 0)] {
            let mut kb: Vec<u8> = (18..22).flat_map(|i| key(4, i)).collect();
            let mut vb: Vec<u8> = (18..22).flat_map(|i| val(ty, 8, i as u8)).collect();
            let mut ob = [0u8; 4];
            let mut a = BatchArgs {
                in_batch: None,
                out_batch: &mut ob,
                keys: &mut kb,
                values: &mut vb,
                count: 4,
                elem_flags: elem,
                flags: fl,
            };
            let r = m.update_batch(&mut a);
            let c = a.count;
            t.rec(
                &format!("update_batch 18..22 elem {elem} flags {fl}"),
                r.map(|()| c),
            );
        }
        // Chunked lookup with several chunk sizes; buckets larger than the chunk give ENOSPC.
        for chunk in [1u32, 2, 3, 5, 64] {
            let mut pos: Option<Vec<u8>> = None;
            let mut steps = 0;
            loop {
                let x = run_batch(&*m, "lookup", pos.as_deref(), chunk, 4, vs, (0, 0));
                let c = x.count as usize;
                t.rec(&format!("chunk {chunk} step {steps}"), x.r.map(|()| c));
                t.rec(
                    "data",
                    Ok::<_, Errno>((
                        c,
                        x.keys[..4 * c].to_vec(),
                        x.values[..vs * c].to_vec(),
                        x.out.clone(),
                    )),
                );
                steps += 1;
                if x.r.is_err() && c == 0 || steps > 40 {
                    break;
                }
                pos = Some(x.out);
                if x.r.is_err() {
                    break;
                }
            }
        }
        for fl in [(BPF_F_LOCK, 0), (1, 0), (0, 1)] {
            let x = run_batch(&*m, "lookup", None, 4, 4, vs, fl);
            t.rec(&format!("lookup_batch flags {fl:?}"), x.r.map(|()| x.count));
        }
        let x = run_batch(&*m, "lookup", None, 0, 4, vs, (0, 0));
        t.rec("lookup_batch count 0", x.r.map(|()| x.count));
        // delete_batch of some keys including a missing one.
        let mut kb: Vec<u8> = [0u32, 1, 99, 2].iter().flat_map(|i| key(4, *i)).collect();
        let mut vb = vec![0u8; vs * 4];
        let mut ob = [0u8; 4];
        let mut a = BatchArgs {
            in_batch: None,
            out_batch: &mut ob,
            keys: &mut kb,
            values: &mut vb,
            count: 4,
            elem_flags: 0,
            flags: 0,
        };
        let r = m.delete_batch(&mut a);
        let c = a.count;
        t.rec("delete_batch with missing", r.map(|()| c));
        // Drain with lookup_and_delete_batch.
        let mut pos: Option<Vec<u8>> = None;
        for step in 0..30 {
            let x = run_batch(&*m, "lookup_and_delete", pos.as_deref(), 3, 4, vs, (0, 0));
            let c = x.count as usize;
            t.rec(&format!("drain step {step}"), x.r.map(|()| c));
            t.rec(
                "drained",
                Ok::<_, Errno>((x.keys[..4 * c].to_vec(), x.values[..vs * c].to_vec())),
            );
            if x.r.is_err() {
                break;
            }
            pos = Some(x.out);
        }
        let (keys, end) = walk(&*m, 4);
        t.rec("walk after drain", end.map(|()| keys));
    }
}

fn freeze(b: &dyn DynBackend, t: &mut Trace) {
    for (ty, f) in VARIANTS {
        let m = b.create(&MapAttr::new(ty, 4, 8, 4).flags(f)).unwrap();
        let v = val(ty, 8, 1);
        t.rec("update", m.update_elem(Some(&key(4, 0)), &v, 0));
        t.rec("freeze", m.freeze());
        t.rec("freeze again", m.freeze());
        t.rec("update after", m.update_elem(Some(&key(4, 0)), &v, 0));
        t.rec("delete after", m.delete_elem(Some(&key(4, 0))));
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete after",
            m.lookup_and_delete_elem(Some(&key(4, 0)), &mut out, 0),
        );
        let mut out = vec![0u8; vsz(ty, 8)];
        let r = m.lookup_elem(Some(&key(4, 0)), &mut out, 0);
        t.rec("lookup after", r.map(|()| out));
        let x = run_batch(&*m, "lookup_and_delete", None, 4, 4, vsz(ty, 8), (0, 0));
        t.rec("lookup_and_delete_batch after", x.r.map(|()| x.count));
        let x = run_batch(&*m, "lookup", None, 4, 4, vsz(ty, 8), (0, 0));
        t.rec("lookup_batch after", x.r.map(|()| x.count));
    }
}

#[test]
fn kdiff_hash_alloc_errno() {
    diff("kdiff_hash_alloc_errno", create_errno);
}

#[test]
fn kdiff_hash_update_flags() {
    diff("kdiff_hash_update_flags", update_flags);
}

#[test]
fn kdiff_hash_iteration_order() {
    diff("kdiff_hash_iteration_order", iteration_order);
}

#[test]
fn kdiff_hash_batch_ops() {
    diff("kdiff_hash_batch_ops", batches);
}

#[test]
fn kdiff_hash_freeze() {
    diff("kdiff_hash_freeze", freeze);
}

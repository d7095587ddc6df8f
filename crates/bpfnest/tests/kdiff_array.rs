// SPDX-License-Identifier: Apache-2.0 OR MIT
//! ARRAY and PERCPU_ARRAY on both backends: create errno matrix, update flags, delete,
//! next-key walk, lookup-and-delete, batches, freeze, RDONLY/WRONLY handles and per-CPU values.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{BatchArgs, MapAttr, MapBackend};
use kdiff::{diff, k, val, vsz, DynBackend, Trace};

const TYPES: [u32; 2] = [BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_ARRAY];

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        for (ks, vs, me) in [
            (4, 8, 4),
            (4, 1, 1),
            (4, 0, 4),
            (0, 8, 4),
            (8, 8, 4),
            (2, 8, 4),
            (4, 8, 0),
            (4, 4096, 4),
            (4, 32768, 2),
            (4, 1 << 20, 1),
            (4, (1 << 20) + 1, 1),
            (4, u32::MAX, 1),
        ] {
            t.rec(
                &format!("{ty} create k{ks} v{vs} n{me}"),
                b.create(&MapAttr::new(ty, ks, vs, me))
                    .map(|m| (m.info().key_size, m.info().value_size, m.info().max_entries)),
            );
        }
        for bit in 0..=18u32 {
            let f = 1u32 << bit;
            t.rec(
                &format!("{ty} flag bit {bit}"),
                b.create(&MapAttr::new(ty, 4, 8, 4).flags(f))
                    .map(|m| m.info().map_flags),
            );
        }
        t.rec(
            &format!("{ty} flag bit 19"),
            b.create(&MapAttr::new(ty, 4, 8, 4).flags(1 << 19))
                .map(|_| ()),
        );
        t.rec(
            &format!("{ty} rdonly|wronly"),
            b.create(&MapAttr::new(ty, 4, 8, 4).flags(BPF_F_RDONLY | BPF_F_WRONLY))
                .map(|_| ()),
        );
        t.rec(
            &format!("{ty} rdonly_prog|wronly_prog"),
            b.create(&MapAttr::new(ty, 4, 8, 4).flags(BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG))
                .map(|_| ()),
        );
        t.rec(
            &format!("{ty} mmapable|rdonly_prog"),
            b.create(&MapAttr::new(ty, 4, 8, 4).flags(BPF_F_MMAPABLE | BPF_F_RDONLY_PROG))
                .map(|m| m.info().map_flags),
        );
        t.rec(
            &format!("{ty} numa node 0"),
            b.create(&{
                let mut a = MapAttr::new(ty, 4, 8, 4).flags(BPF_F_NUMA_NODE);
                a.numa_node = 0;
                a
            })
            .map(|_| ()),
        );
        t.rec(
            &format!("{ty} numa node 4096"),
            b.create(&{
                let mut a = MapAttr::new(ty, 4, 8, 4).flags(BPF_F_NUMA_NODE);
                a.numa_node = 4096;
                a
            })
            .map(|_| ()),
        );
        t.rec(
            &format!("{ty} map_extra 1"),
            b.create(&MapAttr::new(ty, 4, 8, 4).extra(1)).map(|_| ()),
        );
        t.rec(
            &format!("{ty} btf_key_type_id without btf"),
            b.create(&{
                let mut a = MapAttr::new(ty, 4, 8, 4);
                a.btf_key_type_id = 1;
                a
            })
            .map(|_| ()),
        );
        t.rec(
            &format!("{ty} name ok"),
            b.create(&MapAttr::new(ty, 4, 8, 4).name("abc_1.x"))
                .map(|m| m.info().name),
        );
        t.rec(
            &format!("{ty} name bad char"),
            b.create(&MapAttr::new(ty, 4, 8, 4).name("a-b")).map(|_| ()),
        );
    }
}

fn update_flags(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        let m = b.create(&MapAttr::new(ty, 4, 12, 4)).unwrap();
        let v = val(ty, 12, 7);
        for flags in [BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3, BPF_F_LOCK, 8, 1 << 32] {
            for key in [0u32, 3, 4, u32::MAX] {
                t.rec(
                    &format!("{ty} update key {key} flags {flags:#x}"),
                    m.update_elem(Some(&k(key)), &v, flags),
                );
            }
        }
        t.rec("update short key", m.update_elem(Some(&[0u8; 2]), &v, 0));
        t.rec("update null key", m.update_elem(None, &v, 0));
        for key in [0u32, 1, 3, 4] {
            let mut out = vec![0u8; vsz(ty, 12)];
            let r = m.lookup_elem(Some(&k(key)), &mut out, 0);
            t.rec(&format!("{ty} lookup {key}"), r.map(|()| out));
        }
        for flags in [BPF_F_LOCK, 1, 8] {
            let mut out = vec![0u8; vsz(ty, 12)];
            t.rec(
                &format!("{ty} lookup flags {flags}"),
                m.lookup_elem(Some(&k(0)), &mut out, flags),
            );
        }
        // Padding bytes of per-CPU values: written as given, read back zero-padded?
        let m2 = b.create(&MapAttr::new(ty, 4, 3, 2)).unwrap();
        let v2 = val(ty, 3, 0xf0);
        t.rec("update v3", m2.update_elem(Some(&k(1)), &v2, 0));
        let mut out = vec![0xaau8; vsz(ty, 3)];
        let r = m2.lookup_elem(Some(&k(1)), &mut out, 0);
        t.rec("lookup v3", r.map(|()| out));
    }
}

fn delete_walk(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        let m = b.create(&MapAttr::new(ty, 4, 8, 5)).unwrap();
        for key in [0u32, 4, 5] {
            t.rec(&format!("{ty} delete {key}"), m.delete_elem(Some(&k(key))));
        }
        t.rec("delete null", m.delete_elem(None));
        let mut walk = Vec::new();
        let mut cur: Option<[u8; 4]> = None;
        loop {
            let mut next = [0u8; 4];
            match m.get_next_key(cur.as_ref().map(|c| &c[..]), &mut next) {
                Ok(()) => {
                    walk.push(u32::from_ne_bytes(next));
                    cur = Some(next);
                }
                Err(e) => {
                    t.rec("walk end", Err::<(), _>(e));
                    break;
                }
            }
            if walk.len() > 10 {
                break;
            }
        }
        t.rec(&format!("{ty} walk"), Ok::<_, bpfnest::Errno>(walk));
        for key in [0u32, 3, 4, 5, 100, u32::MAX] {
            let mut next = [0u8; 4];
            let r = m.get_next_key(Some(&k(key)), &mut next);
            t.rec(&format!("{ty} next of {key}"), r.map(|()| next));
        }
        for key in [0u32, 9] {
            let mut out = vec![0u8; vsz(ty, 8)];
            t.rec(
                &format!("{ty} lookup_and_delete {key}"),
                m.lookup_and_delete_elem(Some(&k(key)), &mut out, 0),
            );
        }
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete flags",
            m.lookup_and_delete_elem(Some(&k(0)), &mut out, BPF_F_LOCK),
        );
    }
}

/// A batch call's result, count, keys, values and out position.
type BatchOutcome = (Result<(), bpfnest::Errno>, u32, Vec<u8>, Vec<u8>, [u8; 4]);

fn batch(
    m: &dyn MapBackend,
    op: &str,
    in_b: Option<u32>,
    count: u32,
    vs: usize,
    flags: (u64, u64),
) -> BatchOutcome {
    let inb = in_b.map(k);
    let mut out_b = [0xeeu8; 4];
    let mut keys = vec![0u8; 4 * count.max(1) as usize];
    let mut values = vec![0u8; vs * count.max(1) as usize];
    let mut a = BatchArgs {
        in_batch: inb.as_ref().map(|x| &x[..]),
        out_batch: &mut out_b,
        keys: &mut keys,
        values: &mut values,
        count,
        elem_flags: flags.0,
        flags: flags.1,
    };
    let r = match op {
        "lookup" => m.lookup_batch(&mut a),
        "lookup_and_delete" => m.lookup_and_delete_batch(&mut a),
        "delete" => m.delete_batch(&mut a),
        _ => unreachable!(),
    };
    let c = a.count;
    (r, c, keys, values, out_b)
}

fn batches(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        let vs = vsz(ty, 8);
        let m = b.create(&MapAttr::new(ty, 4, 8, 5)).unwrap();
        // update_batch: keys 0..count with distinct values, including an out-of-range key.
        for (keys, flags) in [
            (vec![0u32, 1, 2], 0u64),
            (vec![3, 7, 4], 0),
            (vec![4], BPF_NOEXIST),
            (vec![2], BPF_F_LOCK),
            (vec![2], 3),
            (vec![], 0),
        ] {
            let mut kb: Vec<u8> = keys.iter().flat_map(|x| k(*x)).collect();
            let mut vb: Vec<u8> = keys
                .iter()
                .flat_map(|x| val(ty, 8, *x as u8 * 16))
                .collect();
            let mut ob = [0u8; 4];
            let mut a = BatchArgs {
                in_batch: None,
                out_batch: &mut ob,
                keys: &mut kb,
                values: &mut vb,
                count: keys.len() as u32,
                elem_flags: flags,
                flags: 0,
            };
            let r = m.update_batch(&mut a);
            let c = a.count;
            t.rec(
                &format!("{ty} update_batch {keys:?} {flags}"),
                r.map(|()| c),
            );
            let mut ob = [0u8; 4];
            let mut kb = k(0).to_vec();
            let mut vb = val(ty, 8, 0);
            let mut a = BatchArgs {
                in_batch: None,
                out_batch: &mut ob,
                keys: &mut kb,
                values: &mut vb,
                count: 1,
                elem_flags: 0,
                flags: 1,
            };
            if keys.is_empty() {
                let r = m.update_batch(&mut a);
                let c = a.count;
                t.rec("update_batch batch.flags 1", r.map(|()| c));
            }
        }
        for (in_b, count) in [
            (None, 10),
            (None, 5),
            (None, 2),
            (Some(1), 2),
            (Some(3), 2),
            (Some(4), 2),
            (Some(5), 2),
            (None, 0),
        ] {
            let (r, c, keys, values, ob) = batch(&*m, "lookup", in_b, count, vs, (0, 0));
            t.rec(&format!("{ty} lookup_batch {in_b:?} {count}"), r);
            t.rec(
                "count/keys/values/out",
                Ok::<_, bpfnest::Errno>((c, keys, values, ob)),
            );
        }
        for fl in [(BPF_F_LOCK, 0), (1, 0), (0, 1)] {
            let (r, c, _, _, _) = batch(&*m, "lookup", None, 2, vs, fl);
            t.rec(&format!("{ty} lookup_batch flags {fl:?}"), r.map(|()| c));
        }
        let (r, c, _, _, _) = batch(&*m, "lookup_and_delete", None, 2, vs, (0, 0));
        t.rec(&format!("{ty} lookup_and_delete_batch"), r.map(|()| c));
        let (r, c, _, _, _) = batch(&*m, "delete", None, 2, vs, (0, 0));
        t.rec(&format!("{ty} delete_batch"), r.map(|()| c));
    }
}

fn freeze(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        let m = b.create(&MapAttr::new(ty, 4, 8, 2)).unwrap();
        let v = val(ty, 8, 1);
        t.rec("update before", m.update_elem(Some(&k(0)), &v, 0));
        t.rec("freeze", m.freeze());
        t.rec("frozen info", Ok::<_, bpfnest::Errno>(m.info().frozen));
        t.rec("freeze again", m.freeze());
        t.rec("update after", m.update_elem(Some(&k(0)), &v, 0));
        t.rec("delete after", m.delete_elem(Some(&k(0))));
        let mut out = vec![0u8; vsz(ty, 8)];
        let r = m.lookup_elem(Some(&k(0)), &mut out, 0);
        t.rec("lookup after", r.map(|()| out));
        let mut nk = [0u8; 4];
        t.rec("next after", m.get_next_key(None, &mut nk).map(|()| nk));
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete after",
            m.lookup_and_delete_elem(Some(&k(0)), &mut out, 0),
        );
        let (r, c, _, _, _) = batch(&*m, "lookup", None, 2, vsz(ty, 8), (0, 0));
        t.rec("lookup_batch after", r.map(|()| c));
        let mut kb = k(1).to_vec();
        let mut vb = v.clone();
        let mut ob = [0u8; 4];
        let mut a = BatchArgs {
            in_batch: None,
            out_batch: &mut ob,
            keys: &mut kb,
            values: &mut vb,
            count: 1,
            elem_flags: 0,
            flags: 0,
        };
        let r = m.update_batch(&mut a);
        let c = a.count;
        t.rec("update_batch after", r.map(|()| c));
        // Freezing a map with rdonly_prog / mmapable.
        for f in [BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG, BPF_F_MMAPABLE] {
            if let Ok(m) = b.create(&MapAttr::new(ty, 4, 8, 2).flags(f)) {
                t.rec(&format!("{ty} freeze flag {f:#x}"), m.freeze());
            } else {
                t.rec(
                    &format!("{ty} create flag {f:#x} failed"),
                    Ok::<(), bpfnest::Errno>(()),
                );
            }
        }
    }
}

fn rdonly_wronly(b: &dyn DynBackend, t: &mut Trace) {
    for ty in TYPES {
        for f in [
            BPF_F_RDONLY,
            BPF_F_WRONLY,
            BPF_F_RDONLY_PROG,
            BPF_F_WRONLY_PROG,
        ] {
            let m = b.create(&MapAttr::new(ty, 4, 8, 2).flags(f)).unwrap();
            let v = val(ty, 8, 3);
            let vs = vsz(ty, 8);
            t.rec(
                &format!("{ty} {f:#x} info flags"),
                Ok::<_, bpfnest::Errno>(m.info().map_flags),
            );
            t.rec("update", m.update_elem(Some(&k(0)), &v, 0));
            let mut out = vec![0u8; vs];
            let r = m.lookup_elem(Some(&k(0)), &mut out, 0);
            t.rec("lookup", r.map(|()| out));
            t.rec("delete", m.delete_elem(Some(&k(0))));
            let mut nk = [0u8; 4];
            t.rec("next", m.get_next_key(None, &mut nk).map(|()| nk));
            let mut out = vec![0u8; vs];
            t.rec(
                "lookup_and_delete",
                m.lookup_and_delete_elem(Some(&k(0)), &mut out, 0),
            );
            let (r, c, _, _, _) = batch(&*m, "lookup", None, 2, vs, (0, 0));
            t.rec("lookup_batch", r.map(|()| c));
            let (r, c, _, _, _) = batch(&*m, "delete", None, 2, vs, (0, 0));
            t.rec("delete_batch", r.map(|()| c));
            let mut kb = k(1).to_vec();
            let mut vb = v.clone();
            let mut ob = [0u8; 4];
            let mut a = BatchArgs {
                in_batch: None,
                out_batch: &mut ob,
                keys: &mut kb,
                values: &mut vb,
                count: 1,
                elem_flags: 0,
                flags: 0,
            };
            let r = m.update_batch(&mut a);
            let c = a.count;
            t.rec("update_batch", r.map(|()| c));
            t.rec("freeze", m.freeze());
            // A second handle through the id: same map, flags 0.
            let id = m.info().id;
            let h = b.get_by_id(id);
            t.rec(
                "get_by_id",
                h.as_ref().map(|h| h.info().map_flags).map_err(|e| *e),
            );
            if let Ok(h) = h {
                t.rec("update via id", h.update_elem(Some(&k(0)), &v, 0));
            }
        }
    }
}

fn percpu_values(b: &dyn DynBackend, t: &mut Trace) {
    let ty = BPF_MAP_TYPE_PERCPU_ARRAY;
    for vsize in [1u32, 4, 8, 9, 16, 24] {
        let m = b.create(&MapAttr::new(ty, 4, vsize, 3)).unwrap();
        let v = val(ty, vsize, vsize as u8);
        t.rec(
            &format!("v{vsize} update"),
            m.update_elem(Some(&k(2)), &v, 0),
        );
        let mut out = vec![0x55u8; vsz(ty, vsize)];
        let r = m.lookup_elem(Some(&k(2)), &mut out, 0);
        t.rec("lookup", r.map(|()| out));
        let mut out = vec![0x55u8; vsz(ty, vsize)];
        let r = m.lookup_elem(Some(&k(1)), &mut out, 0);
        t.rec("lookup untouched", r.map(|()| out));
        // BPF_F_CPU is not in 6.18 for lookups of arrays? Probe high flag bits.
        for fl in [1u64 << 2, 1 << 3, 1 << 4, 1 << 32] {
            let mut out = vec![0u8; vsz(ty, vsize)];
            t.rec(
                &format!("lookup flags {fl:#x}"),
                m.lookup_elem(Some(&k(2)), &mut out, fl),
            );
            t.rec(
                &format!("update flags {fl:#x}"),
                m.update_elem(Some(&k(2)), &v, fl),
            );
        }
    }
}

#[test]
fn kdiff_array_create_errno() {
    diff("kdiff_array_create_errno", create_errno);
}

#[test]
fn kdiff_array_update_flags() {
    diff("kdiff_array_update_flags", update_flags);
}

#[test]
fn kdiff_array_delete_next_key() {
    diff("kdiff_array_delete_next_key", delete_walk);
}

#[test]
fn kdiff_array_batch_ops() {
    diff("kdiff_array_batch_ops", batches);
}

#[test]
fn kdiff_array_freeze() {
    diff("kdiff_array_freeze", freeze);
}

#[test]
fn kdiff_array_rdonly_wronly() {
    diff("kdiff_array_rdonly_wronly", rdonly_wronly);
}

#[test]
fn kdiff_percpu_array_values() {
    diff("kdiff_percpu_array_values", percpu_values);
}

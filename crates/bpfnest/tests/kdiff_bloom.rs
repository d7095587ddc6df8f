// SPDX-License-Identifier: Apache-2.0 OR MIT
//! BLOOM_FILTER on both backends: create errno matrix (including `map_extra` hash counts) and,
//! with `BPF_F_ZERO_SEED`, identical membership answers for many probe values.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{BatchArgs, MapAttr};
use kdiff::{diff, DynBackend, Trace};

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    let ty = BPF_MAP_TYPE_BLOOM_FILTER;
    for (ks, vs, me) in [
        (0, 4, 100),
        (4, 4, 100),
        (0, 0, 100),
        (0, 4, 0),
        (0, 1, 1),
        (0, 32768, 2),
        (0, 1 << 20, 1),
        (0, u32::MAX, 1),
    ] {
        t.rec(
            &format!("k{ks} v{vs} n{me}"),
            b.create(&MapAttr::new(ty, ks, vs, me))
                .map(|m| m.info().max_entries),
        );
    }
    for extra in [0u64, 1, 5, 15, 16, 17, 0xffff_fff0, 1 << 32, 1 << 33] {
        t.rec(
            &format!("map_extra {extra:#x}"),
            b.create(&MapAttr::new(ty, 0, 4, 100).extra(extra))
                .map(|m| m.info().map_extra),
        );
    }
    for bit in 0..=19u32 {
        t.rec(
            &format!("flag bit {bit}"),
            b.create(&MapAttr::new(ty, 0, 4, 100).flags(1 << bit))
                .map(|m| m.info().map_flags),
        );
    }
}

fn membership(b: &dyn DynBackend, t: &mut Trace) {
    let ty = BPF_MAP_TYPE_BLOOM_FILTER;
    for (vs, n, nr_hashes) in [
        (4u32, 50u32, 0u64),
        (4, 200, 1),
        (8, 100, 3),
        (13, 40, 15),
        (3, 500, 2),
    ] {
        let m = b
            .create(
                &MapAttr::new(ty, 0, vs, n)
                    .flags(BPF_F_ZERO_SEED)
                    .extra(nr_hashes),
            )
            .unwrap();
        let val = |i: u32| -> Vec<u8> {
            (0..vs as usize)
                .map(|j| (i.wrapping_mul(0x9e37_79b9) >> ((j % 4) * 8)) as u8 ^ j as u8)
                .collect()
        };
        for i in 0..n {
            m.update_elem(None, &val(i), BPF_ANY).unwrap();
        }
        let mut hits = Vec::new();
        for i in 0..(n * 20) {
            let mut probe = val(i);
            hits.push(m.lookup_elem(None, &mut probe, 0).is_ok());
        }
        let bits: String = hits.iter().map(|h| if *h { '1' } else { '0' }).collect();
        t.rec(
            &format!("v{vs} n{n} hashes {nr_hashes} membership"),
            Ok::<_, bpfnest::Errno>(bits),
        );
        let mut probe = val(n + 1);
        t.rec("lookup errno", m.lookup_elem(None, &mut probe, 0));
    }
    // Unsupported and flag-dependent commands.
    let m = b.create(&MapAttr::new(ty, 0, 4, 10)).unwrap();
    for fl in [BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3, BPF_F_LOCK] {
        t.rec(
            &format!("push flags {fl}"),
            m.update_elem(None, &[1, 2, 3, 4], fl),
        );
    }
    t.rec(
        "push with key",
        m.update_elem(Some(&[0; 4]), &[1, 2, 3, 4], 0),
    );
    let mut p = [1u8, 2, 3, 4];
    t.rec("peek flags 1", m.lookup_elem(None, &mut p, 1));
    t.rec("peek with key", m.lookup_elem(Some(&[0; 4]), &mut p, 0));
    t.rec("pop", m.lookup_and_delete_elem(None, &mut p, 0));
    t.rec("delete", m.delete_elem(None));
    let mut nk = [0u8; 4];
    t.rec("get_next_key", m.get_next_key(None, &mut nk));
    let (mut ob, mut kb, mut vb) = ([0u8; 4], [0u8; 4], [0u8; 4]);
    let mut a = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut kb,
        values: &mut vb,
        count: 1,
        elem_flags: 0,
        flags: 0,
    };
    t.rec("lookup_batch", m.lookup_batch(&mut a));
    t.rec("update_batch", m.update_batch(&mut a));
    t.rec("freeze", m.freeze());
    t.rec("push frozen", m.update_elem(None, &[9, 9, 9, 9], 0));
    t.rec("peek frozen", m.lookup_elem(None, &mut p, 0));
}

#[test]
fn kdiff_bloom_create_errno() {
    diff("kdiff_bloom_create_errno", create_errno);
}

#[test]
fn kdiff_bloom_membership() {
    diff("kdiff_bloom_membership", membership);
}

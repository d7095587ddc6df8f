// SPDX-License-Identifier: Apache-2.0 OR MIT
//! LPM_TRIE on both backends (after `map_tests/lpm_trie_map_basic_ops.c`): create errno matrix,
//! longest-prefix lookups, update flags, deletes and the postorder get_next_key walk.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{Errno, MapAttr, MapBackend};
use kdiff::{diff, DynBackend, Trace};

/// `struct bpf_lpm_trie_key_u8` with `data_len` bytes of data.
fn lk(prefixlen: u32, data: &[u8], data_len: usize) -> Vec<u8> {
    let mut v = prefixlen.to_ne_bytes().to_vec();
    let mut d = data.to_vec();
    d.resize(data_len, 0);
    v.extend_from_slice(&d);
    v
}

fn walk(m: &dyn MapBackend, ks: usize) -> Result<Vec<Vec<u8>>, Errno> {
    match kdiff::walk(m, ks) {
        (keys, Ok(()) | Err(Errno::ENOENT)) => Ok(keys),
        (_, Err(e)) => Err(e),
    }
}

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    let ty = BPF_MAP_TYPE_LPM_TRIE;
    for (ks, vs, me) in [
        (8, 8, 16),
        (5, 1, 1),
        (4, 8, 16),
        (3, 8, 16),
        (0, 8, 16),
        (260, 8, 16),
        (261, 8, 16),
        (8, 0, 16),
        (8, 8, 0),
        (8, 1 << 16, 2),
        (8, (1 << 22) - 260, 2),
        (8, 1 << 22, 2),
        (8, u32::MAX, 2),
        (8, 8, u32::MAX),
    ] {
        for f in [0, BPF_F_NO_PREALLOC] {
            t.rec(
                &format!("k{ks} v{vs} n{me} f{f}"),
                b.create(&MapAttr::new(ty, ks, vs, me).flags(f))
                    .map(|m| m.info().max_entries),
            );
        }
    }
    for bit in 0..=19u32 {
        t.rec(
            &format!("flag bit {bit} | no_prealloc"),
            b.create(&MapAttr::new(ty, 8, 8, 16).flags(BPF_F_NO_PREALLOC | 1 << bit))
                .map(|m| m.info().map_flags),
        );
    }
    t.rec(
        "map_extra",
        b.create(&MapAttr::new(ty, 8, 8, 16).flags(BPF_F_NO_PREALLOC).extra(1))
            .map(|_| ()),
    );
}

fn basic_ops(b: &dyn DynBackend, t: &mut Trace) {
    let ty = BPF_MAP_TYPE_LPM_TRIE;
    let ks = 8usize;
    let m = b
        .create(&MapAttr::new(ty, ks as u32, 4, 8).flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let val = |i: u32| i.to_ne_bytes();
    t.rec("walk empty", walk(&*m, ks));
    let mut nk = vec![0u8; ks];
    t.rec(
        "next of missing on empty",
        m.get_next_key(Some(&lk(32, &[1, 2, 3, 4], 4)), &mut nk),
    );
    let inserts: [(u32, [u8; 4]); 9] = [
        (16, [192, 168, 0, 0]),
        (24, [192, 168, 0, 0]),
        (8, [192, 0, 0, 0]),
        (24, [192, 168, 128, 0]),
        (32, [192, 168, 1, 1]),
        (0, [0, 0, 0, 0]),
        (24, [10, 0, 0, 0]),
        (31, [192, 168, 1, 0]),
        (20, [192, 168, 16, 0]),
    ];
    for (i, (p, d)) in inserts.iter().enumerate() {
        t.rec(
            &format!("insert {p}/{d:?}"),
            m.update_elem(Some(&lk(*p, d, 4)), &val(i as u32), BPF_NOEXIST),
        );
        t.rec("walk", walk(&*m, ks));
    }
    for (fl, p, d) in [
        (BPF_NOEXIST, 16u32, [192u8, 168, 0, 0]),
        (BPF_EXIST, 16, [192, 168, 0, 0]),
        (BPF_EXIST, 12, [192, 160, 0, 0]),
        (BPF_ANY, 16, [192, 168, 9, 9]),
        (3, 16, [192, 168, 0, 0]),
        (BPF_F_LOCK, 16, [192, 168, 0, 0]),
        (BPF_ANY, 33, [1, 1, 1, 1]),
        (BPF_ANY, u32::MAX, [1, 1, 1, 1]),
    ] {
        t.rec(
            &format!("update {p}/{d:?} flags {fl}"),
            m.update_elem(Some(&lk(p, &d, 4)), &val(77), fl),
        );
    }
    // Full map (max 8 nodes counted as entries).
    t.rec("walk full", walk(&*m, ks));
    let mut probes = Vec::new();
    for a in [0u8, 10, 192, 200] {
        for b2 in [0u8, 168, 169] {
            for c in [0u8, 1, 16, 17, 128, 255] {
                for d in [0u8, 1, 2] {
                    probes.push([a, b2, c, d]);
                }
            }
        }
    }
    for p in probes {
        let mut out = [0u8; 4];
        let r = m.lookup_elem(Some(&lk(32, &p, 4)), &mut out, 0);
        t.rec(&format!("lookup {p:?}"), r.map(|()| out));
    }
    for pl in [0u32, 8, 24, 33] {
        let mut out = [0u8; 4];
        let r = m.lookup_elem(Some(&lk(pl, &[192, 168, 1, 1], 4)), &mut out, 0);
        t.rec(&format!("lookup prefixlen {pl}"), r.map(|()| out));
    }
    let mut out = [0u8; 4];
    t.rec(
        "lookup flags 1",
        m.lookup_elem(Some(&lk(32, &[192, 168, 1, 1], 4)), &mut out, 1),
    );
    t.rec(
        "lookup_and_delete",
        m.lookup_and_delete_elem(Some(&lk(16, &[192, 168, 0, 0], 4)), &mut out, 0),
    );
    // next_key from keys present, missing and malformed.
    for (p, d) in [
        (16u32, [192u8, 168, 0, 0]),
        (0, [0, 0, 0, 0]),
        (32, [192, 168, 1, 1]),
        (17, [192, 168, 0, 0]),
        (33, [0, 0, 0, 0]),
    ] {
        let mut nk = vec![0u8; ks];
        let r = m.get_next_key(Some(&lk(p, &d, 4)), &mut nk);
        t.rec(&format!("next of {p}/{d:?}"), r.map(|()| nk));
    }
    for (p, d) in [
        (24u32, [192u8, 168, 0, 0]),
        (24, [192, 168, 0, 0]),
        (8, [192, 0, 0, 0]),
        (17, [192, 168, 0, 0]),
        (16, [192, 168, 0, 0]),
        (33, [0, 0, 0, 0]),
        (0, [0, 0, 0, 0]),
    ] {
        t.rec(
            &format!("delete {p}/{d:?}"),
            m.delete_elem(Some(&lk(p, &d, 4))),
        );
        t.rec("walk", walk(&*m, ks));
    }
    t.rec("delete null", m.delete_elem(None));
    t.rec("freeze", m.freeze());
    t.rec(
        "update frozen",
        m.update_elem(Some(&lk(8, &[1, 0, 0, 0], 4)), &val(1), 0),
    );
}

fn ipv6_like(b: &dyn DynBackend, t: &mut Trace) {
    // 16-byte data, many prefixes derived from a simple generator.
    let ks = 20usize;
    let m = b
        .create(&MapAttr::new(BPF_MAP_TYPE_LPM_TRIE, ks as u32, 8, 200).flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let mut x = 0x1234_5678u32;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut keys = Vec::new();
    for i in 0..150u32 {
        let pl = rnd() % 129;
        let d: Vec<u8> = (0..16)
            .map(|j| if j < 2 { 0x20 } else { rnd() as u8 & 0x3 })
            .collect();
        let key = lk(pl, &d, 16);
        t.rec(
            &format!("insert {i}"),
            m.update_elem(Some(&key), &(i as u64).to_ne_bytes(), BPF_ANY),
        );
        keys.push(key);
    }
    t.rec("walk", walk(&*m, ks));
    for _ in 0..200 {
        let d: Vec<u8> = (0..16)
            .map(|j| if j < 2 { 0x20 } else { rnd() as u8 & 0x3 })
            .collect();
        let mut out = [0u8; 8];
        let r = m.lookup_elem(Some(&lk(128, &d, 16)), &mut out, 0);
        t.rec("lookup", r.map(|()| out));
    }
    for key in keys.iter().step_by(2) {
        t.rec("delete", m.delete_elem(Some(key)));
    }
    t.rec("walk after deletes", walk(&*m, ks));
}

#[test]
fn kdiff_lpm_trie_create_errno() {
    diff("kdiff_lpm_trie_create_errno", create_errno);
}

#[test]
fn kdiff_lpm_trie_basic_ops() {
    diff("kdiff_lpm_trie_basic_ops", basic_ops);
}

#[test]
fn kdiff_lpm_trie_ipv6_walk() {
    diff("kdiff_lpm_trie_ipv6_walk", ipv6_like);
}

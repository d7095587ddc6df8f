// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_BLOOM_FILTER` through the public API: the alloc_check/alloc errno split,
//! every op errno, bit-array sizing (`mem_usage`), and false-positive parity with the kernel
//! under `BPF_F_ZERO_SEED`. Each expectation was measured on Linux 6.18 with bpf(2) and is
//! marked "kernel 6.18".
#![cfg(not(bpfnest_loom))]

use bpfnest_maps::registry::{self, Caps};
use bpfnest_maps::uapi::*;
use bpfnest_maps::{BatchArgs, Config, Errno, MapAttr, MapHandle, OpCtx, Runtime};

const KM: u32 = KMALLOC_MAX_SIZE as u32;
const B: u32 = BPF_MAP_TYPE_BLOOM_FILTER;

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn create(rt: &Runtime, attr: MapAttr) -> Result<MapHandle, Errno> {
    rt.map_create(&attr)
}

/// Syscall-side membership test: the value goes in through the lookup buffer.
fn contains(h: &MapHandle, v: &[u8]) -> Result<(), Errno> {
    let mut buf = v.to_vec();
    h.lookup_elem(None, &mut buf, 0)
}

#[test]
fn create_errnos() {
    let rt = rt();
    let c = |k, v, n, f, x| create(&rt, MapAttr::new(B, k, v, n).flags(f).extra(x)).map(|_| ());
    assert_eq!(c(0, 4, 4, 0, 0), Ok(()));
    // kernel 6.18: bloom_map_alloc refuses these with EINVAL ...
    assert_eq!(c(4, 4, 4, 0, 0), Err(Errno::EINVAL), "key_size 4");
    assert_eq!(c(0, 0, 4, 0, 0), Err(Errno::EINVAL), "value_size 0");
    assert_eq!(c(0, 4, 0, 0, 0), Err(Errno::EINVAL), "max_entries 0");
    assert_eq!(c(0, 4, 4, 0, 16), Err(Errno::EINVAL), "map_extra 16");
    assert_eq!(
        c(0, 4, 4, 0, 1 << 32),
        Err(Errno::EINVAL),
        "map_extra 1 << 32"
    );
    assert_eq!(c(0, 4, 4, 0, 15), Ok(()), "map_extra 15");
    assert_eq!(c(0, KM, 4, 0, 0), Ok(()), "value_size KMALLOC_MAX_SIZE");
    // ... but bloom_map_alloc_check's E2BIG comes first, whatever else is wrong.
    assert_eq!(c(0, KM + 1, 4, 0, 0), Err(Errno::E2BIG));
    assert_eq!(
        c(4, KM + 1, 4, 0, 0),
        Err(Errno::E2BIG),
        "too big and keyed"
    );
    assert_eq!(
        c(0, KM + 1, 0, 0, 0),
        Err(Errno::E2BIG),
        "too big and empty"
    );
    assert_eq!(
        c(0, KM + 1, 4, 0, 16),
        Err(Errno::E2BIG),
        "too big and bad extra"
    );
    // kernel 6.18: flag bits 2 (NUMA), 3, 4 (RDONLY/WRONLY), 6 (ZERO_SEED), 7, 8 (*_PROG) only.
    for bit in 0..20 {
        let want = if [2, 3, 4, 6, 7, 8].contains(&bit) {
            Ok(())
        } else {
            Err(Errno::EINVAL)
        };
        assert_eq!(c(0, 4, 4, 1 << bit, 0), want, "flag bit {bit}");
    }
    assert_eq!(
        c(0, 4, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG, 0),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: map_extra on any other type is EINVAL (map_create).
    assert_eq!(
        create(&rt, MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 4, 4).extra(1)).map(|_| ()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn privilege_decides_before_alloc_checks() {
    // kernel 6.18 (syscall.c map_create): BLOOM_FILTER needs CAP_BPF, checked after
    // map_alloc_check but before map_alloc; not probed (unprivileged_bpf_disabled = 2 here).
    let rt = Runtime::new(Config {
        nr_cpus: 2,
        caps: Caps::NONE,
        unprivileged_bpf_disabled: false,
        ..Config::default()
    });
    assert_eq!(
        rt.map_create(&MapAttr::new(B, 0, 4, 4)).map(|_| ()),
        Err(Errno::EPERM)
    );
    // The EINVAL checks live in alloc, so an unprivileged caller sees EPERM ...
    assert_eq!(
        rt.map_create(&MapAttr::new(B, 4, 4, 4)).map(|_| ()),
        Err(Errno::EPERM)
    );
    // ... while the E2BIG of alloc_check still wins.
    assert_eq!(
        rt.map_create(&MapAttr::new(B, 0, KM + 1, 4)).map(|_| ()),
        Err(Errno::E2BIG)
    );
    let row = registry::find(B).unwrap();
    assert!(row.meta_equal.is_some() && row.check_btf.is_some() && !row.unprivileged);
    // bloom_map_check_btf: the key type must be void.
    let check = row.check_btf.unwrap();
    let attr = MapAttr::new(B, 0, 4, 4);
    assert_eq!(
        check(&attr, registry::BtfKind::Void, registry::BtfKind::Int32),
        Ok(())
    );
    assert_eq!(
        check(&attr, registry::BtfKind::Int32, registry::BtfKind::Int32),
        Err(Errno::EINVAL)
    );
}

#[test]
fn op_errnos() {
    let rt = rt();
    let h = create(&rt, MapAttr::new(B, 0, 4, 16)).unwrap();
    let v = 7u32.to_ne_bytes();
    h.update_elem(None, &v, BPF_ANY).unwrap();
    // kernel 6.18: push takes only BPF_ANY; F_LOCK fails earlier (no spin lock), also EINVAL.
    for f in [BPF_EXIST, BPF_NOEXIST, BPF_F_LOCK, 8] {
        assert_eq!(
            h.update_elem(None, &v, f),
            Err(Errno::EINVAL),
            "push flags {f}"
        );
    }
    assert_eq!(
        h.update_elem(Some(&[0; 4]), &v, BPF_ANY),
        Err(Errno::EINVAL),
        "push with key"
    );
    // kernel 6.18: pushed value is present, another (here) absent; lookup flag 1 is EINVAL.
    assert_eq!(contains(&h, &v), Ok(()));
    assert_eq!(contains(&h, &8u32.to_ne_bytes()), Err(Errno::ENOENT));
    let mut buf = v;
    assert_eq!(h.lookup_elem(None, &mut buf, 1), Err(Errno::EINVAL));
    // kernel 6.18: delete and get_next_key are EOPNOTSUPP (95), with a key EINVAL.
    assert_eq!(h.delete_elem(None), Err(Errno::EOPNOTSUPP));
    assert_eq!(h.delete_elem(Some(&[0; 4])), Err(Errno::EINVAL));
    assert_eq!(h.get_next_key(None, &mut []), Err(Errno::EOPNOTSUPP));
    assert_eq!(h.get_next_key(Some(&[0; 4]), &mut []), Err(Errno::EINVAL));
    // kernel 6.18: lookup_and_delete is ENOTSUPP (524); with flags 1 EINVAL.
    let mut buf = v;
    assert_eq!(
        h.lookup_and_delete_elem(None, &mut buf, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        h.lookup_and_delete_elem(None, &mut buf, 1),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: every batch command is ENOTSUPP.
    type BatchFn = fn(&MapHandle, &mut BatchArgs<'_>) -> Result<(), Errno>;
    let cmds: [BatchFn; 4] = [
        MapHandle::lookup_batch,
        MapHandle::lookup_and_delete_batch,
        MapHandle::update_batch,
        MapHandle::delete_batch,
    ];
    for cmd in cmds {
        let (mut out, mut vals) = ([0u8; 4], [0u8; 4]);
        let mut args = BatchArgs {
            in_batch: None,
            out_batch: &mut out,
            keys: &mut [],
            values: &mut vals,
            count: 1,
            elem_flags: 0,
            flags: 0,
        };
        assert_eq!(cmd(&h, &mut args), Err(Errno::ENOTSUPP));
    }
    // Program-side stubs (bloom_filter.c): pop EOPNOTSUPP, update EINVAL, lookup NULL.
    let map = h.map();
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    let mut out = [0u8; 4];
    assert_eq!(map.ops().pop_elem(map, &mut out), Err(Errno::EOPNOTSUPP));
    assert_eq!(
        map.ops().update_elem(map, &ctx, &[], &v, BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert!(map.ops().lookup_elem(map, &ctx, &[]).is_none());
    assert_eq!(map.ops().mmap(map).map(|_| ()), Err(Errno::ENOTSUPP));
    // kernel 6.18: after freeze, push is EPERM and lookup still answers.
    h.freeze().unwrap();
    assert_eq!(h.update_elem(None, &v, BPF_ANY), Err(Errno::EPERM));
    assert_eq!(contains(&h, &v), Ok(()));
}

#[test]
fn bitset_sizing_via_mem_usage() {
    let rt = rt();
    // (max_entries, map_extra, memlock): kernel 6.18 fdinfo memlock of each filter.
    let cases: &[(u32, u64, u64)] = &[
        (4, 0, 320),
        (4, 15, 328),
        (1, 1, 320),
        (46, 1, 320),
        (47, 1, 320),
        (50, 1, 328),
        (100, 3, 376),
        (1000, 1, 568),
        (1 << 20, 5, 1_048_888),
        // Overflowing sizes get the 2^32-bit array (512 MiB, zeroed lazily here).
        (0x7fff_ffff, 1, 536_871_224),
        (u32::MAX, 15, 536_871_224),
    ];
    for &(n, k, memlock) in cases {
        let h = create(&rt, MapAttr::new(B, 0, 4, n).extra(k)).unwrap();
        assert_eq!(h.map().mem_usage(), memlock, "n={n} k={k}");
    }
}

/// The probe's value generator: value `i` of `vs` bytes.
fn val(i: u64, vs: usize) -> Vec<u8> {
    let mut x = i
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(0x632B_E59B_D9B4_E019);
    let mut b = Vec::with_capacity(vs + 8);
    while b.len() < vs {
        b.extend_from_slice(&x.to_le_bytes());
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    b.truncate(vs);
    b
}

fn fnv1a(list: &[u32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in list.iter().flat_map(|x| x.to_le_bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[test]
fn zero_seed_false_positives_match_kernel() {
    // kernel 6.18: a BPF_F_ZERO_SEED filter of (value_size, max_entries, map_extra) with
    // values `pushed` pushed reports these members among `tested`: (count, FNV-1a of the
    // member indices as u32 LE). Covers jhash2 (value_size % 4 == 0, 1..6 words) and jhash
    // (1, 3, 5, 13 bytes), 1..15 hash functions, and bit arrays from 64 to 2048 bits.
    type Case = (
        usize,
        u32,
        u64,
        core::ops::Range<u64>,
        core::ops::Range<u64>,
        usize,
        u64,
    );
    let cases: &[Case] = &[
        (4, 1000, 1, 0..10, 10..4010, 20, 0xc0f93ef341bb256c),
        (4, 100, 0, 0..50, 1000..3000, 1, 0xdeb85c1b9d193a7f),
        (3, 1000, 1, 0..10, 10..4010, 12, 0xc390a2c75bcf7fd2),
        (13, 100, 3, 0..40, 1000..3000, 15, 0x5b0896f9c24f3075),
        (24, 64, 2, 0..30, 1000..3000, 92, 0xdb765ae8e482c19c),
        (1, 1, 1, 0..1, 1..256, 3, 0xbef5af6fb99135a5),
        (8, 1, 1, 0..1, 1..2001, 27, 0x5e3fd7360863876c),
        (4, 20, 0, 0..40, 1000..3000, 98, 0xa25bee2405eaa60f),
        (12, 10, 15, 0..10, 1000..3000, 0, 0xcbf29ce484222325),
        (16, 30, 7, 0..30, 1000..3000, 1, 0x0e4670e046c0d3fa),
        (5, 40, 2, 0..60, 1000..3000, 712, 0x3908d0f02fc2554b),
    ];
    let rt = rt();
    for (vs, n, k, pushed, tested, count, hash) in cases.iter().cloned() {
        let h = create(
            &rt,
            MapAttr::new(B, 0, vs as u32, n)
                .flags(BPF_F_ZERO_SEED)
                .extra(k),
        )
        .unwrap();
        for i in pushed.clone() {
            h.update_elem(None, &val(i, vs), BPF_ANY).unwrap();
        }
        let members: Vec<u32> = tested
            .filter(|&i| contains(&h, &val(i, vs)).is_ok())
            .map(|i| i as u32)
            .collect();
        assert_eq!(
            (members.len(), fnv1a(&members)),
            (count, hash),
            "vs={vs} n={n} k={k}: {members:?}"
        );
        for i in pushed {
            assert_eq!(contains(&h, &val(i, vs)), Ok(()), "no false negatives");
        }
    }
    // A few member lists in full, to read a failure by (kernel 6.18).
    let h = create(
        &rt,
        MapAttr::new(B, 0, 4, 1000).flags(BPF_F_ZERO_SEED).extra(1),
    )
    .unwrap();
    for i in 0..10 {
        h.update_elem(None, &val(i, 4), BPF_ANY).unwrap();
    }
    let members: Vec<u64> = (10..4010)
        .filter(|&i| contains(&h, &val(i, 4)).is_ok())
        .collect();
    assert_eq!(
        members,
        [
            69, 159, 281, 891, 895, 1039, 1067, 1563, 1611, 1703, 1729, 2564, 2871, 3159, 3206,
            3215, 3240, 3708, 3724, 3872
        ]
    );
    let h = create(
        &rt,
        MapAttr::new(B, 0, 1, 1).flags(BPF_F_ZERO_SEED).extra(1),
    )
    .unwrap();
    h.update_elem(None, &val(0, 1), BPF_ANY).unwrap();
    let members: Vec<u64> = (1..256)
        .filter(|&i| contains(&h, &val(i, 1)).is_ok())
        .collect();
    assert_eq!(members, [32, 106, 250]);
}

#[test]
fn random_seed_has_no_false_negatives() {
    let rt = rt();
    let h = create(&rt, MapAttr::new(B, 0, 6, 64)).unwrap();
    for i in 0..64 {
        h.update_elem(None, &val(i, 6), BPF_ANY).unwrap();
    }
    for i in 0..64 {
        assert_eq!(contains(&h, &val(i, 6)), Ok(()));
    }
}

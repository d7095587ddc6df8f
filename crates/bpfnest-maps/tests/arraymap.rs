// SPDX-License-Identifier: Apache-2.0 OR MIT
//! ARRAY, PERCPU_ARRAY and PROG_ARRAY through the public API: create-errno matrices, op-errno
//! matrices, value layouts, special fields, mmap, batches and program-array ownership.
//! Every expectation was checked against Linux 6.18.44 ("kernel 6.18:" notes).

use std::sync::Arc;

use bpfnest_maps::map::arraymap::prog_array_get;
use bpfnest_maps::registry::BtfKind;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{
    BatchArgs, BpfProg, BtfField, BtfFieldKind, BtfObject, BtfRecord, Caps, Config, Errno,
    InlineLookup, MapAttr, MapHandle, OpCtx, Runtime,
};

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 4,
        ..Config::default()
    })
}

/// A creator with CAP_BPF only: no Spectre-v1 bypass, so arrays are rounded to a power of two.
fn rt_nobypass() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 4,
        caps: Caps {
            bpf: true,
            ..Caps::NONE
        },
        ..Config::default()
    })
}

fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

const PROG: OpCtx<'static> = OpCtx {
    cpu: 0,
    files: None,
};

fn create_err(rt: &Runtime, a: MapAttr) -> Errno {
    rt.map_create(&a).map(|_| ()).unwrap_err()
}

fn create_res(rt: &Runtime, a: MapAttr) -> Result<(), Errno> {
    rt.map_create(&a).map(|_| ())
}

// ---------------------------------------------------------------------------------------------
// Create matrices
// ---------------------------------------------------------------------------------------------

#[test]
fn array_create_errno_matrix() {
    let rt = rt();
    let a = |v, n| MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, v, n);
    // kernel 6.18: max_entries 0, key 0 or 8, value 0: EINVAL; value 8 with any key 4: fine.
    assert_eq!(create_res(&rt, a(8, 4)), Ok(()));
    assert_eq!(create_err(&rt, a(8, 0)), Errno::EINVAL);
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_ARRAY, 0, 8, 4)),
        Errno::EINVAL
    );
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_ARRAY, 8, 8, 4)),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, a(0, 4)), Errno::EINVAL);
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_ARRAY, 8, 0, 4)),
        Errno::EINVAL
    );
    // kernel 6.18: flag bits 2 (NUMA), 3/4 (RDONLY/WRONLY), 7/8 (RDONLY_PROG/WRONLY_PROG),
    // 10 (MMAPABLE), 12 (INNER_MAP) are accepted; bits 0,1,5,6,9,11,13..18 give EINVAL.
    for bit in 0..19 {
        let ok = matches!(bit, 2 | 3 | 4 | 7 | 8 | 10 | 12);
        let r = create_res(&rt, a(8, 4).flags(1 << bit));
        assert_eq!(r.is_ok(), ok, "ARRAY flag bit {bit}: {r:?}");
        if !ok {
            assert_eq!(r, Err(Errno::EINVAL), "ARRAY flag bit {bit}");
        }
    }
    // kernel 6.18: RDONLY_PROG together with WRONLY_PROG: EINVAL.
    assert_eq!(
        create_err(&rt, a(8, 4).flags(BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)),
        Errno::EINVAL
    );
    // kernel 6.18: NUMA node 0 and NUMA_NO_NODE are fine with BPF_F_NUMA_NODE.
    let mut numa = a(8, 4).flags(BPF_F_NUMA_NODE);
    assert_eq!(create_res(&rt, numa), Ok(()));
    numa.numa_node = NUMA_NO_NODE;
    assert_eq!(create_res(&rt, numa), Ok(()));
    // kernel 6.18: value_size 4 MiB + 8 is accepted (the limit is INT_MAX, not KMALLOC_MAX_SIZE);
    // INT_MAX + 1 and U32_MAX give E2BIG.
    assert_eq!(create_res(&rt, a((1 << 22) + 8, 1)), Ok(()));
    assert_eq!(create_err(&rt, a(0x8000_0000, 1)), Errno::E2BIG);
    assert_eq!(create_err(&rt, a(u32::MAX, 1)), Errno::E2BIG);
    // kernel 6.18: a bad flag is reported before the size limit, and PRESERVE_ELEMS is EINVAL.
    assert_eq!(
        create_err(&rt, a(0x8000_0000, 1).flags(BPF_F_NO_PREALLOC)),
        Errno::EINVAL
    );
    assert_eq!(
        create_err(&rt, a(8, 4).flags(BPF_F_PRESERVE_ELEMS)),
        Errno::EINVAL
    );
    // kernel 6.18: an allocation larger than RAM gives ENOMEM (32 GiB on a 23 GiB machine);
    // this one is ~2^62 bytes, larger than any machine.
    assert_eq!(create_err(&rt, a(0x7fff_fff8, u32::MAX)), Errno::ENOMEM);
    // kernel 6.18: an inner_map_fd on a non-outer type is ignored (spec row 21).
    assert_eq!(create_res(&rt, a(8, 4).inner_map(12345)), Ok(()));
}

#[test]
fn array_family_rounding_overflow_without_bypass() {
    let rt = rt_nobypass();
    // kernel 6.18 (CAP_BPF without CAP_PERFMON/CAP_SYS_ADMIN): 2^31 + 1 entries cannot be
    // rounded to a power of two in u32: E2BIG, for every member of the family.
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 0x8000_0001)),
        Errno::E2BIG
    );
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, u32::MAX)),
        Errno::E2BIG
    );
    assert_eq!(
        create_err(
            &rt,
            MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 0x8000_0001)
        ),
        Errno::E2BIG
    );
    assert_eq!(
        create_err(
            &rt,
            MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 0x8000_0001)
        ),
        Errno::E2BIG
    );
    // kernel 6.18: mem_usage counts max_entries, not the rounded allocation (memlock 352).
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 5))
        .unwrap();
    assert_eq!(h.map().mem_usage(), 352);
    // The inlined lookup masks with next_pow2 - 1.
    match h.map().ops().gen_lookup(h.map()) {
        Some(InlineLookup::Array {
            elem_size,
            max_entries,
            index_mask,
            ..
        }) => {
            assert_eq!((elem_size, max_entries, index_mask), (8, 5, 7));
        }
        other => panic!("unexpected inline lookup {other:?}"),
    }
}

#[test]
fn percpu_array_create_errno_matrix() {
    let rt = rt();
    let a = |v, n| MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, v, n);
    assert_eq!(create_res(&rt, a(8, 4)), Ok(()));
    assert_eq!(create_err(&rt, a(8, 0)), Errno::EINVAL);
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 8, 8, 4)),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, a(0, 4)), Errno::EINVAL);
    // kernel 6.18: only bits 3/4 and 7/8 are accepted; NUMA_NODE with node 0 is EINVAL
    // (per-CPU memory has no node), MMAPABLE and INNER_MAP (spec row 23) are EINVAL.
    for bit in 0..19 {
        let ok = matches!(bit, 3 | 4 | 7 | 8);
        let r = create_res(&rt, a(8, 4).flags(1 << bit));
        assert_eq!(r.is_ok(), ok, "PERCPU_ARRAY flag bit {bit}: {r:?}");
        if !ok {
            assert_eq!(r, Err(Errno::EINVAL), "PERCPU_ARRAY flag bit {bit}");
        }
    }
    // kernel 6.18: NUMA_NODE with NUMA_NO_NODE is fine.
    let mut numa = a(8, 4).flags(BPF_F_NUMA_NODE);
    numa.numa_node = NUMA_NO_NODE;
    assert_eq!(create_res(&rt, numa), Ok(()));
    // kernel 6.18: a per-CPU value is bounded by PCPU_MIN_UNIT_SIZE (32 KiB): 32768 and 32761
    // (rounds to 32768) are fine, 32769 / 4 MiB / 2^31 give E2BIG.
    assert_eq!(create_res(&rt, a(32768, 1)), Ok(()));
    assert_eq!(create_res(&rt, a(32761, 1)), Ok(()));
    assert_eq!(create_err(&rt, a(32769, 1)), Errno::E2BIG);
    assert_eq!(create_err(&rt, a(1 << 22, 1)), Errno::E2BIG);
    assert_eq!(create_err(&rt, a(0x8000_0000, 1)), Errno::E2BIG);
    // kernel 6.18: NUMA node 0 wins over the size (EINVAL before E2BIG).
    assert_eq!(
        create_err(&rt, a(1 << 16, 4).flags(BPF_F_NUMA_NODE)),
        Errno::EINVAL
    );
    // kernel 6.18: 2^32 - 1 entries of 8 bytes already give ENOMEM; 32 KiB values are too big
    // for any machine.
    assert_eq!(create_err(&rt, a(32768, u32::MAX)), Errno::ENOMEM);
}

#[test]
fn prog_array_create_errno_matrix() {
    let rt = rt();
    let a = |v, n| MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, v, n);
    assert_eq!(create_res(&rt, a(4, 4)), Ok(()));
    // kernel 6.18: value 8 or 0, key 0/8, zero entries: EINVAL.
    assert_eq!(create_err(&rt, a(8, 4)), Errno::EINVAL);
    assert_eq!(create_err(&rt, a(0, 4)), Errno::EINVAL);
    assert_eq!(
        create_err(&rt, MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 8, 4, 4)),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, a(4, 0)), Errno::EINVAL);
    // kernel 6.18: value 8 with zero entries: the value check comes first (EINVAL either way).
    assert_eq!(create_err(&rt, a(8, 0)), Errno::EINVAL);
    // kernel 6.18: only bits 2 (NUMA), 3/4 are accepted; RDONLY_PROG/WRONLY_PROG, MMAPABLE,
    // PRESERVE_ELEMS (a PERF_EVENT_ARRAY flag) and INNER_MAP give EINVAL.
    for bit in 0..19 {
        let ok = matches!(bit, 2..=4);
        let r = create_res(&rt, a(4, 4).flags(1 << bit));
        assert_eq!(r.is_ok(), ok, "PROG_ARRAY flag bit {bit}: {r:?}");
        if !ok {
            assert_eq!(r, Err(Errno::EINVAL), "PROG_ARRAY flag bit {bit}");
        }
    }
    // kernel 6.18: memlock of a 4-slot program array is 344.
    let h = rt.map_create(&a(4, 4)).unwrap();
    assert_eq!(h.map().mem_usage(), 344);
}

// ---------------------------------------------------------------------------------------------
// ARRAY operations
// ---------------------------------------------------------------------------------------------

#[test]
fn array_op_errno_matrix() {
    let rt = rt();
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    let v = |b: u8| [b; 8];
    // kernel 6.18: ANY and EXIST succeed, NOEXIST gives EEXIST (every element exists).
    assert_eq!(h.update_elem(Some(&k(1)), &v(1), BPF_ANY), Ok(()));
    assert_eq!(h.update_elem(Some(&k(1)), &v(2), BPF_EXIST), Ok(()));
    assert_eq!(
        h.update_elem(Some(&k(1)), &v(3), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    // kernel 6.18: flags 3, 8, 1<<32: EINVAL; BPF_F_LOCK without a spin lock: EINVAL.
    assert_eq!(h.update_elem(Some(&k(1)), &v(3), 3), Err(Errno::EINVAL));
    assert_eq!(h.update_elem(Some(&k(1)), &v(3), 8), Err(Errno::EINVAL));
    assert_eq!(
        h.update_elem(Some(&k(1)), &v(3), 1 << 32),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &v(3), BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &v(3), BPF_F_LOCK | BPF_EXIST),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: out of range: E2BIG, also with NOEXIST (index first); flags 3 win (EINVAL).
    assert_eq!(
        h.update_elem(Some(&k(4)), &v(3), BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(
        h.update_elem(Some(&k(4)), &v(3), BPF_NOEXIST),
        Err(Errno::E2BIG)
    );
    assert_eq!(h.update_elem(Some(&k(4)), &v(3), 3), Err(Errno::EINVAL));
    let mut out = [0u8; 8];
    assert_eq!(h.lookup_elem(Some(&k(1)), &mut out, 0), Ok(()));
    assert_eq!(out, v(2));
    // kernel 6.18: lookup out of range ENOENT; flags 2 and BPF_F_LOCK (no lock) EINVAL.
    assert_eq!(h.lookup_elem(Some(&k(4)), &mut out, 0), Err(Errno::ENOENT));
    assert_eq!(h.lookup_elem(Some(&k(1)), &mut out, 2), Err(Errno::EINVAL));
    assert_eq!(
        h.lookup_elem(Some(&k(1)), &mut out, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: delete is EINVAL, in range or not.
    assert_eq!(h.delete_elem(Some(&k(1))), Err(Errno::EINVAL));
    assert_eq!(h.delete_elem(Some(&k(9))), Err(Errno::EINVAL));
    // kernel 6.18: next key: NULL -> 0, 0 -> 1, last -> ENOENT, 4 and U32_MAX -> 0.
    let mut nk = [0xffu8; 4];
    assert_eq!(h.get_next_key(None, &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    assert_eq!(h.get_next_key(Some(&k(0)), &mut nk), Ok(()));
    assert_eq!(nk, k(1));
    assert_eq!(h.get_next_key(Some(&k(3)), &mut nk), Err(Errno::ENOENT));
    nk = [0xff; 4];
    assert_eq!(h.get_next_key(Some(&k(4)), &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    nk = [0xff; 4];
    assert_eq!(h.get_next_key(Some(&k(u32::MAX)), &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    // kernel 6.18: lookup-and-delete ENOTSUPP; with BPF_F_LOCK or flags 2: EINVAL first.
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k(1)), &mut out, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k(1)), &mut out, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k(1)), &mut out, 2),
        Err(Errno::EINVAL)
    );
    // Program side: same checks, pointer lookup, no per-CPU lookup.
    let m = h.map();
    assert!(m.ops().lookup_elem(m, &PROG, &k(3)).is_some());
    assert!(m.ops().lookup_elem(m, &PROG, &k(4)).is_none());
    assert!(m.ops().lookup_percpu_elem(m, &k(0), 0).is_none());
    assert_eq!(
        m.ops().update_elem(m, &PROG, &k(0), &v(7), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(m.ops().delete_elem(m, &PROG, &k(0)), Err(Errno::EINVAL));
    assert_eq!(m.ops().update_elem(m, &PROG, &k(0), &v(7), BPF_ANY), Ok(()));
    assert_eq!(h.lookup_elem(Some(&k(0)), &mut out, 0), Ok(()));
    assert_eq!(out, v(7));
    // kernel 6.18: memlock 344 for 4 x 8 bytes.
    assert_eq!(m.mem_usage(), 344);
}

#[test]
fn array_values_are_shared_with_programs() {
    let rt = rt();
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 12, 3))
        .unwrap();
    let m = h.map();
    h.update_elem(Some(&k(2)), &[0xab; 12], BPF_ANY).unwrap();
    let p = m.ops().lookup_elem(m, &PROG, &k(2)).unwrap();
    assert_eq!(p.as_ptr() as usize % 8, 0);
    let mut seen = [0u8; 12];
    // SAFETY: the pointer is a 12-byte value of a live map; nothing writes concurrently.
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), seen.as_mut_ptr(), 12) };
    assert_eq!(seen, [0xab; 12]);
    // Values are 8-byte strided (round_up(12, 8) = 16).
    let p1 = m.ops().lookup_elem(m, &PROG, &k(1)).unwrap();
    assert_eq!(p.as_ptr() as usize - p1.as_ptr() as usize, 16);
    // kernel 6.18: memlock 312 + 3 * 16.
    assert_eq!(m.mem_usage(), 312 + 48);
    // for_each visits every index in order and stops when asked to.
    let mut keys = Vec::new();
    let n = m
        .ops()
        .for_each_callback(m, &PROG, &mut |key, _| {
            keys.push(u32::from_ne_bytes(key.try_into().unwrap()));
            keys.len() == 2
        })
        .unwrap();
    assert_eq!((n, keys), (2, vec![0, 1]));
    let n = m
        .ops()
        .for_each_callback(m, &PROG, &mut |_, _| false)
        .unwrap();
    assert_eq!(n, 3);
    // Inline lookup: base is value 0, all-ones mask with the bypass.
    match m.ops().gen_lookup(m) {
        Some(InlineLookup::Array {
            base,
            elem_size,
            max_entries,
            index_mask,
        }) => {
            assert_eq!(base, m.ops().lookup_elem(m, &PROG, &k(0)).unwrap());
            assert_eq!((elem_size, max_entries, index_mask), (16, 3, u32::MAX));
        }
        other => panic!("unexpected inline lookup {other:?}"),
    }
    // No push/pop/peek on arrays.
    let mut buf = [0u8; 12];
    assert_eq!(m.ops().push_elem(m, &buf, 0), Err(Errno::ENOTSUPP));
    assert_eq!(m.ops().pop_elem(m, &mut buf), Err(Errno::ENOTSUPP));
    assert_eq!(m.ops().peek_elem(m, &mut buf), Err(Errno::ENOTSUPP));
}

#[test]
fn inner_map_flag_disables_inline_lookup() {
    let rt = rt();
    // kernel 6.18: ARRAY with BPF_F_INNER_MAP is accepted (spec row 22); array_map_gen_lookup
    // declines for it (spec row 91: the xlated code calls array_map_lookup_elem).
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_INNER_MAP))
        .unwrap();
    assert!(h.map().ops().gen_lookup(h.map()).is_none());
    assert_eq!(h.info().map_flags, BPF_F_INNER_MAP);
}

fn batch<'a>(
    keys: &'a mut [u8],
    values: &'a mut [u8],
    out: &'a mut [u8],
    count: u32,
) -> BatchArgs<'a> {
    BatchArgs {
        in_batch: None,
        out_batch: out,
        keys,
        values,
        count,
        elem_flags: 0,
        flags: 0,
    }
}

#[test]
fn array_batches() {
    let rt = rt();
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    for i in 0..4u32 {
        h.update_elem(Some(&k(i)), &(i as u64 * 10).to_ne_bytes(), BPF_ANY)
            .unwrap();
    }
    let (mut keys, mut vals, mut out) = ([0u8; 40], [0u8; 80], [0u8; 4]);
    // kernel 6.18: count 2 -> keys 0,1 and out_batch 1; resume -> 2,3 and 0; resume -> ENOENT, 0.
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!(a.count, 2);
    assert_eq!(out, k(1));
    assert_eq!(&keys[..8], &[k(0), k(1)].concat()[..]);
    assert_eq!(&vals[8..16], &10u64.to_ne_bytes());
    let resume = out;
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    a.in_batch = Some(&resume);
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!(a.count, 2);
    assert_eq!(out, k(3));
    let resume = out;
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    a.in_batch = Some(&resume);
    assert_eq!(h.lookup_batch(&mut a), Err(Errno::ENOENT));
    assert_eq!(a.count, 0);
    // kernel 6.18: count 10 on 4 entries: ENOENT with count 4.
    let mut a = batch(&mut keys, &mut vals, &mut out, 10);
    assert_eq!(h.lookup_batch(&mut a), Err(Errno::ENOENT));
    assert_eq!(a.count, 4);
    // kernel 6.18: batch.flags is ignored by generic_map_lookup_batch (flags = 1: fine).
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    a.flags = 1;
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!(a.count, 2);
    // kernel 6.18: elem_flags 1 or BPF_F_LOCK (no lock): EINVAL.
    for ef in [1, BPF_F_LOCK] {
        let mut a = batch(&mut keys, &mut vals, &mut out, 2);
        a.elem_flags = ef;
        assert_eq!(h.lookup_batch(&mut a), Err(Errno::EINVAL));
    }
    // kernel 6.18: count 0 returns 0 at once.
    let mut a = batch(&mut keys, &mut vals, &mut out, 0);
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!(a.count, 0);
    // kernel 6.18: in_batch = last index -> ENOENT, 0; in_batch out of range restarts at 0.
    let last = k(3);
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    a.in_batch = Some(&last);
    assert_eq!(h.lookup_batch(&mut a), Err(Errno::ENOENT));
    assert_eq!(a.count, 0);
    let oob = k(9);
    let mut a = batch(&mut keys, &mut vals, &mut out, 2);
    a.in_batch = Some(&oob);
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!((a.count, &keys[..4]), (2, &k(0)[..]));
    // kernel 6.18: update batch stops at the out-of-range key with E2BIG and count 1.
    let mut ukeys = [k(0), k(9)].concat();
    let mut uvals = [5u8; 16];
    let mut a = batch(&mut ukeys, &mut uvals, &mut out, 2);
    assert_eq!(h.update_batch(&mut a), Err(Errno::E2BIG));
    assert_eq!(a.count, 1);
    // kernel 6.18: update batch elem_flags NOEXIST / EXIST: EINVAL; batch.flags 1: fine.
    let mut ukeys = [k(0), k(1)].concat();
    for ef in [BPF_NOEXIST, BPF_EXIST] {
        let mut a = batch(&mut ukeys, &mut uvals, &mut out, 2);
        a.elem_flags = ef;
        assert_eq!(h.update_batch(&mut a), Err(Errno::EINVAL));
    }
    let mut a = batch(&mut ukeys, &mut uvals, &mut out, 2);
    a.flags = 1;
    assert_eq!(h.update_batch(&mut a), Ok(()));
    assert_eq!(a.count, 2);
    // kernel 6.18: delete and lookup-and-delete batches: ENOTSUPP.
    let mut a = batch(&mut ukeys, &mut uvals, &mut out, 1);
    assert_eq!(h.delete_batch(&mut a), Err(Errno::ENOTSUPP));
    let mut a = batch(&mut keys, &mut vals, &mut out, 1);
    assert_eq!(h.lookup_and_delete_batch(&mut a), Err(Errno::ENOTSUPP));
}

#[test]
fn array_mmap() {
    let rt = rt();
    // kernel 6.18: mmap of a non-mmapable array: EINVAL.
    let plain = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    assert_eq!(
        plain.map().ops().mmap(plain.map()).unwrap_err(),
        Errno::EINVAL
    );
    // kernel 6.18: a 4 x 8 mmapable array maps 4096 bytes (8192 is refused); what the syscall
    // wrote at index 1 is at offset 8 of the mapping.
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE))
        .unwrap();
    let (start, len) = h.map().ops().mmap(h.map()).unwrap();
    assert_eq!(len, 4096);
    assert_eq!(start.as_ptr() as usize % 4096, 0);
    h.update_elem(
        Some(&k(1)),
        &0x1122_3344_5566_7788u64.to_ne_bytes(),
        BPF_ANY,
    )
    .unwrap();
    let mut seen = [0u8; 8];
    // SAFETY: offset 8..16 lies in the 4096-byte mapping of a live map; no concurrent writer.
    unsafe { core::ptr::copy_nonoverlapping(start.as_ptr().add(8), seen.as_mut_ptr(), 8) };
    assert_eq!(u64::from_ne_bytes(seen), 0x1122_3344_5566_7788);
    // kernel 6.18: memlock PAGE_ALIGN(312) + PAGE_ALIGN(32) = 8192.
    assert_eq!(h.map().mem_usage(), 8192);
    // kernel 6.18: 5 x 1000 bytes maps 8192 bytes.
    let h5 = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 1000, 5).flags(BPF_F_MMAPABLE))
        .unwrap();
    assert_eq!(h5.map().ops().mmap(h5.map()).unwrap().1, 8192);
    // kernel 6.18: an mmapable array can be frozen; RDONLY_PROG combines with MMAPABLE.
    assert_eq!(h.freeze(), Ok(()));
    assert!(rt
        .map_create(
            &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE | BPF_F_RDONLY_PROG)
        )
        .is_ok());
    // kernel 6.18: an mmapable array with a spin lock is created, but mmap gives ENOTSUPP.
    let rec = BtfRecord::new(
        vec![BtfField {
            offset: 4,
            kind: BtfFieldKind::SpinLock,
        }],
        8,
    )
    .unwrap();
    let locked = rt
        .map_create_with_record(
            &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE),
            rec,
        )
        .unwrap();
    assert_eq!(
        locked.map().ops().mmap(locked.map()).unwrap_err(),
        Errno::ENOTSUPP
    );
}

#[test]
fn array_spin_lock_values() {
    let rt = rt();
    let rec = BtfRecord::new(
        vec![BtfField {
            offset: 4,
            kind: BtfFieldKind::SpinLock,
        }],
        8,
    )
    .unwrap();
    let h = rt
        .map_create_with_record(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4), rec)
        .unwrap();
    let val = |a: u32, b: u32| [a.to_ne_bytes(), b.to_ne_bytes()].concat();
    // kernel 6.18: F_LOCK works; F_LOCK|NOEXIST EEXIST; F_LOCK|EXIST fine; F_LOCK|3 EINVAL;
    // F_LOCK out of range E2BIG.
    assert_eq!(
        h.update_elem(Some(&k(1)), &val(7, u32::MAX), BPF_F_LOCK),
        Ok(())
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &val(0, 0), BPF_F_LOCK | BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &val(8, 5), BPF_F_LOCK | BPF_EXIST),
        Ok(())
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &val(0, 0), BPF_F_LOCK | 3),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.update_elem(Some(&k(9)), &val(0, 0), BPF_F_LOCK),
        Err(Errno::E2BIG)
    );
    // kernel 6.18: the lock word reads back as zero, with and without BPF_F_LOCK.
    let mut out = [0xffu8; 8];
    assert_eq!(h.lookup_elem(Some(&k(1)), &mut out, BPF_F_LOCK), Ok(()));
    assert_eq!(out.to_vec(), val(8, 0));
    out = [0xff; 8];
    assert_eq!(h.lookup_elem(Some(&k(1)), &mut out, 0), Ok(()));
    assert_eq!(out.to_vec(), val(8, 0));
    // The lock is free after every locked operation (a program could take it).
    let p = h.map().ops().lookup_elem(h.map(), &PROG, &k(1)).unwrap();
    let mut word = [0u8; 4];
    // SAFETY: the lock word lies inside a live value; no concurrent writer.
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr().add(4), word.as_mut_ptr(), 4) };
    assert_eq!(word, [0; 4]);
    // kernel 6.18: a map with a spin lock cannot be frozen (ENOTSUPP).
    assert_eq!(h.freeze(), Err(Errno::ENOTSUPP));
    // kernel 6.18: a per-CPU array cannot hold a spin lock: EOPNOTSUPP (95).
    let rec = BtfRecord::new(
        vec![BtfField {
            offset: 4,
            kind: BtfFieldKind::SpinLock,
        }],
        8,
    )
    .unwrap();
    assert_eq!(
        rt.map_create_with_record(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4), rec)
            .map(|_| ()),
        Err(Errno::EOPNOTSUPP)
    );
}

/// Reads `n` bytes at `off` of the program-visible value of `key`.
fn peek(h: &MapHandle, key: u32, off: usize, n: usize) -> Vec<u8> {
    let p = h.map().ops().lookup_elem(h.map(), &PROG, &k(key)).unwrap();
    let mut v = vec![0u8; n];
    // SAFETY: the range lies inside a live value; no concurrent writer in this test.
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr().add(off), v.as_mut_ptr(), n) };
    v
}

/// Writes like a program would (e.g. `bpf_timer_init` arming the timer field).
fn poke(h: &MapHandle, key: u32, off: usize, bytes: &[u8]) {
    let p = h.map().ops().lookup_elem(h.map(), &PROG, &k(key)).unwrap();
    // SAFETY: the range lies inside a live value; no concurrent access in this test.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr().add(off), bytes.len()) };
}

#[test]
fn timers_are_cancelled_on_update_and_on_last_user_reference() {
    let rt = rt();
    // value: { u64 data; struct bpf_timer t; }
    let rec = BtfRecord::new(
        vec![BtfField {
            offset: 8,
            kind: BtfFieldKind::Timer,
        }],
        24,
    )
    .unwrap();
    let h = rt
        .map_create_with_record(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 24, 2), rec)
        .unwrap();
    // User space never writes the timer field, and reads it as zero.
    poke(&h, 0, 8, &[0xaa; 16]);
    let mut out = [0xffu8; 24];
    h.lookup_elem(Some(&k(0)), &mut out, 0).unwrap();
    assert_eq!(&out[8..], &[0; 16]);
    // An update releases the value's owning fields (bpf_obj_free_fields): the timer is reset.
    h.update_elem(Some(&k(0)), &[1; 24], BPF_ANY).unwrap();
    assert_eq!(peek(&h, 0, 0, 8), vec![1; 8]);
    assert_eq!(peek(&h, 0, 8, 16), vec![0; 16]);
    // Dropping the last user reference cancels timers (array_map_free_internal_structs),
    // other bytes stay.
    poke(&h, 1, 8, &[0xbb; 16]);
    poke(&h, 1, 0, &[2; 8]);
    let keep = h.map().map_ref().clone();
    drop(h);
    assert_eq!(keep.usercnt(), 0);
    let p = keep.ops().lookup_elem(&keep, &PROG, &k(1)).unwrap();
    let mut v = [0u8; 24];
    // SAFETY: `keep` holds the map; no concurrent access.
    unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), v.as_mut_ptr(), 24) };
    assert_eq!(&v[..8], &[2; 8]);
    assert_eq!(&v[8..], &[0; 16]);
}

// ---------------------------------------------------------------------------------------------
// BTF
// ---------------------------------------------------------------------------------------------

/// type 1: int (4, i32); 2: struct (8); 3: DATASEC (8); 4: enum (4, not an i32).
#[derive(Debug)]
struct FakeBtf;

impl BtfObject for FakeBtf {
    fn id(&self) -> u32 {
        11
    }
    fn type_size(&self, type_id: u32) -> Option<u32> {
        match type_id {
            1 | 4 => Some(4),
            2 | 3 => Some(8),
            _ => None,
        }
    }
    fn type_kind(&self, type_id: u32) -> BtfKind {
        match type_id {
            0 => BtfKind::Void,
            1 => BtfKind::Int32,
            2 => BtfKind::Struct,
            3 => BtfKind::Datasec,
            _ => BtfKind::Other,
        }
    }
    fn value_record(&self, _type_id: u32, _value_size: u32) -> Result<Option<BtfRecord>, Errno> {
        Ok(None)
    }
}

#[test]
fn array_check_btf() {
    let rt = rt();
    let btf = rt.install_btf(Arc::new(FakeBtf));
    let with = |t, v, n, key, val| {
        let mut a = MapAttr::new(t, 4, v, n);
        a.btf_fd = btf.raw();
        a.btf_key_type_id = key;
        a.btf_value_type_id = val;
        rt.map_create(&a).map(|_| ())
    };
    // kernel 6.18: int key with a struct value: fine (ARRAY and PERCPU_ARRAY).
    assert_eq!(with(BPF_MAP_TYPE_ARRAY, 8, 4, 1, 2), Ok(()));
    assert_eq!(with(BPF_MAP_TYPE_PERCPU_ARRAY, 8, 4, 1, 2), Ok(()));
    // kernel 6.18: a key-less description with a struct value: EINVAL.
    assert_eq!(with(BPF_MAP_TYPE_ARRAY, 8, 1, 0, 2), Err(Errno::EINVAL));
    // kernel 6.18: key-less only for a one-entry ARRAY of a DATASEC (.data/.bss): a
    // two-entry ARRAY or a one-entry PERCPU_ARRAY with a DATASEC value gives EINVAL.
    assert_eq!(with(BPF_MAP_TYPE_ARRAY, 8, 1, 0, 3), Ok(()));
    assert_eq!(with(BPF_MAP_TYPE_ARRAY, 8, 2, 0, 3), Err(Errno::EINVAL));
    assert_eq!(
        with(BPF_MAP_TYPE_PERCPU_ARRAY, 8, 1, 0, 3),
        Err(Errno::EINVAL)
    );
    // A 4-byte key that is not a 32-bit int: EINVAL.
    assert_eq!(with(BPF_MAP_TYPE_ARRAY, 8, 4, 4, 2), Err(Errno::EINVAL));
    // kernel 6.18: PROG_ARRAY has no map_check_btf: int key and value fine, no key EINVAL.
    assert_eq!(with(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 1, 1), Ok(()));
    assert_eq!(
        with(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 0, 1),
        Err(Errno::EINVAL)
    );
}

// ---------------------------------------------------------------------------------------------
// PERCPU_ARRAY
// ---------------------------------------------------------------------------------------------

#[test]
fn percpu_array_layout_and_errnos() {
    let rt = rt();
    assert_eq!(rt.nr_cpus(), 4);
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 4))
        .unwrap();
    // The syscall value: 4 CPUs x round_up(4, 8).
    let mut sys = Vec::new();
    for cpu in 0..4u8 {
        sys.extend_from_slice(&[cpu + 1; 8]);
    }
    assert_eq!(h.update_elem(Some(&k(2)), &sys, BPF_ANY), Ok(()));
    let mut out = vec![0u8; 32];
    assert_eq!(h.lookup_elem(Some(&k(2)), &mut out, 0), Ok(()));
    // kernel 6.18: the 4 rounding bytes are stored and returned as user space wrote them.
    assert_eq!(out, sys);
    // Program side: each CPU sees its own slot.
    let m = h.map();
    for cpu in 0..4u32 {
        let ctx = OpCtx { cpu, files: None };
        let p = m.ops().lookup_elem(m, &ctx, &k(2)).unwrap();
        assert_eq!(Some(p), m.ops().lookup_percpu_elem(m, &k(2), cpu));
        let mut v = [0u8; 4];
        // SAFETY: a live 4-byte value; no concurrent writer.
        unsafe { core::ptr::copy_nonoverlapping(p.as_ptr(), v.as_mut_ptr(), 4) };
        assert_eq!(v, [cpu as u8 + 1; 4]);
    }
    // lookup_percpu_elem: CPU beyond nr_cpus or index out of range: None.
    assert!(m.ops().lookup_percpu_elem(m, &k(2), 4).is_none());
    assert!(m.ops().lookup_percpu_elem(m, &k(4), 0).is_none());
    assert!(m.ops().lookup_elem(m, &PROG, &k(4)).is_none());
    // A program update touches only its CPU.
    let ctx3 = OpCtx {
        cpu: 3,
        files: None,
    };
    assert_eq!(
        m.ops().update_elem(m, &ctx3, &k(2), &[9; 4], BPF_ANY),
        Ok(())
    );
    assert_eq!(
        m.ops().update_elem(m, &ctx3, &k(2), &[9; 4], BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        m.ops().update_elem(m, &ctx3, &k(2), &[9; 4], BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        m.ops().update_elem(m, &ctx3, &k(4), &[9; 4], BPF_ANY),
        Err(Errno::E2BIG)
    );
    h.lookup_elem(Some(&k(2)), &mut out, 0).unwrap();
    assert_eq!(&out[..24], &sys[..24]);
    assert_eq!(&out[24..28], &[9; 4]);
    // for_each walks the running CPU's values.
    let mut firsts = Vec::new();
    let n = m
        .ops()
        .for_each_callback(m, &ctx3, &mut |_, p| {
            // SAFETY: a live value; no concurrent writer.
            firsts.push(unsafe { *p.as_ptr() });
            false
        })
        .unwrap();
    assert_eq!((n, firsts), (4, vec![0, 0, 9, 0]));
    // kernel 6.18: same errno matrix as ARRAY on the syscall side.
    assert_eq!(h.update_elem(Some(&k(1)), &sys, BPF_EXIST), Ok(()));
    assert_eq!(
        h.update_elem(Some(&k(1)), &sys, BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(h.update_elem(Some(&k(1)), &sys, 3), Err(Errno::EINVAL));
    assert_eq!(h.update_elem(Some(&k(1)), &sys, 8), Err(Errno::EINVAL));
    assert_eq!(
        h.update_elem(Some(&k(1)), &sys, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.update_elem(Some(&k(1)), &sys, 1 << 32),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.update_elem(Some(&k(4)), &sys, BPF_ANY), Err(Errno::E2BIG));
    assert_eq!(
        h.update_elem(Some(&k(4)), &sys, BPF_NOEXIST),
        Err(Errno::E2BIG)
    );
    assert_eq!(h.update_elem(Some(&k(4)), &sys, 3), Err(Errno::EINVAL));
    assert_eq!(h.lookup_elem(Some(&k(4)), &mut out, 0), Err(Errno::ENOENT));
    assert_eq!(h.lookup_elem(Some(&k(1)), &mut out, 2), Err(Errno::EINVAL));
    assert_eq!(
        h.lookup_elem(Some(&k(1)), &mut out, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.delete_elem(Some(&k(1))), Err(Errno::EINVAL));
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k(1)), &mut out, 0),
        Err(Errno::ENOTSUPP)
    );
    let mut nk = [0u8; 4];
    assert_eq!(h.get_next_key(Some(&k(3)), &mut nk), Err(Errno::ENOENT));
    assert_eq!(h.get_next_key(Some(&k(1)), &mut nk), Ok(()));
    assert_eq!(nk, k(2));
    // kernel 6.18: mmap ENOTSUPP (no map_mmap); no inline lookup here.
    assert_eq!(m.ops().mmap(m).unwrap_err(), Errno::ENOTSUPP);
    assert!(m.ops().gen_lookup(m).is_none());
    // kernel 6.18 (2 CPUs): memlock 408 = 312 + 4*8 + 4*8*2; here 4 CPUs.
    assert_eq!(m.mem_usage(), 312 + 32 + 4 * 8 * 4);
}

#[test]
fn percpu_array_batches_use_the_syscall_layout() {
    let rt = rt();
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 3))
        .unwrap();
    let vs = 8 * 4;
    let mut ukeys = [k(0), k(2)].concat();
    let mut uvals: Vec<u8> = (0..2 * vs as u8).collect();
    let mut out = [0u8; 4];
    let mut a = batch(&mut ukeys, &mut uvals, &mut out, 2);
    assert_eq!(h.update_batch(&mut a), Ok(()));
    let (mut keys, mut vals) = (vec![0u8; 12], vec![0u8; 3 * vs]);
    let mut a = batch(&mut keys, &mut vals, &mut out, 3);
    // kernel 6.18: a batch that fills `count` exactly returns 0 (the walk stops before asking
    // for the next key).
    assert_eq!(h.lookup_batch(&mut a), Ok(()));
    assert_eq!(a.count, 3);
    assert_eq!(&vals[..vs], &(0..vs as u8).collect::<Vec<_>>()[..]);
    assert_eq!(&vals[vs..2 * vs], &[0u8; 32][..]);
    assert_eq!(
        &vals[2 * vs..],
        &(vs as u8..2 * vs as u8).collect::<Vec<_>>()[..]
    );
    // kernel 6.18: delete and lookup-and-delete batches: ENOTSUPP.
    let mut a = batch(&mut keys, &mut vals, &mut out, 1);
    assert_eq!(h.delete_batch(&mut a), Err(Errno::ENOTSUPP));
    let mut a = batch(&mut keys, &mut vals, &mut out, 1);
    assert_eq!(h.lookup_and_delete_batch(&mut a), Err(Errno::ENOTSUPP));
}

// ---------------------------------------------------------------------------------------------
// PROG_ARRAY
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct FakeProg {
    prog_type: u32,
    id: u32,
    jited: bool,
    frags: bool,
}

impl BpfProg for FakeProg {
    fn prog_type(&self) -> u32 {
        self.prog_type
    }
    fn id(&self) -> u32 {
        self.id
    }
    fn jited(&self) -> bool {
        self.jited
    }
    fn xdp_has_frags(&self) -> bool {
        self.frags
    }
}

const SOCKET_FILTER: u32 = 1;
const KPROBE: u32 = 2;
const XDP: u32 = 6;
const EXT: u32 = 28;

fn prog(prog_type: u32, id: u32) -> Arc<FakeProg> {
    Arc::new(FakeProg {
        prog_type,
        id,
        jited: true,
        frags: false,
    })
}

#[test]
fn prog_array_op_errno_matrix() {
    let rt = rt();
    let pa = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    let p1 = prog(SOCKET_FILTER, 113);
    let h1 = rt.install_prog(p1.clone());
    let h2 = rt.install_prog(prog(SOCKET_FILTER, 114));
    let hx = rt.install_prog(prog(XDP, 115));
    let hk = rt.install_prog(prog(KPROBE, 116));
    let other = rt.open_other();
    let fd = |h: u32| h.to_ne_bytes();
    // kernel 6.18: a socket filter goes in; lookup returns its id.
    assert_eq!(pa.update_elem(Some(&k(0)), &fd(h1.raw()), BPF_ANY), Ok(()));
    let mut out = [0u8; 4];
    assert_eq!(pa.lookup_elem(Some(&k(0)), &mut out, 0), Ok(()));
    assert_eq!(u32::from_ne_bytes(out), 113);
    // kernel 6.18: empty slot and out of range: ENOENT.
    assert_eq!(pa.lookup_elem(Some(&k(1)), &mut out, 0), Err(Errno::ENOENT));
    assert_eq!(pa.lookup_elem(Some(&k(9)), &mut out, 0), Err(Errno::ENOENT));
    // kernel 6.18: NOEXIST / EXIST: EINVAL, also out of range (flags first).
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(h1.raw()), BPF_NOEXIST),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(h1.raw()), BPF_EXIST),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        pa.update_elem(Some(&k(9)), &fd(h1.raw()), BPF_NOEXIST),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: out of range E2BIG, before the handle is looked at.
    assert_eq!(
        pa.update_elem(Some(&k(4)), &fd(h1.raw()), BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(
        pa.update_elem(Some(&k(4)), &fd(999), BPF_ANY),
        Err(Errno::E2BIG)
    );
    // kernel 6.18: handle not open EBADF; not a program (a file, a map) EINVAL.
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(999), BPF_ANY),
        Err(Errno::EBADF)
    );
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(other.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(pa.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: another program type than the owner's (XDP, kprobe): EINVAL.
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(hx.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(hk.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: BPF_F_LOCK: EINVAL (no spin lock).
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(h1.raw()), BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(pa.update_elem(Some(&k(1)), &fd(h2.raw()), BPF_ANY), Ok(()));
    // Tail calls see the programs.
    assert_eq!(prog_array_get(pa.map(), 1).map(|p| p.id()), Some(114));
    assert!(prog_array_get(pa.map(), 2).is_none());
    assert!(prog_array_get(pa.map(), 4).is_none());
    // kernel 6.18: delete out of range E2BIG, empty ENOENT, full 0, then ENOENT.
    assert_eq!(pa.delete_elem(Some(&k(4))), Err(Errno::E2BIG));
    assert_eq!(pa.delete_elem(Some(&k(2))), Err(Errno::ENOENT));
    assert_eq!(pa.delete_elem(Some(&k(1))), Ok(()));
    assert_eq!(pa.delete_elem(Some(&k(1))), Err(Errno::ENOENT));
    // kernel 6.18: next key like an array, empty slots included.
    let mut nk = [0xffu8; 4];
    assert_eq!(pa.get_next_key(None, &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    assert_eq!(pa.get_next_key(Some(&k(3)), &mut nk), Err(Errno::ENOENT));
    assert_eq!(pa.get_next_key(Some(&k(7)), &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    // kernel 6.18: lookup-and-delete ENOTSUPP; lookup with BPF_F_LOCK or flags 1: EINVAL.
    assert_eq!(
        pa.lookup_and_delete_elem(Some(&k(0)), &mut out, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        pa.lookup_elem(Some(&k(0)), &mut out, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(pa.lookup_elem(Some(&k(0)), &mut out, 1), Err(Errno::EINVAL));
    // kernel 6.18: every batch command ENOTSUPP (no batch ops in prog_array_map_ops), and the
    // count is left as passed.
    let (mut keys, mut vals, mut ob) = (k(2).to_vec(), fd(h1.raw()).to_vec(), [0u8; 4]);
    let mut a = batch(&mut keys, &mut vals, &mut ob, 1);
    assert_eq!(pa.lookup_batch(&mut a), Err(Errno::ENOTSUPP));
    assert_eq!(pa.update_batch(&mut a), Err(Errno::ENOTSUPP));
    assert_eq!(pa.delete_batch(&mut a), Err(Errno::ENOTSUPP));
    assert_eq!(pa.lookup_and_delete_batch(&mut a), Err(Errno::ENOTSUPP));
    assert_eq!(a.count, 1);
    // kernel 6.18: mmap ENOTSUPP; programs get no value pointer.
    let m = pa.map();
    assert_eq!(m.ops().mmap(m).unwrap_err(), Errno::ENOTSUPP);
    assert!(m.ops().lookup_elem(m, &PROG, &k(0)).is_none());
    assert!(m.ops().gen_lookup(m).is_none());
    assert_eq!(
        m.ops().for_each_callback(m, &PROG, &mut |_, _| false),
        Err(Errno::ENOTSUPP)
    );
    // Programs cannot update a program array.
    assert_eq!(
        m.ops().update_elem(m, &PROG, &k(0), &fd(h1.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: freeze works; later updates give EPERM.
    assert_eq!(pa.freeze(), Ok(()));
    assert_eq!(
        pa.update_elem(Some(&k(3)), &fd(h1.raw()), BPF_ANY),
        Err(Errno::EPERM)
    );
    drop(h1);
    // The slot keeps the program alive after its handle is closed.
    assert_eq!(prog_array_get(pa.map(), 0).map(|p| p.id()), Some(113));
    assert!(Arc::strong_count(&p1) >= 2);
}

#[test]
fn prog_array_owner_is_sticky() {
    let rt = rt();
    let pa = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    let xdp = rt.install_prog(prog(XDP, 1));
    let frags = rt.install_prog(Arc::new(FakeProg {
        prog_type: XDP,
        id: 2,
        jited: true,
        frags: true,
    }));
    let interp = rt.install_prog(Arc::new(FakeProg {
        prog_type: XDP,
        id: 3,
        jited: false,
        frags: false,
    }));
    let sock = rt.install_prog(prog(SOCKET_FILTER, 4));
    let ext = rt.install_prog(prog(EXT, 5));
    let fd = |h: u32| h.to_ne_bytes();
    // kernel 6.18: an EXT program never goes in, and does not become the owner.
    let pa2 = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    assert_eq!(
        pa2.update_elem(Some(&k(0)), &fd(ext.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        pa2.update_elem(Some(&k(0)), &fd(sock.raw()), BPF_ANY),
        Ok(())
    );
    // kernel 6.18: XDP owner; an XDP program with fragments is refused (EINVAL).
    assert_eq!(pa.update_elem(Some(&k(0)), &fd(xdp.raw()), BPF_ANY), Ok(()));
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(frags.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // A program that was not JIT-compiled does not match a JIT-compiled owner.
    assert_eq!(
        pa.update_elem(Some(&k(1)), &fd(interp.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: after deleting the only XDP program, a socket filter is still refused.
    assert_eq!(pa.delete_elem(Some(&k(0))), Ok(()));
    assert_eq!(
        pa.update_elem(Some(&k(0)), &fd(sock.raw()), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(pa.update_elem(Some(&k(0)), &fd(xdp.raw()), BPF_ANY), Ok(()));
}

#[test]
fn prog_array_is_cleared_when_the_last_user_reference_goes() {
    let rt = rt();
    let pa = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    let p = prog(SOCKET_FILTER, 42);
    let hp = rt.install_prog(p.clone());
    pa.update_elem(Some(&k(3)), &hp.raw().to_ne_bytes(), BPF_ANY)
        .unwrap();
    drop(hp);
    // A second user reference (another handle) keeps the slots.
    let id = pa.id();
    let other = rt.map_get_fd_by_id(id, 0).unwrap();
    drop(pa);
    assert_eq!(prog_array_get(other.map(), 3).map(|p| p.id()), Some(42));
    // A program still using the array holds only a reference: prog_array_map_clear empties
    // every slot once no user reference is left, releasing the programs.
    let held = other.map().map_ref().clone();
    drop(other);
    assert_eq!(held.usercnt(), 0);
    assert!(prog_array_get(&held, 3).is_none());
    assert_eq!(Arc::strong_count(&p), 1);
    // prog_array_get on a map of another type: None.
    let arr = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 4, 4))
        .unwrap();
    assert!(prog_array_get(arr.map(), 0).is_none());
}

#[test]
fn meta_equal_registry_rows() {
    use bpfnest_maps::map::arraymap::{
        ARRAY_MAP_OPS, ARRAY_OF_MAPS_MAP_OPS, PERCPU_ARRAY_MAP_OPS, PROG_ARRAY_MAP_OPS,
    };
    assert_eq!(ARRAY_MAP_OPS.map_type, BPF_MAP_TYPE_ARRAY);
    assert_eq!(PERCPU_ARRAY_MAP_OPS.map_type, BPF_MAP_TYPE_PERCPU_ARRAY);
    assert_eq!(PROG_ARRAY_MAP_OPS.map_type, BPF_MAP_TYPE_PROG_ARRAY);
    assert_eq!(ARRAY_OF_MAPS_MAP_OPS.map_type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    // All four are in map_create's unprivileged list.
    assert!(ARRAY_MAP_OPS.unprivileged && PERCPU_ARRAY_MAP_OPS.unprivileged);
    assert!(PROG_ARRAY_MAP_OPS.unprivileged && ARRAY_OF_MAPS_MAP_OPS.unprivileged);
    // Neither fd array can be a template.
    assert!(PROG_ARRAY_MAP_OPS.meta_equal.is_none() && ARRAY_OF_MAPS_MAP_OPS.meta_equal.is_none());
}

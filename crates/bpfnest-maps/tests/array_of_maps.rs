// SPDX-License-Identifier: Apache-2.0 OR MIT
//! BPF_MAP_TYPE_ARRAY_OF_MAPS through the public API: the syscall-side rows of
//! `spec/map-in-map.md` §8 that concern it, the template rules for every inner type of the
//! array family, and the lifetime rules (templates, closed inner handles, deferred release,
//! outer map freed). Every expectation was checked against Linux 6.18.44 ("kernel 6.18:"
//! notes); "spec [E]" marks facts taken from the spec's own probes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfnest_maps::map::arraymap::array_of_maps_lookup;
use bpfnest_maps::registry::BtfKind;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{
    BatchArgs, BpfMap, BpfProg, BtfField, BtfFieldKind, BtfObject, BtfRecord, Caps, Config, Errno,
    InlineLookup, MapAttr, MapHandle, OpCtx, Runtime,
};

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 4,
        ..Config::default()
    })
}

fn k(i: u32) -> [u8; 4] {
    i.to_ne_bytes()
}

/// A 4-byte handle value, as an outer-map update carries it.
fn fd(h: &MapHandle) -> [u8; 4] {
    h.raw().to_ne_bytes()
}

const PROG: OpCtx<'static> = OpCtx {
    cpu: 0,
    files: None,
};

fn array(n: u32) -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, n)
}

fn aom(n: u32, template: &MapHandle) -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, n).inner_map(template.raw())
}

fn create_err(rt: &Runtime, a: MapAttr) -> Errno {
    rt.map_create(&a).map(|_| ()).unwrap_err()
}

/// The id the syscall lookup of slot `i` returns.
fn slot_id(outer: &MapHandle, i: u32) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    outer
        .lookup_elem(Some(&k(i)), &mut v, 0)
        .map(|_| u32::from_ne_bytes(v))
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

// ---------------------------------------------------------------------------------------------
// Creation (rows 1-6, 8, 13-17, 19, 21-23)
// ---------------------------------------------------------------------------------------------

#[test]
fn create_rows() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    // Row 1. kernel 6.18: valid sizes and template: created; info shows value_size 4.
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let info = o.info();
    assert_eq!(
        (
            info.map_type,
            info.key_size,
            info.value_size,
            info.max_entries
        ),
        (12, 4, 4, 4)
    );
    // kernel 6.18: memlock 344 (312 + 4 slots of 8 bytes).
    assert_eq!(o.map().mem_usage(), 344);
    // Row 2. kernel 6.18: map_extra != 0: EINVAL.
    assert_eq!(create_err(&rt, aom(4, &t).extra(1)), Errno::EINVAL);
    // Row 3. kernel 6.18: value_size 8 is EINVAL even with a closed template handle.
    let mut a = aom(4, &t);
    a.value_size = 8;
    assert_eq!(create_err(&rt, a), Errno::EINVAL);
    a.inner_map_fd = 999;
    assert_eq!(create_err(&rt, a), Errno::EINVAL);
    // Row 4. kernel 6.18: key_size 8 (or 0): EINVAL.
    for ks in [0, 8] {
        let mut a = aom(4, &t);
        a.key_size = ks;
        assert_eq!(create_err(&rt, a), Errno::EINVAL);
    }
    // Row 6. kernel 6.18: max_entries 0: EINVAL, also with a closed template handle.
    assert_eq!(create_err(&rt, aom(0, &t)), Errno::EINVAL);
    assert_eq!(create_err(&rt, aom(0, &t).inner_map(999)), Errno::EINVAL);
    // Row 8 and the flag matrix. kernel 6.18: only bits 2 (NUMA), 3/4 (RDONLY/WRONLY) are
    // accepted; NO_PREALLOC, NO_COMMON_LRU, ZERO_SEED, RDONLY_PROG, WRONLY_PROG, MMAPABLE,
    // PRESERVE_ELEMS, INNER_MAP and every other bit up to 18 give EINVAL.
    for bit in 0..19 {
        let r = rt.map_create(&aom(4, &t).flags(1 << bit)).map(|_| ());
        if matches!(bit, 2..=4) {
            assert_eq!(r, Ok(()), "AOM flag bit {bit}");
        } else {
            assert_eq!(r, Err(Errno::EINVAL), "AOM flag bit {bit}");
        }
    }
    // kernel 6.18: a bad flag is reported before the template (MMAPABLE + closed handle).
    assert_eq!(
        create_err(&rt, aom(4, &t).flags(BPF_F_MMAPABLE).inner_map(999)),
        Errno::EINVAL
    );
    // Row 14. kernel 6.18: template handle not open, or -1: EBADF.
    assert_eq!(create_err(&rt, aom(4, &t).inner_map(999)), Errno::EBADF);
    assert_eq!(
        create_err(&rt, aom(4, &t).inner_map(u32::MAX)),
        Errno::EBADF
    );
    // Row 15. kernel 6.18: a handle that is not a map (/dev/null, fd 0): EINVAL.
    let other = rt.open_other();
    assert_eq!(
        create_err(&rt, aom(4, &t).inner_map(other.raw())),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, aom(4, &t).inner_map(0)), Errno::EINVAL);
    // Row 16. kernel 6.18: the template is itself an outer map: EINVAL.
    assert_eq!(create_err(&rt, aom(4, &o)), Errno::EINVAL);
    // Row 17. kernel 6.18: a PROG_ARRAY template: ENOTSUPP (524, not 95).
    let pa = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    assert_eq!(create_err(&rt, aom(4, &pa)), Errno::ENOTSUPP);
    // kernel 6.18: with max_entries 0 the array check wins over the template (EINVAL).
    assert_eq!(create_err(&rt, aom(0, &pa)), Errno::EINVAL);
    // kernel 6.18: a PERCPU_ARRAY template is accepted.
    let pt = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4))
        .unwrap();
    assert!(rt.map_create(&aom(4, &pt)).is_ok());
    // Row 21. kernel 6.18: garbage inner_map_fd on another type is ignored.
    assert!(rt.map_create(&array(4).inner_map(12345)).is_ok());
    // Row 22/23. kernel 6.18: ARRAY takes BPF_F_INNER_MAP; PERCPU_ARRAY and PROG_ARRAY refuse it.
    assert!(rt.map_create(&array(4).flags(BPF_F_INNER_MAP)).is_ok());
    assert_eq!(
        create_err(
            &rt,
            MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4).flags(BPF_F_INNER_MAP)
        ),
        Errno::EINVAL
    );
    assert_eq!(
        create_err(
            &rt,
            MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4).flags(BPF_F_INNER_MAP)
        ),
        Errno::EINVAL
    );
}

#[test]
fn create_rdonly_wronly_row_13() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let inner = rt.map_create(&array(4)).unwrap();
    // kernel 6.18: RDONLY and WRONLY are accepted, not stored, and restrict the handle.
    let ro = rt.map_create(&aom(4, &t).flags(BPF_F_RDONLY)).unwrap();
    assert_eq!(ro.info().map_flags, 0);
    assert_eq!(
        ro.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY),
        Err(Errno::EPERM)
    );
    assert_eq!(ro.delete_elem(Some(&k(0))), Err(Errno::EPERM));
    assert_eq!(slot_id(&ro, 0), Err(Errno::ENOENT));
    let wo = rt.map_create(&aom(4, &t).flags(BPF_F_WRONLY)).unwrap();
    assert_eq!(wo.info().map_flags, 0);
    assert_eq!(wo.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY), Ok(()));
    assert_eq!(slot_id(&wo, 0), Err(Errno::EPERM));
}

/// type 1: int (4 bytes, i32).
#[derive(Debug)]
struct IntBtf;

impl BtfObject for IntBtf {
    fn id(&self) -> u32 {
        5
    }
    fn type_size(&self, type_id: u32) -> Option<u32> {
        (type_id == 1).then_some(4)
    }
    fn type_kind(&self, type_id: u32) -> BtfKind {
        if type_id == 1 {
            BtfKind::Int32
        } else {
            BtfKind::Void
        }
    }
    fn value_record(&self, _type_id: u32, _value_size: u32) -> Result<Option<BtfRecord>, Errno> {
        Ok(None)
    }
}

#[test]
fn create_with_btf_row_19() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let btf = rt.install_btf(Arc::new(IntBtf));
    let with = |key, val| {
        let mut a = aom(4, &t);
        a.btf_fd = btf.raw();
        a.btf_key_type_id = key;
        a.btf_value_type_id = val;
        rt.map_create(&a).map(|_| ())
    };
    // kernel 6.18: any value type id gives ENOTSUPP (map_check_no_btf), with or without a
    // key type id; a BTF handle with all ids zero is ignored.
    assert_eq!(with(1, 1), Err(Errno::ENOTSUPP));
    assert_eq!(with(0, 1), Err(Errno::ENOTSUPP));
    assert_eq!(with(0, 0), Ok(()));
}

#[test]
fn create_without_spectre_bypass() {
    let rt = Runtime::new(Config {
        nr_cpus: 4,
        caps: Caps {
            bpf: true,
            ..Caps::NONE
        },
        ..Config::default()
    });
    let t = rt.map_create(&array(4)).unwrap();
    // kernel 6.18 (CAP_BPF only): 2^31 + 1 slots: E2BIG; with a closed template handle the
    // template error wins (EBADF): the meta is built before the array.
    assert_eq!(create_err(&rt, aom(0x8000_0001, &t)), Errno::E2BIG);
    assert_eq!(
        create_err(&rt, aom(0x8000_0001, &t).inner_map(99)),
        Errno::EBADF
    );
    // spec §3.6 [E]: a 3-slot outer map created without the bypass masks with 3.
    let o = rt.map_create(&aom(3, &t)).unwrap();
    match o.map().ops().gen_lookup(o.map()) {
        Some(InlineLookup::ArrayOfMaps {
            max_entries,
            index_mask,
            ..
        }) => assert_eq!((max_entries, index_mask), (3, 3)),
        other => panic!("unexpected inline lookup {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Template rules for every inner type of the family (rows 32-36, 38, 39)
// ---------------------------------------------------------------------------------------------

#[test]
fn array_template_rules() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let put = |a: MapAttr| {
        let c = rt.map_create(&a).unwrap();
        o.update_elem(Some(&k(0)), &fd(&c), BPF_ANY)
    };
    // kernel 6.18: the same shape goes in.
    assert_eq!(put(array(4)), Ok(()));
    // Row 33. kernel 6.18: another max_entries (template without INNER_MAP): EINVAL.
    assert_eq!(put(array(8)), Err(Errno::EINVAL));
    assert_eq!(put(array(2)), Err(Errno::EINVAL));
    // Row 32. kernel 6.18: another value size, another type, other flags: EINVAL.
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 16, 4)),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4)),
        Err(Errno::EINVAL)
    );
    assert_eq!(put(array(4).flags(BPF_F_RDONLY_PROG)), Err(Errno::EINVAL));
    assert_eq!(put(array(4).flags(BPF_F_NUMA_NODE)), Err(Errno::EINVAL));
    assert_eq!(put(array(4).flags(BPF_F_MMAPABLE)), Err(Errno::EINVAL));
    // Handle-mode flags are not stored, so they do not count.
    assert_eq!(put(array(4).flags(BPF_F_RDONLY)), Ok(()));
    // Row 39. kernel 6.18: the outer map itself, another outer map, a program array: EINVAL.
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&o), BPF_ANY),
        Err(Errno::EINVAL)
    );
    let o2 = rt.map_create(&aom(4, &t)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&o2), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn inner_map_flag_template_rules() {
    let rt = rt();
    let t = rt.map_create(&array(4).flags(BPF_F_INNER_MAP)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    // Row 34. kernel 6.18: with INNER_MAP on both, any max_entries goes in.
    for n in [1, 4, 100] {
        let c = rt.map_create(&array(n).flags(BPF_F_INNER_MAP)).unwrap();
        assert_eq!(
            o.update_elem(Some(&k(0)), &fd(&c), BPF_ANY),
            Ok(()),
            "max_entries {n}"
        );
    }
    // Row 35. kernel 6.18: a candidate without INNER_MAP (same size): EINVAL (flags differ).
    let c = rt.map_create(&array(4)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&c), BPF_ANY),
        Err(Errno::EINVAL)
    );
}

#[test]
fn percpu_array_template_rules() {
    let rt = rt();
    let t = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 8))
        .unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let put = |a: MapAttr| {
        let c = rt.map_create(&a).unwrap();
        o.update_elem(Some(&k(1)), &fd(&c), BPF_ANY)
    };
    // Row 36. kernel 6.18: PERCPU_ARRAY compatibility is the generic test (percpu_array_map_ops
    // uses bpf_map_meta_equal, not array_map_meta_equal): smaller and larger max_entries are
    // accepted; value size and type still count.
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 2)),
        Ok(())
    );
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 64)),
        Ok(())
    );
    assert_eq!(
        put(MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 16, 8)),
        Err(Errno::EINVAL)
    );
    assert_eq!(put(array(8)), Err(Errno::EINVAL));
    // Through the outer map a program reaches the real (smaller) inner map and its bound:
    // index 63 exists in the 64-entry map now in slot 1, index 64 does not.
    let reader = rt.rcu().normal.register();
    let guard = reader.read_lock();
    let inner = array_of_maps_lookup(o.map(), &guard, 1).unwrap();
    assert_eq!(inner.max_entries(), 64);
    assert!(inner.ops().lookup_elem(inner, &PROG, &k(63)).is_some());
    assert!(inner.ops().lookup_elem(inner, &PROG, &k(64)).is_none());
}

#[test]
fn non_template_types() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    // kernel 6.18: PROG_ARRAY: ENOTSUPP; an outer map: EINVAL (nesting is checked first).
    let pa = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    assert_eq!(create_err(&rt, aom(4, &pa)), Errno::ENOTSUPP);
    assert_eq!(create_err(&rt, aom(4, &o)), Errno::EINVAL);
    // spec §2.12 [E]: an exclusive map can be neither template nor inner map: ENOTSUPP.
    let mut excl = array(4);
    excl.excl_prog_hash_size = 32;
    let e = rt.map_create(&excl).unwrap();
    assert_eq!(create_err(&rt, aom(4, &e)), Errno::ENOTSUPP);
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&e), BPF_ANY),
        Err(Errno::ENOTSUPP)
    );
}

#[test]
fn record_template_rules_row_38() {
    let rt = rt();
    let lock_at = |off| {
        BtfRecord::new(
            vec![BtfField {
                offset: off,
                kind: BtfFieldKind::SpinLock,
            }],
            8,
        )
        .unwrap()
    };
    let t = rt.map_create_with_record(&array(4), lock_at(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    // kernel 6.18: {int; spin_lock} into a {int; spin_lock} template: fine; a plain {int; int}
    // value: EINVAL; spin lock at another offset: EINVAL.
    let same = rt.map_create_with_record(&array(4), lock_at(4)).unwrap();
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&same), BPF_ANY), Ok(()));
    let plain = rt.map_create(&array(4)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&plain), BPF_ANY),
        Err(Errno::EINVAL)
    );
    let moved = rt.map_create_with_record(&array(4), lock_at(0)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&moved), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // And the reverse: a plain template refuses a value with a lock.
    let t2 = rt.map_create(&array(4)).unwrap();
    let o2 = rt.map_create(&aom(4, &t2)).unwrap();
    assert_eq!(
        o2.update_elem(Some(&k(0)), &fd(&same), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // spec §5.3 [E]: the inner map takes BPF_F_LOCK through its own handle.
    assert_eq!(same.update_elem(Some(&k(0)), &[1; 8], BPF_F_LOCK), Ok(()));
}

// ---------------------------------------------------------------------------------------------
// Updates, lookups, deletes (rows 25-31, 41, 49-61)
// ---------------------------------------------------------------------------------------------

#[test]
fn update_rows() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let a1 = rt.map_create(&array(4)).unwrap();
    let other = rt.open_other();
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&a1), BPF_ANY), Ok(()));
    // Row 27. kernel 6.18: NOEXIST and EXIST are rejected, not interpreted: EINVAL.
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&a1), BPF_NOEXIST),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&a1), BPF_EXIST),
        Err(Errno::EINVAL)
    );
    // Row 28. kernel 6.18: index 4 of 4: E2BIG.
    assert_eq!(
        o.update_elem(Some(&k(4)), &fd(&a1), BPF_ANY),
        Err(Errno::E2BIG)
    );
    // Row 29. kernel 6.18: bad flags and bad index: EINVAL (flags first).
    assert_eq!(
        o.update_elem(Some(&k(4)), &fd(&a1), BPF_NOEXIST),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: bad index and a closed handle: E2BIG (index before the handle).
    assert_eq!(
        o.update_elem(Some(&k(9)), &999u32.to_ne_bytes(), BPF_ANY),
        Err(Errno::E2BIG)
    );
    // Row 26. kernel 6.18: BPF_F_LOCK: EINVAL (an outer map has no spin lock).
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&a1), BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    // Row 30/31. kernel 6.18: handle not open EBADF; /dev/null or a program: EINVAL.
    assert_eq!(
        o.update_elem(Some(&k(1)), &999u32.to_ne_bytes(), BPF_ANY),
        Err(Errno::EBADF)
    );
    assert_eq!(
        o.update_elem(Some(&k(1)), &other.raw().to_ne_bytes(), BPF_ANY),
        Err(Errno::EINVAL)
    );
    let p = rt.install_prog(Arc::new(Prog));
    assert_eq!(
        o.update_elem(Some(&k(1)), &p.raw().to_ne_bytes(), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // Row 41. kernel 6.18: replacing an occupied slot succeeds; the old map (only referenced
    // by the slot) is gone at once.
    let a2 = rt.map_create(&array(4)).unwrap();
    let (id1, id2) = (a1.id(), a2.id());
    drop(a1);
    assert_eq!(slot_id(&o, 0), Ok(id1));
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&a2), BPF_ANY), Ok(()));
    assert_eq!(slot_id(&o, 0), Ok(id2));
    assert_eq!(rt.map_get_fd_by_id(id1, 0).map(|_| ()), Err(Errno::ENOENT));
    // Programs cannot update or push to an outer map.
    let m = o.map();
    assert_eq!(
        m.ops().update_elem(m, &PROG, &k(1), &fd(&a2), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(m.ops().push_elem(m, &fd(&a2), 0), Err(Errno::ENOTSUPP));
    // Row 25 / 70. kernel 6.18: freeze is allowed; then update and delete give EPERM,
    // lookup still works.
    assert_eq!(o.freeze(), Ok(()));
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&a2), BPF_ANY),
        Err(Errno::EPERM)
    );
    assert_eq!(o.delete_elem(Some(&k(0))), Err(Errno::EPERM));
    assert_eq!(slot_id(&o, 0), Ok(id2));
}

#[derive(Debug)]
struct Prog;

impl BpfProg for Prog {
    fn prog_type(&self) -> u32 {
        1
    }
    fn id(&self) -> u32 {
        77
    }
    fn jited(&self) -> bool {
        true
    }
}

#[test]
fn lookup_delete_next_key_rows() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let a = rt.map_create(&array(4)).unwrap();
    o.update_elem(Some(&k(0)), &fd(&a), BPF_ANY).unwrap();
    let mut v = [0u8; 4];
    // Row 51. kernel 6.18: the value read back is the inner map's id, not a handle.
    assert_eq!(slot_id(&o, 0), Ok(a.id()));
    // Row 52. kernel 6.18: empty slot and index >= max_entries: ENOENT (not E2BIG).
    assert_eq!(slot_id(&o, 2), Err(Errno::ENOENT));
    assert_eq!(slot_id(&o, 4), Err(Errno::ENOENT));
    // Row 49/50. kernel 6.18: lookup flags 1 or BPF_F_LOCK: EINVAL.
    assert_eq!(o.lookup_elem(Some(&k(0)), &mut v, 1), Err(Errno::EINVAL));
    assert_eq!(
        o.lookup_elem(Some(&k(0)), &mut v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    // Rows 58-60. kernel 6.18: next key ignores whether slots are populated.
    let mut nk = [0xffu8; 4];
    assert_eq!(o.get_next_key(None, &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    assert_eq!(o.get_next_key(Some(&k(1)), &mut nk), Ok(()));
    assert_eq!(nk, k(2));
    assert_eq!(o.get_next_key(Some(&k(3)), &mut nk), Err(Errno::ENOENT));
    nk = [0xff; 4];
    assert_eq!(o.get_next_key(Some(&k(7)), &mut nk), Ok(()));
    assert_eq!(nk, k(0));
    // Row 61. kernel 6.18: lookup-and-delete: ENOTSUPP; with BPF_F_LOCK: EINVAL first.
    assert_eq!(
        o.lookup_and_delete_elem(Some(&k(0)), &mut v, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        o.lookup_and_delete_elem(Some(&k(0)), &mut v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    // Rows 54-56. kernel 6.18: delete out of range E2BIG, empty ENOENT, full 0.
    assert_eq!(o.delete_elem(Some(&k(4))), Err(Errno::E2BIG));
    assert_eq!(o.delete_elem(Some(&k(3))), Err(Errno::ENOENT));
    assert_eq!(o.delete_elem(Some(&k(0))), Ok(()));
    assert_eq!(slot_id(&o, 0), Err(Errno::ENOENT));
    // The inner map has its handle: it lives on.
    assert_eq!(a.update_elem(Some(&k(0)), &[1; 8], BPF_ANY), Ok(()));
    // Row 71. kernel 6.18: mmap of an outer map: ENOTSUPP.
    let m = o.map();
    assert_eq!(m.ops().mmap(m).unwrap_err(), Errno::ENOTSUPP);
    // Row 77 (program side): for_each is refused with ENOTSUPP.
    assert_eq!(
        m.ops().for_each_callback(m, &PROG, &mut |_, _| false),
        Err(Errno::ENOTSUPP)
    );
    assert!(m.ops().lookup_percpu_elem(m, &k(0), 0).is_none());
}

#[test]
fn program_side_lookup() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let a = rt.map_create(&array(4)).unwrap();
    a.update_elem(Some(&k(2)), &42u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    o.update_elem(Some(&k(1)), &fd(&a), BPF_ANY).unwrap();
    let m = o.map();
    // The helper returns the inner BpfMap itself; empty and out-of-range slots give NULL.
    let p = m.ops().lookup_elem(m, &PROG, &k(1)).unwrap();
    assert_eq!(p.as_ptr() as *const BpfMap, &**a.map() as *const BpfMap);
    assert!(m.ops().lookup_elem(m, &PROG, &k(0)).is_none());
    assert!(m.ops().lookup_elem(m, &PROG, &k(4)).is_none());
    // The inlined form loads the same pointer from the slot array.
    match m.ops().gen_lookup(m) {
        Some(InlineLookup::ArrayOfMaps {
            slots,
            max_entries,
            index_mask,
        }) => {
            assert_eq!((max_entries, index_mask), (4, u32::MAX));
            // SAFETY: slot 1 of a 4-slot array of pointers; the outer map is alive.
            let slot1 = unsafe { (slots.as_ptr() as *const *const BpfMap).add(1).read() };
            assert_eq!(slot1, p.as_ptr() as *const BpfMap);
        }
        other => panic!("unexpected inline lookup {other:?}"),
    }
    // Typed form: a reference tied to a normal-flavour guard, then the inner map's own ops.
    let reader = rt.rcu().normal.register();
    let guard = reader.read_lock();
    let inner = array_of_maps_lookup(m, &guard, 1).unwrap();
    assert_eq!(inner.id(), a.id());
    let v = inner.ops().lookup_elem(inner, &PROG, &k(2)).unwrap();
    // SAFETY: an 8-byte value of a live map; no concurrent writer.
    assert_eq!(unsafe { (v.as_ptr() as *const u64).read() }, 42);
    assert!(array_of_maps_lookup(m, &guard, 0).is_none());
    assert!(array_of_maps_lookup(m, &guard, 4).is_none());
    // Not an array of maps, or a guard of another domain: None.
    assert!(array_of_maps_lookup(a.map(), &guard, 0).is_none());
    let tt = rt.rcu().tasks_trace.register();
    let tg = tt.read_lock();
    assert!(array_of_maps_lookup(m, &tg, 1).is_none());
}

// ---------------------------------------------------------------------------------------------
// Batches (rows 62-66, 69)
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_rows() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let a = rt.map_create(&array(4)).unwrap();
    let b = rt.map_create(&array(4)).unwrap();
    let (mut keys, mut vals, mut out) = ([0u8; 16], [0u8; 16], [0u8; 4]);
    // Row 65. kernel 6.18: update batch with elem_flags 0 fills slots 0 and 2 (handles in).
    let mut ukeys = [k(0), k(2)].concat();
    let mut uvals = [fd(&a), fd(&b)].concat();
    let mut args = batch(&mut ukeys, &mut uvals, &mut out, 2);
    assert_eq!(o.update_batch(&mut args), Ok(()));
    assert_eq!(args.count, 2);
    // Row 62. kernel 6.18: lookup batch skips the holes, returns ids, ends with ENOENT.
    let mut args = batch(&mut keys, &mut vals, &mut out, 4);
    assert_eq!(o.lookup_batch(&mut args), Err(Errno::ENOENT));
    assert_eq!(args.count, 2);
    assert_eq!(&keys[..8], &[k(0), k(2)].concat()[..]);
    assert_eq!(
        &vals[..8],
        &[a.id().to_ne_bytes(), b.id().to_ne_bytes()].concat()[..]
    );
    // kernel 6.18: batch.flags is ignored by the generic lookup batch.
    let mut args = batch(&mut keys, &mut vals, &mut out, 4);
    args.flags = 1;
    assert_eq!(o.lookup_batch(&mut args), Err(Errno::ENOENT));
    assert_eq!(args.count, 2);
    // Row 69. kernel 6.18: BPF_F_LOCK in elem_flags: EINVAL for lookup and update batches.
    let mut args = batch(&mut keys, &mut vals, &mut out, 4);
    args.elem_flags = BPF_F_LOCK;
    assert_eq!(o.lookup_batch(&mut args), Err(Errno::EINVAL));
    let mut args = batch(&mut ukeys, &mut uvals, &mut out, 1);
    args.elem_flags = BPF_F_LOCK;
    assert_eq!(o.update_batch(&mut args), Err(Errno::EINVAL));
    // Row 66. kernel 6.18: elem_flags NOEXIST: EINVAL.
    let mut args = batch(&mut ukeys, &mut uvals, &mut out, 1);
    args.elem_flags = BPF_NOEXIST;
    assert_eq!(o.update_batch(&mut args), Err(Errno::EINVAL));
    // kernel 6.18: an out-of-range or closed handle in the 2nd element stops with count 1.
    let mut bad_keys = [k(1), k(7)].concat();
    let mut args = batch(&mut bad_keys, &mut uvals, &mut out, 2);
    assert_eq!(o.update_batch(&mut args), Err(Errno::E2BIG));
    assert_eq!(args.count, 1);
    let mut bad_keys = [k(1), k(3)].concat();
    let mut bad_vals = [fd(&a), 999u32.to_ne_bytes()].concat();
    let mut args = batch(&mut bad_keys, &mut bad_vals, &mut out, 2);
    assert_eq!(o.update_batch(&mut args), Err(Errno::EBADF));
    assert_eq!(args.count, 1);
    // Rows 63/64. kernel 6.18: lookup-and-delete and delete batches: ENOTSUPP, also with
    // BPF_F_LOCK (there is no batch function to look at the flags).
    let mut args = batch(&mut keys, &mut vals, &mut out, 4);
    assert_eq!(o.lookup_and_delete_batch(&mut args), Err(Errno::ENOTSUPP));
    let mut args = batch(&mut ukeys, &mut uvals, &mut out, 1);
    assert_eq!(o.delete_batch(&mut args), Err(Errno::ENOTSUPP));
    args.elem_flags = BPF_F_LOCK;
    assert_eq!(o.delete_batch(&mut args), Err(Errno::ENOTSUPP));
}

// ---------------------------------------------------------------------------------------------
// Lifetimes (rows 24, 72-74)
// ---------------------------------------------------------------------------------------------

#[test]
fn template_is_not_referenced_row_24() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let tid = t.id();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    // kernel 6.18: closing the template frees it; the outer map keeps working and keeps
    // accepting compatible maps (and refusing incompatible ones).
    drop(t);
    assert_eq!(rt.map_get_fd_by_id(tid, 0).map(|_| ()), Err(Errno::ENOENT));
    let a = rt.map_create(&array(4)).unwrap();
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&a), BPF_ANY), Ok(()));
    let b = rt.map_create(&array(5)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(1)), &fd(&b), BPF_ANY),
        Err(Errno::EINVAL)
    );
    // An outer map's template is described by its meta.
    let meta = o.map().inner_map_meta().unwrap();
    assert_eq!(
        (meta.map_type, meta.max_entries, meta.value_size),
        (BPF_MAP_TYPE_ARRAY, 4, 8)
    );
}

#[test]
fn closed_inner_handle_row_72() {
    let rt = rt();
    // Inner value: { u64 data; struct bpf_timer t; }.
    let rec = || {
        BtfRecord::new(
            vec![BtfField {
                offset: 8,
                kind: BtfFieldKind::Timer,
            }],
            24,
        )
        .unwrap()
    };
    let t = rt
        .map_create_with_record(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 24, 2), rec())
        .unwrap();
    let o = rt.map_create(&aom(2, &t)).unwrap();
    let inner = rt
        .map_create_with_record(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 24, 2), rec())
        .unwrap();
    let id = inner.id();
    o.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY).unwrap();
    // A program arms the timer of value 0 (bpf_timer_init writes the field).
    let v = inner
        .map()
        .ops()
        .lookup_elem(inner.map(), &PROG, &k(0))
        .unwrap();
    // SAFETY: the timer field lies inside a live 24-byte value; no concurrent access.
    unsafe { v.as_ptr().add(8).write_bytes(0xaa, 16) };
    // kernel 6.18: closing the last handle leaves the map alive and resolvable by id.
    drop(inner);
    {
        let reader = rt.rcu().normal.register();
        let guard = reader.read_lock();
        let m = array_of_maps_lookup(o.map(), &guard, 0).unwrap();
        // spec [E: T2]: usercnt is 0 and the timers were cancelled.
        assert_eq!(m.usercnt(), 0);
        assert!(m.refcnt() >= 1);
        let v = m.ops().lookup_elem(m, &PROG, &k(0)).unwrap();
        let mut timer = [0xffu8; 16];
        // SAFETY: as above, the value is alive for the guard's section.
        unsafe { core::ptr::copy_nonoverlapping(v.as_ptr().add(8), timer.as_mut_ptr(), 16) };
        assert_eq!(timer, [0; 16]);
    }
    let again = rt.map_get_fd_by_id(id, 0).unwrap();
    assert_eq!(again.map().usercnt(), 1);
    drop(again);
    // Still in the slot.
    assert_eq!(slot_id(&o, 0), Ok(id));
}

#[test]
fn deleted_inner_goes_at_once_but_is_freed_after_readers_row_73() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let inner = rt.map_create(&array(4)).unwrap();
    let id = inner.id();
    o.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY).unwrap();
    drop(inner);
    let reader = rt.rcu().normal.register();
    std::thread::scope(|s| {
        let guard = reader.read_lock();
        let m = array_of_maps_lookup(o.map(), &guard, 0).unwrap();
        assert_eq!(m.id(), id);
        // The delete swaps the slot and drops the last reference, then waits for readers
        // (synchronize_rcu) before returning: it cannot return while `guard` is held.
        let deleter = s.spawn(|| o.delete_elem(Some(&k(0))));
        // kernel 6.18 (spec [E: L2]): the id disappears when the last reference is dropped,
        // before the syscall's grace period ends.
        let t0 = Instant::now();
        // (get-by-id fails from the moment refcnt reaches 0; `id` is cleared just after, by the
        // same put, so wait for both.)
        while rt.map_get_fd_by_id(id, 0).is_ok() || m.id() != 0 {
            assert!(t0.elapsed() < Duration::from_secs(10), "id never went away");
            std::thread::yield_now();
        }
        // The memory stays valid for this reader (deferred free).
        assert_eq!(m.max_entries(), 4);
        assert_eq!(m.id(), 0);
        assert!(!deleter.is_finished());
        drop(guard);
        assert_eq!(deleter.join().unwrap(), Ok(()));
    });
    rt.rcu_barrier();
    assert_eq!(rt.map_get_fd_by_id(id, 0).map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(slot_id(&o, 0), Err(Errno::ENOENT));
}

#[test]
fn outer_freed_releases_inners_row_74() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let lone = rt.map_create(&array(4)).unwrap();
    let kept = rt.map_create(&array(4)).unwrap();
    let (lone_id, kept_id) = (lone.id(), kept.id());
    o.update_elem(Some(&k(0)), &fd(&lone), BPF_ANY).unwrap();
    o.update_elem(Some(&k(3)), &fd(&kept), BPF_ANY).unwrap();
    drop(lone);
    assert!(rt.map_get_fd_by_id(lone_id, 0).is_ok());
    // kernel 6.18: closing the outer map's last handle releases every inner map without
    // deferral: one referenced by nothing else is gone at once, one with a handle lives on.
    let before = kept.map().refcnt();
    drop(o);
    assert_eq!(
        rt.map_get_fd_by_id(lone_id, 0).map(|_| ()),
        Err(Errno::ENOENT)
    );
    assert_eq!(kept.map().refcnt(), before - 1);
    rt.rcu_barrier();
    let again = rt.map_get_fd_by_id(kept_id, 0).unwrap();
    assert_eq!(again.id(), kept_id);
}

#[test]
fn same_inner_in_many_slots() {
    let rt = rt();
    let t = rt.map_create(&array(4)).unwrap();
    let o = rt.map_create(&aom(4, &t)).unwrap();
    let a = rt.map_create(&array(4)).unwrap();
    let base = a.map().refcnt();
    // One refcnt per occupied slot, no user reference.
    for i in 0..4 {
        o.update_elem(Some(&k(i)), &fd(&a), BPF_ANY).unwrap();
    }
    assert_eq!(a.map().refcnt(), base + 4);
    assert_eq!(a.map().usercnt(), 1);
    o.update_elem(Some(&k(0)), &fd(&a), BPF_ANY).unwrap();
    assert_eq!(a.map().refcnt(), base + 4);
    o.delete_elem(Some(&k(1))).unwrap();
    assert_eq!(a.map().refcnt(), base + 3);
    drop(o);
    assert_eq!(a.map().refcnt(), base);
}

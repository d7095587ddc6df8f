// SPDX-License-Identifier: Apache-2.0 OR MIT
//! BPF_MAP_TYPE_HASH_OF_MAPS through the public API: the rows of `spec/map-in-map.md` §8 that
//! concern it (5, 7, 9-12, 42-47, 53, 57, 65, 67-69 and the lifetime rows), templates of the
//! hash family, iteration order and program-side lookups. Every expectation was checked against
//! Linux 6.18.44 ("kernel 6.18:" notes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bpfnest_maps::map::hashtab::hash_of_maps_lookup;
use bpfnest_maps::registry::BtfKind;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{
    BatchArgs, BtfObject, BtfRecord, Caps, Config, Errno, MapAttr, MapHandle, OpCtx, Runtime,
};

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
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

fn hash(n: u32) -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, n)
}

fn hom(n: u32, template: &MapHandle) -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, n).inner_map(template.raw())
}

fn create_err(rt: &Runtime, a: MapAttr) -> Errno {
    rt.map_create(&a).map(|_| ()).unwrap_err()
}

/// The id a syscall lookup of `key` returns.
fn id_of(outer: &MapHandle, key: u32) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    outer
        .lookup_elem(Some(&k(key)), &mut v, 0)
        .map(|_| u32::from_ne_bytes(v))
}

fn walk(h: &MapHandle) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cur: Option<[u8; 4]> = None;
    let mut next = [0u8; 4];
    while h
        .get_next_key(cur.as_ref().map(|c| &c[..]), &mut next)
        .is_ok()
    {
        out.push(u32::from_ne_bytes(next));
        cur = Some(next);
    }
    out
}

struct Batch {
    r: Result<(), Errno>,
    count: u32,
    keys: Vec<u32>,
    values: Vec<u32>,
}

fn run_batch(
    h: &MapHandle,
    cmd: &str,
    keys: &[u32],
    values: &[u32],
    count: u32,
    elem_flags: u64,
) -> Batch {
    let n = count.max(1) as usize;
    let mut kk: Vec<u8> = keys.iter().flat_map(|x| x.to_ne_bytes()).collect();
    kk.resize(4 * n.max(keys.len()), 0);
    let mut vv: Vec<u8> = values.iter().flat_map(|x| x.to_ne_bytes()).collect();
    vv.resize(4 * n.max(values.len()), 0);
    let mut out = [0u8; 4];
    let mut a = BatchArgs {
        in_batch: None,
        out_batch: &mut out,
        keys: &mut kk,
        values: &mut vv,
        count,
        elem_flags,
        flags: 0,
    };
    let r = match cmd {
        "lookup" => h.lookup_batch(&mut a),
        "lookup_and_delete" => h.lookup_and_delete_batch(&mut a),
        "update" => h.update_batch(&mut a),
        "delete" => h.delete_batch(&mut a),
        _ => unreachable!(),
    };
    let count = a.count;
    let m = if cmd.starts_with("lookup") && r != Err(Errno::EINVAL) {
        count as usize
    } else {
        0
    };
    Batch {
        r,
        count,
        keys: (0..m)
            .map(|i| u32::from_ne_bytes(kk[4 * i..4 * i + 4].try_into().unwrap()))
            .collect(),
        values: (0..m)
            .map(|i| u32::from_ne_bytes(vv[4 * i..4 * i + 4].try_into().unwrap()))
            .collect(),
    }
}

const PROG: OpCtx<'static> = OpCtx {
    cpu: 0,
    files: None,
};

// ---------------------------------------------------------------------------------------------
// Creation (rows 1, 3, 5-7, 9-12, 14-19)
// ---------------------------------------------------------------------------------------------

#[test]
fn create_rows() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    // Row 1. kernel 6.18: created; info shows value_size 4.
    let o = rt.map_create(&hom(4, &t)).unwrap();
    let info = o.info();
    assert_eq!(
        (
            info.map_type,
            info.key_size,
            info.value_size,
            info.max_entries
        ),
        (13, 4, 4, 4)
    );
    // kernel 6.18: any key size > 0 works (513 too).
    let mut a = hom(4, &t);
    a.key_size = 513;
    assert!(rt.map_create(&a).is_ok());
    // Row 3. kernel 6.18: value_size 8 is EINVAL, before the template handle (999, not open)
    // is looked at; so are bad flags and max_entries 0.
    let mut a = hom(4, &t).inner_map(999);
    a.value_size = 8;
    assert_eq!(create_err(&rt, a), Errno::EINVAL);
    assert_eq!(
        create_err(&rt, hom(4, &t).inner_map(999).flags(BPF_F_INNER_MAP)),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, hom(0, &t).inner_map(999)), Errno::EINVAL);
    // Row 5. kernel 6.18: key_size 0: EINVAL.
    let mut a = hom(4, &t);
    a.key_size = 0;
    assert_eq!(create_err(&rt, a), Errno::EINVAL);
    // kernel 6.18: key_size + 4 >= KMALLOC_MAX_SIZE - 48: E2BIG.
    a.key_size = (1 << 22) - 52;
    assert_eq!(create_err(&rt, a), Errno::E2BIG);
    a.key_size = (1 << 22) - 53;
    a.max_entries = 1;
    assert!(rt.map_create(&a).is_ok());
    // Row 6. max_entries 0: EINVAL.
    assert_eq!(create_err(&rt, hom(0, &t)), Errno::EINVAL);
    // Row 7. kernel 6.18: more than 2^27 buckets or 2^31 entries: E2BIG, but only after the
    // template was resolved (a closed template handle gives EBADF first).
    for n in [(1 << 27) + 1, 1 << 28, (1 << 31) + 1] {
        assert_eq!(
            create_err(&rt, hom(n, &t).flags(BPF_F_NO_PREALLOC)),
            Errno::E2BIG
        );
        assert_eq!(create_err(&rt, hom(n, &t).inner_map(999)), Errno::EBADF);
    }
    // Row 9. kernel 6.18: INNER_MAP, NO_COMMON_LRU, MMAPABLE, PRESERVE_ELEMS and
    // RDONLY_PROG|WRONLY_PROG: EINVAL.
    for f in [
        BPF_F_INNER_MAP,
        BPF_F_NO_COMMON_LRU,
        BPF_F_MMAPABLE,
        BPF_F_PRESERVE_ELEMS,
        BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG,
    ] {
        assert_eq!(
            create_err(&rt, hom(4, &t).flags(f)),
            Errno::EINVAL,
            "flags {f:#x}"
        );
    }
    // Rows 10-12. kernel 6.18: RDONLY_PROG, WRONLY_PROG, NO_PREALLOC, NUMA node 0 and (as
    // root) ZERO_SEED are accepted and stored.
    for f in [
        BPF_F_RDONLY_PROG,
        BPF_F_WRONLY_PROG,
        BPF_F_NO_PREALLOC,
        BPF_F_ZERO_SEED,
    ] {
        assert_eq!(
            rt.map_create(&hom(4, &t).flags(f))
                .unwrap()
                .info()
                .map_flags,
            f
        );
    }
    let mut a = hom(4, &t).flags(BPF_F_NUMA_NODE);
    a.numa_node = 0;
    assert!(rt.map_create(&a).is_ok());
    // Row 14-16. kernel 6.18: template handle not open: EBADF; not a map: EINVAL; an outer
    // map: EINVAL.
    assert_eq!(create_err(&rt, hom(4, &t).inner_map(999)), Errno::EBADF);
    let other = rt.open_other();
    assert_eq!(
        create_err(&rt, hom(4, &t).inner_map(other.raw())),
        Errno::EINVAL
    );
    assert_eq!(create_err(&rt, hom(4, &o)), Errno::EINVAL);
}

#[test]
fn zero_seed_without_sys_admin_row_12() {
    // kernel 6.18 (CAP_SYS_ADMIN dropped, CAP_BPF kept): ZERO_SEED is EPERM, before the
    // template is resolved; value_size is still checked first.
    let rt = Runtime::new(Config {
        nr_cpus: 2,
        caps: Caps {
            sys_admin: false,
            ..Caps::ROOT
        },
        ..Config::default()
    });
    let t = rt.map_create(&hash(4)).unwrap();
    assert_eq!(
        create_err(&rt, hom(4, &t).flags(BPF_F_ZERO_SEED)),
        Errno::EPERM
    );
    assert_eq!(
        create_err(&rt, hom(4, &t).flags(BPF_F_ZERO_SEED).inner_map(999)),
        Errno::EPERM
    );
    let mut a = hom(4, &t).flags(BPF_F_ZERO_SEED);
    a.value_size = 8;
    assert_eq!(create_err(&rt, a), Errno::EINVAL);
    assert!(rt.map_create(&hom(4, &t)).is_ok());
}

#[derive(Debug)]
struct IntBtf;

impl BtfObject for IntBtf {
    fn id(&self) -> u32 {
        7
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
    let t = rt.map_create(&hash(4)).unwrap();
    let btf = rt.install_btf(Arc::new(IntBtf));
    let with = |key, val| {
        let mut a = hom(4, &t);
        a.btf_fd = btf.raw();
        a.btf_key_type_id = key;
        a.btf_value_type_id = val;
        rt.map_create(&a).map(|_| ())
    };
    // kernel 6.18: a value type id gives ENOTSUPP (map_check_no_btf); all ids zero: ignored.
    assert_eq!(with(1, 1), Err(Errno::ENOTSUPP));
    assert_eq!(with(0, 1), Err(Errno::ENOTSUPP));
    assert_eq!(with(0, 0), Ok(()));
}

#[test]
fn hash_family_templates() {
    let rt = rt();
    for ty in [
        BPF_MAP_TYPE_HASH,
        BPF_MAP_TYPE_PERCPU_HASH,
        BPF_MAP_TYPE_LRU_HASH,
        BPF_MAP_TYPE_LRU_PERCPU_HASH,
    ] {
        let t = rt.map_create(&MapAttr::new(ty, 4, 8, 4)).unwrap();
        let o = rt.map_create(&hom(4, &t)).unwrap();
        assert_eq!(o.map().inner_map_meta().unwrap().map_type, ty);
        drop(t);
        // Rows 32 and 36: the generic test; max_entries is not compared, flags are.
        let bigger = rt.map_create(&MapAttr::new(ty, 4, 8, 64)).unwrap();
        assert_eq!(o.update_elem(Some(&k(0)), &fd(&bigger), BPF_ANY), Ok(()));
        let zs = rt
            .map_create(&MapAttr::new(ty, 4, 8, 4).flags(BPF_F_ZERO_SEED))
            .unwrap();
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&zs), BPF_ANY),
            Err(Errno::EINVAL)
        );
        let other_value = rt.map_create(&MapAttr::new(ty, 4, 16, 4)).unwrap();
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&other_value), BPF_ANY),
            Err(Errno::EINVAL)
        );
        // Row 39: an outer map is never compatible (itself included).
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&o), BPF_ANY),
            Err(Errno::EINVAL)
        );
    }
    // NO_PREALLOC must match too (row 32).
    let t = rt.map_create(&hash(4).flags(BPF_F_NO_PREALLOC)).unwrap();
    let o = rt.map_create(&hom(4, &t)).unwrap();
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&t), BPF_ANY), Ok(()));
    let prealloc = rt.map_create(&hash(4)).unwrap();
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&prealloc), BPF_ANY),
        Err(Errno::EINVAL)
    );
}

// ---------------------------------------------------------------------------------------------
// Element commands (rows 25, 26, 30-32, 42-47, 53, 57, 61)
// ---------------------------------------------------------------------------------------------

#[test]
fn update_lookup_delete_rows() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let inners: Vec<MapHandle> = (0..10).map(|_| rt.map_create(&hash(4)).unwrap()).collect();
    for flags in [BPF_F_ZERO_SEED, BPF_F_ZERO_SEED | BPF_F_NO_PREALLOC] {
        let o = rt.map_create(&hom(8, &t).flags(flags)).unwrap();
        // Row 42. kernel 6.18: a bad handle and bad flags: EBADF (the handle comes first).
        assert_eq!(
            o.update_elem(Some(&k(1)), &999u32.to_ne_bytes(), 3),
            Err(Errno::EBADF)
        );
        // Row 31: not a map.
        let other = rt.open_other();
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd_raw(other.raw()), BPF_ANY),
            Err(Errno::EINVAL)
        );
        // Row 43. kernel 6.18: flags 3: EINVAL. Row 26: BPF_F_LOCK: EINVAL.
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&inners[0]), 3),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&inners[0]), BPF_F_LOCK),
            Err(Errno::EINVAL)
        );
        // Row 45. kernel 6.18: EXIST on a missing key: ENOENT.
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&inners[0]), BPF_EXIST),
            Err(Errno::ENOENT)
        );
        for i in 0..8 {
            o.update_elem(Some(&k(i)), &fd(&inners[i as usize]), BPF_ANY)
                .unwrap();
        }
        // kernel 6.18: ZERO_SEED order of keys 0..8 in 8 buckets.
        assert_eq!(walk(&o), [0, 4, 7, 2, 1, 6, 5, 3]);
        // Row 44. kernel 6.18: NOEXIST on an existing key: EEXIST.
        assert_eq!(
            o.update_elem(Some(&k(1)), &fd(&inners[9]), BPF_NOEXIST),
            Err(Errno::EEXIST)
        );
        // Row 46. kernel 6.18: replacing works on a full table, in place: the order is kept.
        o.update_elem(Some(&k(2)), &fd(&inners[9]), BPF_ANY)
            .unwrap();
        o.update_elem(Some(&k(2)), &fd(&inners[8]), BPF_EXIST)
            .unwrap();
        assert_eq!(walk(&o), [0, 4, 7, 2, 1, 6, 5, 3]);
        // Row 47. kernel 6.18: a new key in a full table: E2BIG (prealloc and not).
        assert_eq!(
            o.update_elem(Some(&k(100)), &fd(&inners[9]), BPF_ANY),
            Err(Errno::E2BIG)
        );
        // Row 53. kernel 6.18: lookup gives the inner map's id; missing key ENOENT;
        // BPF_F_LOCK EINVAL.
        assert_eq!(id_of(&o, 2), Ok(inners[8].id()));
        assert_eq!(id_of(&o, 50), Err(Errno::ENOENT));
        let mut v = [0u8; 4];
        assert_eq!(
            o.lookup_elem(Some(&k(2)), &mut v, BPF_F_LOCK),
            Err(Errno::EINVAL)
        );
        // Row 61. kernel 6.18: lookup-and-delete: ENOTSUPP (524), the key stays.
        assert_eq!(
            o.lookup_and_delete_elem(Some(&k(2)), &mut v, 0),
            Err(Errno::ENOTSUPP)
        );
        assert_eq!(id_of(&o, 2), Ok(inners[8].id()));
        // Row 57. kernel 6.18: deleting a missing key: ENOENT; an existing one: 0.
        assert_eq!(o.delete_elem(Some(&k(50))), Err(Errno::ENOENT));
        assert_eq!(o.delete_elem(Some(&k(7))), Ok(()));
        assert_eq!(id_of(&o, 7), Err(Errno::ENOENT));
        // The freed element is reusable at once.
        o.update_elem(Some(&k(100)), &fd(&inners[7]), BPF_NOEXIST)
            .unwrap();
        // Row 25: frozen: EPERM for updates and deletes; lookups still work.
        o.freeze().unwrap();
        assert_eq!(
            o.update_elem(Some(&k(100)), &fd(&inners[7]), BPF_ANY),
            Err(Errno::EPERM)
        );
        assert_eq!(o.delete_elem(Some(&k(100))), Err(Errno::EPERM));
        assert_eq!(id_of(&o, 100), Ok(inners[7].id()));
    }
}

fn fd_raw(raw: u32) -> [u8; 4] {
    raw.to_ne_bytes()
}

#[test]
fn references_per_slot() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let o = rt.map_create(&hom(2, &t)).unwrap();
    let a = rt.map_create(&hash(4)).unwrap();
    let b = rt.map_create(&hash(4)).unwrap();
    let base = a.map().refcnt();
    // One refcnt per occupied slot, no user reference.
    o.update_elem(Some(&k(0)), &fd(&a), BPF_ANY).unwrap();
    o.update_elem(Some(&k(1)), &fd(&a), BPF_ANY).unwrap();
    assert_eq!((a.map().refcnt(), a.map().usercnt()), (base + 2, 1));
    // A failed insert (E2BIG, EEXIST, flags) takes no lasting reference.
    assert_eq!(
        o.update_elem(Some(&k(2)), &fd(&b), BPF_ANY),
        Err(Errno::E2BIG)
    );
    assert_eq!(
        o.update_elem(Some(&k(0)), &fd(&b), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(o.update_elem(Some(&k(0)), &fd(&b), 7), Err(Errno::EINVAL));
    assert_eq!(b.map().refcnt(), base);
    // Replacing in place moves the reference from the old inner map to the new one.
    o.update_elem(Some(&k(1)), &fd(&b), BPF_ANY).unwrap();
    assert_eq!((a.map().refcnt(), b.map().refcnt()), (base + 1, base + 1));
    o.delete_elem(Some(&k(0))).unwrap();
    assert_eq!(a.map().refcnt(), base);
}

// ---------------------------------------------------------------------------------------------
// Batches (rows 65, 67-69)
// ---------------------------------------------------------------------------------------------

#[test]
fn batch_rows() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let inners: Vec<MapHandle> = (0..8).map(|_| rt.map_create(&hash(4)).unwrap()).collect();
    let ids: Vec<u32> = inners.iter().map(|h| h.id()).collect();
    for flags in [BPF_F_ZERO_SEED, BPF_F_ZERO_SEED | BPF_F_NO_PREALLOC] {
        let o = rt.map_create(&hom(8, &t).flags(flags)).unwrap();
        // Row 65. kernel 6.18: update_batch with elem_flags 0 (as BPF_ANY) inserts handles;
        // NOEXIST in elem_flags: EINVAL.
        let keys: Vec<u32> = (0..8).collect();
        let fds: Vec<u32> = inners.iter().map(|h| h.raw()).collect();
        let b = run_batch(&o, "update", &keys, &fds, 8, 0);
        assert_eq!((b.r, b.count), (Ok(()), 8));
        let b = run_batch(&o, "update", &keys[..1], &fds[..1], 1, BPF_NOEXIST);
        assert_eq!((b.r, b.count), (Err(Errno::EINVAL), 1));
        // lookup_batch: ids in bucket order, then ENOENT.
        let b = run_batch(&o, "lookup", &[], &[], 20, 0);
        assert_eq!((b.r, b.count), (Err(Errno::ENOENT), 8));
        assert_eq!(b.keys, [0, 4, 7, 2, 1, 6, 5, 3]);
        assert_eq!(
            b.values,
            b.keys.iter().map(|&i| ids[i as usize]).collect::<Vec<_>>()
        );
        // ENOSPC: the third bucket holds two keys.
        let mut out = [0u8; 4];
        let (mut kk, mut vv) = (vec![0u8; 4], vec![0u8; 4]);
        let ib = 2u32.to_ne_bytes();
        let mut a = BatchArgs {
            in_batch: Some(&ib),
            out_batch: &mut out,
            keys: &mut kk,
            values: &mut vv,
            count: 1,
            elem_flags: 0,
            flags: 0,
        };
        assert_eq!(o.lookup_batch(&mut a), Err(Errno::ENOSPC));
        assert_eq!((a.count, u32::from_ne_bytes(out)), (0, 2));
        // Row 69. kernel 6.18: BPF_F_LOCK in elem_flags: EINVAL for every batch, count left
        // as passed.
        for cmd in ["lookup", "lookup_and_delete", "update", "delete"] {
            let b = run_batch(&o, cmd, &keys[..1], &fds[..1], 1, BPF_F_LOCK);
            assert_eq!((b.r, b.count), (Err(Errno::EINVAL), 1), "{cmd}");
        }
        // Row 68. kernel 6.18: delete_batch stops at the first missing key: ENOENT, count 1.
        let b = run_batch(&o, "delete", &[6, 55], &[], 2, 0);
        assert_eq!((b.r, b.count), (Err(Errno::ENOENT), 1));
        assert_eq!(id_of(&o, 6), Err(Errno::ENOENT));
        // Row 67. kernel 6.18: lookup_and_delete_batch returns ids and empties the table.
        let base = inners[0].map().refcnt();
        let b = run_batch(&o, "lookup_and_delete", &[], &[], 20, 0);
        assert_eq!((b.r, b.count), (Err(Errno::ENOENT), 7));
        assert_eq!(b.keys, [0, 4, 7, 2, 1, 5, 3]);
        assert_eq!(
            b.values,
            b.keys.iter().map(|&i| ids[i as usize]).collect::<Vec<_>>()
        );
        assert!(walk(&o).is_empty());
        assert_eq!(inners[0].map().refcnt(), base - 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Program side and lifetimes (rows 72-74)
// ---------------------------------------------------------------------------------------------

#[test]
fn program_side_lookup() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let o = rt.map_create(&hom(4, &t)).unwrap();
    let inner = rt.map_create(&hash(4)).unwrap();
    inner
        .update_elem(Some(&k(3)), &33u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    o.update_elem(Some(&k(1)), &fd(&inner), BPF_ANY).unwrap();
    let reader = rt.rcu().normal.register();
    let guard = reader.read_lock();
    let m = hash_of_maps_lookup(o.map(), &guard, &k(1)).unwrap();
    assert_eq!(m.id(), inner.id());
    let v = m.ops().lookup_elem(m, &PROG, &k(3)).unwrap();
    // SAFETY: an 8-byte value of a preallocated inner map, alive for the guard.
    let got = unsafe { core::ptr::read_volatile(v.as_ptr() as *const u64) };
    assert_eq!(got, 33);
    assert!(hash_of_maps_lookup(o.map(), &guard, &k(2)).is_none());
    // The raw op returns the same pointer; other program-side ops are refused.
    let p = o.map().ops().lookup_elem(o.map(), &PROG, &k(1)).unwrap();
    assert_eq!(p.as_ptr() as *const bpfnest_maps::BpfMap, m as *const _);
    assert!(o
        .map()
        .ops()
        .lookup_percpu_elem(o.map(), &k(1), 0)
        .is_none());
    assert_eq!(
        o.map()
            .ops()
            .update_elem(o.map(), &PROG, &k(1), &fd(&inner), BPF_ANY),
        Err(Errno::EINVAL)
    );
    let mut n = 0;
    assert_eq!(
        o.map()
            .ops()
            .for_each_callback(o.map(), &PROG, &mut |_, _| {
                n += 1;
                false
            }),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(o.map().ops().mmap(o.map()).unwrap_err(), Errno::ENOTSUPP);
    // A tasks-trace section protects inner maps only while a sleepable program uses the map.
    let tt = rt.rcu().tasks_trace.register();
    let g2 = tt.read_lock();
    assert!(hash_of_maps_lookup(o.map(), &g2, &k(1)).is_none());
    o.map().inc_sleepable();
    assert!(hash_of_maps_lookup(o.map(), &g2, &k(1)).is_some());
    o.map().dec_sleepable();
    // Not a hash of maps.
    assert!(hash_of_maps_lookup(inner.map(), &guard, &k(3)).is_none());
}

#[test]
fn closed_inner_handle_row_72() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let o = rt.map_create(&hom(4, &t)).unwrap();
    let inner = rt.map_create(&hash(4)).unwrap();
    let id = inner.id();
    o.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY).unwrap();
    // kernel 6.18: closing the last handle leaves the map alive and resolvable by id.
    drop(inner);
    assert_eq!(id_of(&o, 0), Ok(id));
    let again = rt.map_get_fd_by_id(id, 0).unwrap();
    assert_eq!(again.map().usercnt(), 1);
}

#[test]
fn deleted_inner_goes_at_once_but_is_freed_after_readers_row_73() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let o = rt.map_create(&hom(4, &t).flags(BPF_F_NO_PREALLOC)).unwrap();
    let inner = rt.map_create(&hash(4)).unwrap();
    let id = inner.id();
    o.update_elem(Some(&k(0)), &fd(&inner), BPF_ANY).unwrap();
    drop(inner);
    let reader = rt.rcu().normal.register();
    std::thread::scope(|s| {
        let guard = reader.read_lock();
        let m = hash_of_maps_lookup(o.map(), &guard, &k(0)).unwrap();
        assert_eq!(m.id(), id);
        // The delete unlinks, drops the last reference after the bucket lock, then waits for
        // readers before returning: it cannot return while `guard` is held.
        let deleter = s.spawn(|| o.delete_elem(Some(&k(0))));
        // spec [E: L2]: the id disappears when the last reference is dropped.
        let t0 = Instant::now();
        while rt.map_get_fd_by_id(id, 0).is_ok() {
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
    assert_eq!(id_of(&o, 0), Err(Errno::ENOENT));
}

#[test]
fn replaced_inner_is_released_after_the_update_row_46() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    let o = rt.map_create(&hom(4, &t)).unwrap();
    let old = rt.map_create(&hash(4)).unwrap();
    let new = rt.map_create(&hash(4)).unwrap();
    let old_id = old.id();
    o.update_elem(Some(&k(0)), &fd(&old), BPF_ANY).unwrap();
    drop(old);
    assert!(rt.map_get_fd_by_id(old_id, 0).is_ok());
    o.update_elem(Some(&k(0)), &fd(&new), BPF_EXIST).unwrap();
    assert_eq!(
        rt.map_get_fd_by_id(old_id, 0).map(|_| ()),
        Err(Errno::ENOENT)
    );
    assert_eq!(id_of(&o, 0), Ok(new.id()));
}

#[test]
fn outer_freed_releases_inners_row_74() {
    let rt = rt();
    let t = rt.map_create(&hash(4)).unwrap();
    for flags in [0, BPF_F_NO_PREALLOC] {
        let o = rt.map_create(&hom(4, &t).flags(flags)).unwrap();
        let lone = rt.map_create(&hash(4)).unwrap();
        let kept = rt.map_create(&hash(4)).unwrap();
        let (lone_id, kept_id) = (lone.id(), kept.id());
        o.update_elem(Some(&k(0)), &fd(&lone), BPF_ANY).unwrap();
        o.update_elem(Some(&k(3)), &fd(&kept), BPF_ANY).unwrap();
        drop(lone);
        assert!(rt.map_get_fd_by_id(lone_id, 0).is_ok());
        // kernel 6.18: closing the outer map's last handle releases every inner map without
        // deferral.
        let before = kept.map().refcnt();
        drop(o);
        assert_eq!(
            rt.map_get_fd_by_id(lone_id, 0).map(|_| ()),
            Err(Errno::ENOENT)
        );
        assert_eq!(kept.map().refcnt(), before - 1);
        assert_eq!(rt.map_get_fd_by_id(kept_id, 0).unwrap().id(), kept_id);
    }
}

#[test]
fn readers_race_replacements() {
    // Readers dereference inner maps and their values inside read-side sections while a writer
    // replaces and deletes slots of a NO_PREALLOC outer map with fresh inner maps.
    const SLOTS: u32 = 4;
    let rt = rt();
    let t = rt.map_create(&hash(8)).unwrap();
    let o = Arc::new(
        rt.map_create(&hom(SLOTS, &t).flags(BPF_F_NO_PREALLOC))
            .unwrap(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (o, stop) = (o.clone(), stop.clone());
            std::thread::spawn(move || {
                let r = o.map().rcu().normal.register();
                let mut seen = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let g = r.read_lock();
                    for s in 0..SLOTS {
                        if let Some(m) = hash_of_maps_lookup(o.map(), &g, &k(s)) {
                            if let Some(v) = m.ops().lookup_elem(m, &PROG, &k(1)) {
                                // SAFETY: inside the section that found the inner map.
                                let x =
                                    unsafe { core::ptr::read_volatile(v.as_ptr() as *const u64) };
                                assert_eq!(x, 0x1234_5678);
                                seen += 1;
                            }
                        }
                    }
                }
                seen
            })
        })
        .collect();
    for i in 0..400u32 {
        let s = i % SLOTS;
        if i % 5 == 4 {
            let _ = o.delete_elem(Some(&k(s)));
        } else {
            let inner = rt.map_create(&hash(8)).unwrap();
            inner
                .update_elem(Some(&k(1)), &0x1234_5678u64.to_ne_bytes(), BPF_ANY)
                .unwrap();
            o.update_elem(Some(&k(s)), &fd(&inner), BPF_ANY).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    rt.rcu_barrier();
}

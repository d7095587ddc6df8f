// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Map-in-map on both backends: spec §8 rows and the lifetime rules, compared step by step.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{MapAttr, MapBackend};
use kdiff::{diff, k, DynBackend, Trace};

fn lookup_id(m: &dyn MapBackend, key: u32) -> Result<u32, bpfnest::Errno> {
    let mut v = [0u8; 4];
    m.lookup_elem(Some(&k(key)), &mut v, 0)
        .map(|()| u32::from_ne_bytes(v))
}

fn create_rows(b: &dyn DynBackend, t: &mut Trace) {
    let tmpl = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    for outer in [BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS] {
        let a = |k, v, n| MapAttr::new(outer, k, v, n).inner_map(tmpl.raw());
        t.rec("valid", b.create(&a(4, 4, 2)).map(|_| ()));
        t.rec("map_extra", b.create(&a(4, 4, 2).extra(1)).map(|_| ()));
        t.rec("value_size 8", b.create(&a(4, 8, 2)).map(|_| ()));
        t.rec(
            "value_size 8 + bad fd",
            b.create(&a(4, 8, 2).inner_map(9999)).map(|_| ()),
        );
        t.rec("key_size 8", b.create(&a(8, 4, 2)).map(|_| ()));
        t.rec("key_size 0", b.create(&a(0, 4, 2)).map(|_| ()));
        t.rec("max_entries 0", b.create(&a(4, 4, 0)).map(|_| ()));
        for f in [
            BPF_F_NO_PREALLOC,
            BPF_F_MMAPABLE,
            BPF_F_INNER_MAP,
            BPF_F_RDONLY_PROG,
            BPF_F_WRONLY_PROG,
            BPF_F_NO_COMMON_LRU,
            BPF_F_RDONLY,
            BPF_F_PRESERVE_ELEMS,
        ] {
            t.rec(
                &format!("flag {f:#x}"),
                b.create(&a(4, 4, 2).flags(f)).map(|m| m.info().map_flags),
            );
        }
        t.rec(
            "inner fd not open",
            b.create(&a(4, 4, 2).inner_map(9999)).map(|_| ()),
        );
        t.rec(
            "inner fd -1",
            b.create(&a(4, 4, 2).inner_map(u32::MAX)).map(|_| ()),
        );
        t.rec(
            "inner fd 0 (not a map)",
            b.create(&a(4, 4, 2).inner_map(0)).map(|_| ()),
        );
        let nested = b.create(&a(4, 4, 2)).unwrap();
        t.rec(
            "template is an outer map",
            b.create(&a(4, 4, 2).inner_map(nested.raw())).map(|_| ()),
        );
        let pa = b
            .create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 2))
            .unwrap();
        t.rec(
            "template is a prog array",
            b.create(&a(4, 4, 2).inner_map(pa.raw())).map(|_| ()),
        );
    }
    // Other types ignore inner_map_fd entirely (spec row 21).
    t.rec(
        "array with garbage inner fd",
        b.create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2).inner_map(9999))
            .map(|_| ()),
    );
}

fn template_rules(b: &dyn DynBackend, t: &mut Trace) {
    let shapes = [
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_INNER_MAP),
        MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_LRU_HASH, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_LRU_PERCPU_HASH, 4, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_STACK, 0, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4).flags(BPF_F_NO_PREALLOC),
        MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 4),
        MapAttr::new(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096),
        MapAttr::new(BPF_MAP_TYPE_LPM_TRIE, 8, 8, 4).flags(BPF_F_NO_PREALLOC),
    ];
    for (i, tmpl_attr) in shapes.iter().enumerate() {
        let tmpl = b.create(tmpl_attr).unwrap();
        let outer = b
            .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw()))
            .unwrap();
        drop(tmpl); // the outer map keeps its own copy (spec row 24)
        for (j, cand_attr) in shapes.iter().enumerate() {
            for max in [4, 8] {
                let mut a = *cand_attr;
                if a.map_type != BPF_MAP_TYPE_RINGBUF {
                    a.max_entries = max;
                }
                let cand = b.create(&a).unwrap();
                t.rec(
                    &format!("template {i} candidate {j} max {max}"),
                    outer.update_elem(Some(&k(0)), &cand.raw().to_ne_bytes(), BPF_ANY),
                );
            }
        }
    }
}

fn update_rows(b: &dyn DynBackend, t: &mut Trace) {
    let tmpl = b.create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4)).unwrap();
    let inner = b.create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4)).unwrap();
    let not_map_fd = 0u32;
    for outer_t in [BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS] {
        // ZERO_SEED makes hash iteration order reproducible on both sides (AOM refuses it).
        let seed = if outer_t == BPF_MAP_TYPE_HASH_OF_MAPS {
            BPF_F_ZERO_SEED
        } else {
            0
        };
        let o = b
            .create(
                &MapAttr::new(outer_t, 4, 4, 2)
                    .inner_map(tmpl.raw())
                    .flags(seed),
            )
            .unwrap();
        let fd = inner.raw().to_ne_bytes();
        for flags in [BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3, BPF_F_LOCK] {
            for key in [0u32, 1, 5] {
                t.rec(
                    &format!("{outer_t} update key {key} flags {flags}"),
                    o.update_elem(Some(&k(key)), &fd, flags),
                );
            }
        }
        t.rec(
            "bad fd + bad flags",
            o.update_elem(Some(&k(0)), &9999u32.to_ne_bytes(), 3),
        );
        t.rec(
            "not a map",
            o.update_elem(Some(&k(0)), &not_map_fd.to_ne_bytes(), BPF_ANY),
        );
        t.rec(
            "itself",
            o.update_elem(Some(&k(0)), &o.raw().to_ne_bytes(), BPF_ANY),
        );
        for key in [0u32, 1, 5] {
            t.rec_id(&format!("lookup {key}"), lookup_id(&*o, key));
        }
        t.rec(
            "lookup F_LOCK",
            o.lookup_elem(Some(&k(0)), &mut [0u8; 4], BPF_F_LOCK),
        );
        t.rec(
            "lookup flags 1",
            o.lookup_elem(Some(&k(0)), &mut [0u8; 4], 1),
        );
        t.rec(
            "lookup_and_delete",
            o.lookup_and_delete_elem(Some(&k(0)), &mut [0u8; 4], 0),
        );
        let mut nk = [0u8; 4];
        for key in [None, Some(0u32), Some(1), Some(7)] {
            let r = o
                .get_next_key(key.map(k).as_ref().map(|x| &x[..]), &mut nk)
                .map(|()| u32::from_ne_bytes(nk));
            t.rec(&format!("next_key {key:?}"), r);
        }
        for key in [0u32, 1, 5] {
            t.rec(&format!("delete {key}"), o.delete_elem(Some(&k(key))));
        }
        t.rec("freeze", o.freeze());
        t.rec("update frozen", o.update_elem(Some(&k(0)), &fd, BPF_ANY));
    }
}

fn lifetimes(b: &dyn DynBackend, t: &mut Trace) {
    let tmpl = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    let o = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw()))
        .unwrap();
    let tmpl_id = tmpl.info().id;
    t.id(tmpl_id);
    drop(tmpl);
    t.rec(
        "template gone after close",
        b.get_by_id(tmpl_id).map(|_| ()),
    );
    let inner = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    inner
        .update_elem(Some(&k(1)), &42u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let id = inner.info().id;
    t.id(id);
    t.rec(
        "insert",
        o.update_elem(Some(&k(0)), &inner.raw().to_ne_bytes(), BPF_ANY),
    );
    drop(inner);
    // Row 72: the inner map lives on in the slot, resolvable by id, with its values.
    let again = b.get_by_id(id);
    t.rec(
        "inner alive by id",
        again.as_ref().map(|_| ()).map_err(|e| *e),
    );
    if let Ok(m) = again {
        let mut v = [0u8; 8];
        t.rec(
            "value kept",
            m.lookup_elem(Some(&k(1)), &mut v, 0)
                .map(|()| u64::from_ne_bytes(v)),
        );
    }
    t.rec_id("slot", lookup_id(&*o, 0));
    // Row 73: deleting the slot drops the last reference; the id disappears.
    t.rec("delete", o.delete_elem(Some(&k(0))));
    t.rec("inner gone", b.get_by_id(id).map(|_| ()));
    // Row 74: closing the outer releases the inners it held.
    let second = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    let id2 = second.info().id;
    t.id(id2);
    t.rec(
        "insert 2",
        o.update_elem(Some(&k(1)), &second.raw().to_ne_bytes(), BPF_ANY),
    );
    drop(second);
    drop(o);
    // The kernel frees from a workqueue: give both sides the same chance to finish.
    let mut gone = false;
    for _ in 0..200 {
        if b.get_by_id(id2).is_err() {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    t.rec(
        "inner released with the outer",
        Ok::<bool, bpfnest::Errno>(gone),
    );
}

/// Spec §8 rows 62–69: batches on both outer types (ids out, handles in, holes skipped,
/// ENOTSUPP for array-of-maps delete batches, BPF_F_LOCK refused).
fn batch_rows(b: &dyn DynBackend, t: &mut Trace) {
    let tmpl = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2))
        .unwrap();
    let inners: Vec<_> = (0..3)
        .map(|_| {
            b.create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2))
                .unwrap()
        })
        .collect();
    for id in inners.iter().map(|m| m.info().id) {
        t.id(id);
    }
    for outer_t in [BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS] {
        let seed = if outer_t == BPF_MAP_TYPE_HASH_OF_MAPS {
            BPF_F_ZERO_SEED
        } else {
            0
        };
        let o = b
            .create(
                &MapAttr::new(outer_t, 4, 4, 4)
                    .inner_map(tmpl.raw())
                    .flags(seed),
            )
            .unwrap();
        // Keys 0, 2, 3 (a hole at 1); values are handles going in.
        let mut keys: Vec<u8> = [0u32, 2, 3].iter().flat_map(|x| x.to_ne_bytes()).collect();
        let mut vals: Vec<u8> = inners.iter().flat_map(|m| m.raw().to_ne_bytes()).collect();
        for elem_flags in [BPF_NOEXIST, BPF_F_LOCK, 0] {
            let mut out = [0u8; 4];
            let mut a = bpfnest::BatchArgs {
                in_batch: None,
                out_batch: &mut out,
                keys: &mut keys,
                values: &mut vals,
                count: 3,
                elem_flags,
                flags: 0,
            };
            let r = o.update_batch(&mut a);
            t.rec(
                &format!("{outer_t} update_batch elem_flags {elem_flags}"),
                r.map(|()| a.count),
            );
        }
        for (name, del) in [("lookup", false), ("lookup_and_delete", true)] {
            for elem_flags in [BPF_F_LOCK, 0] {
                let mut out = [0u8; 4];
                let mut k = vec![0u8; 16];
                let mut v = vec![0u8; 16];
                let mut a = bpfnest::BatchArgs {
                    in_batch: None,
                    out_batch: &mut out,
                    keys: &mut k,
                    values: &mut v,
                    count: 4,
                    elem_flags,
                    flags: 0,
                };
                let r = if del {
                    o.lookup_and_delete_batch(&mut a)
                } else {
                    o.lookup_batch(&mut a)
                };
                let n = a.count as usize;
                let mut got = Vec::new();
                if r.is_ok() || r == Err(bpfnest::Errno::ENOENT) {
                    for i in 0..n {
                        let key = u32::from_ne_bytes(k[i * 4..i * 4 + 4].try_into().unwrap());
                        let id = u32::from_ne_bytes(v[i * 4..i * 4 + 4].try_into().unwrap());
                        got.push(format!("{key}->{}", t.id(id)));
                    }
                }
                t.rec(
                    &format!("{outer_t} {name}_batch elem_flags {elem_flags}"),
                    r,
                );
                t.events.push(format!("  count {n}: {got:?}"));
            }
        }
        let mut out = [0u8; 4];
        let mut dk: Vec<u8> = [0u32, 9].iter().flat_map(|x| x.to_ne_bytes()).collect();
        let mut dv = vec![0u8; 8];
        let mut a = bpfnest::BatchArgs {
            in_batch: None,
            out_batch: &mut out,
            keys: &mut dk,
            values: &mut dv,
            count: 2,
            elem_flags: 0,
            flags: 0,
        };
        let r = o.delete_batch(&mut a);
        t.rec(&format!("{outer_t} delete_batch"), r.map(|()| a.count));
        t.events.push(format!("  count {}", a.count));
    }
}

/// PROG_ARRAY without programs: create errno, updates with non-program handles, empty-slot
/// lookups and deletes, batches, template refusal.
fn prog_array_rows(b: &dyn DynBackend, t: &mut Trace) {
    for (ks, vs, n) in [(4, 4, 4), (8, 4, 4), (4, 8, 4), (4, 4, 0)] {
        t.rec(
            &format!("prog_array create k{ks} v{vs} n{n}"),
            b.create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, ks, vs, n))
                .map(|_| ()),
        );
    }
    for bit in 0..=12u32 {
        t.rec(
            &format!("prog_array flag bit {bit}"),
            b.create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4).flags(1 << bit))
                .map(|m| m.info().map_flags),
        );
    }
    let pa = b
        .create(&MapAttr::new(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4))
        .unwrap();
    let not_prog = b
        .create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    for (what, fd) in [
        ("map handle", not_prog.raw()),
        ("closed", 9999),
        ("stdin", 0),
    ] {
        for flags in [BPF_ANY, BPF_NOEXIST] {
            for key in [0u32, 4] {
                t.rec(
                    &format!("update {what} flags {flags} key {key}"),
                    pa.update_elem(Some(&k(key)), &fd.to_ne_bytes(), flags),
                );
            }
        }
    }
    for key in [0u32, 4] {
        t.rec(
            &format!("lookup {key}"),
            pa.lookup_elem(Some(&k(key)), &mut [0u8; 4], 0),
        );
        t.rec(&format!("delete {key}"), pa.delete_elem(Some(&k(key))));
    }
    let mut nk = [0u8; 4];
    t.rec("next_key", pa.get_next_key(None, &mut nk).map(|()| nk));
    let mut out = [0u8; 4];
    let (mut kk, mut vv) = (vec![0u8; 8], vec![0u8; 8]);
    let mut a = bpfnest::BatchArgs {
        in_batch: None,
        out_batch: &mut out,
        keys: &mut kk,
        values: &mut vv,
        count: 2,
        elem_flags: 0,
        flags: 0,
    };
    t.rec("lookup_batch", pa.lookup_batch(&mut a).map(|()| a.count));
    t.rec("freeze", pa.freeze());
    t.rec(
        "as a template",
        b.create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(pa.raw()))
            .map(|_| ()),
    );
}

#[test]
fn kdiff_map_in_map_batches() {
    diff("outer-map batches", batch_rows);
}

#[test]
fn kdiff_prog_array_without_programs() {
    diff("prog_array", prog_array_rows);
}

#[test]
fn kdiff_map_in_map_create() {
    diff("create", create_rows);
}

#[test]
fn kdiff_map_in_map_template_rules() {
    diff("template rules", template_rules);
}

#[test]
fn kdiff_map_in_map_update_lookup_delete() {
    diff("update/lookup/delete", update_rows);
}

#[test]
fn kdiff_map_in_map_lifetimes() {
    diff("lifetimes", lifetimes);
}

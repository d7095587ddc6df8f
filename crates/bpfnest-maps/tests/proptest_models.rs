// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Property tests: random operation sequences on each keyed map type, checked op by op against
//! a plain model of the kernel's semantics (values and errno), plus outer maps against a model
//! of slots holding inner-map ids.

use std::collections::BTreeMap;

use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, Errno, MapAttr, MapHandle, Runtime};
use proptest::prelude::*;

const CAP: u32 = 8;

#[derive(Clone, Debug)]
enum Op {
    Update(u32, u64, u64),
    Lookup(u32),
    Delete(u32),
    LookupAndDelete(u32),
    NextKey(Option<u32>),
}

fn op() -> impl Strategy<Value = Op> {
    let key = 0u32..12;
    prop_oneof![
        4 => (key.clone(), any::<u64>(), prop_oneof![Just(BPF_ANY), Just(BPF_NOEXIST), Just(BPF_EXIST), Just(3u64)])
            .prop_map(|(k, v, f)| Op::Update(k, v, f)),
        3 => key.clone().prop_map(Op::Lookup),
        2 => key.clone().prop_map(Op::Delete),
        1 => key.clone().prop_map(Op::LookupAndDelete),
        1 => proptest::option::of(key).prop_map(Op::NextKey),
    ]
}

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn b(k: u32) -> [u8; 4] {
    k.to_ne_bytes()
}

/// Hash semantics: flags > EXIST EINVAL, NOEXIST/EEXIST, EXIST/ENOENT, full E2BIG (replacement
/// of an existing key always allowed), delete/lookup ENOENT for missing keys.
fn check_hash(h: &MapHandle, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model: BTreeMap<u32, u64> = BTreeMap::new();
    for op in ops {
        match *op {
            Op::Update(k, v, f) => {
                let want = if f > BPF_EXIST {
                    Err(Errno::EINVAL)
                } else if f == BPF_NOEXIST && model.contains_key(&k) {
                    Err(Errno::EEXIST)
                } else if f == BPF_EXIST && !model.contains_key(&k) {
                    Err(Errno::ENOENT)
                } else if !model.contains_key(&k) && model.len() as u32 >= CAP {
                    Err(Errno::E2BIG)
                } else {
                    model.insert(k, v);
                    Ok(())
                };
                prop_assert_eq!(
                    h.update_elem(Some(&b(k)), &v.to_ne_bytes(), f),
                    want,
                    "{:?}",
                    op
                );
            }
            Op::Lookup(k) => {
                let mut out = [0u8; 8];
                let r = h
                    .lookup_elem(Some(&b(k)), &mut out, 0)
                    .map(|()| u64::from_ne_bytes(out));
                prop_assert_eq!(r, model.get(&k).copied().ok_or(Errno::ENOENT));
            }
            Op::Delete(k) => {
                let want = model.remove(&k).map(|_| ()).ok_or(Errno::ENOENT);
                prop_assert_eq!(h.delete_elem(Some(&b(k))), want);
            }
            Op::LookupAndDelete(k) => {
                let mut out = [0u8; 8];
                let r = h
                    .lookup_and_delete_elem(Some(&b(k)), &mut out, 0)
                    .map(|()| u64::from_ne_bytes(out));
                prop_assert_eq!(r, model.remove(&k).ok_or(Errno::ENOENT));
            }
            Op::NextKey(start) => {
                // Walking from the start visits every key exactly once.
                let _ = start;
                let mut seen = Vec::new();
                let mut prev: Option<[u8; 4]> = None;
                let mut next = [0u8; 4];
                while h
                    .get_next_key(prev.as_ref().map(|p| &p[..]), &mut next)
                    .is_ok()
                {
                    seen.push(u32::from_ne_bytes(next));
                    prev = Some(next);
                    prop_assert!(seen.len() <= model.len(), "walk longer than the map");
                }
                seen.sort_unstable();
                prop_assert_eq!(seen, model.keys().copied().collect::<Vec<_>>());
            }
        }
    }
    Ok(())
}

/// Array semantics: every index < max exists; NOEXIST EEXIST; index E2BIG; delete EINVAL;
/// lookup-and-delete ENOTSUPP; next key k+1.
fn check_array(h: &MapHandle, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = vec![0u64; CAP as usize];
    for op in ops {
        match *op {
            Op::Update(k, v, f) => {
                let want = if f > BPF_EXIST {
                    Err(Errno::EINVAL)
                } else if k >= CAP {
                    Err(Errno::E2BIG)
                } else if f == BPF_NOEXIST {
                    Err(Errno::EEXIST)
                } else {
                    model[k as usize] = v;
                    Ok(())
                };
                prop_assert_eq!(
                    h.update_elem(Some(&b(k)), &v.to_ne_bytes(), f),
                    want,
                    "{:?}",
                    op
                );
            }
            Op::Lookup(k) => {
                let mut out = [0u8; 8];
                let r = h
                    .lookup_elem(Some(&b(k)), &mut out, 0)
                    .map(|()| u64::from_ne_bytes(out));
                prop_assert_eq!(r, model.get(k as usize).copied().ok_or(Errno::ENOENT));
            }
            Op::Delete(k) => prop_assert_eq!(h.delete_elem(Some(&b(k))), Err(Errno::EINVAL)),
            Op::LookupAndDelete(k) => {
                prop_assert_eq!(
                    h.lookup_and_delete_elem(Some(&b(k)), &mut [0u8; 8], 0),
                    Err(Errno::ENOTSUPP)
                )
            }
            Op::NextKey(start) => {
                let mut next = [0u8; 4];
                let r = h
                    .get_next_key(start.map(b).as_ref().map(|p| &p[..]), &mut next)
                    .map(|()| u32::from_ne_bytes(next));
                let want = match start {
                    Some(s) if s + 1 == CAP => Err(Errno::ENOENT),
                    Some(s) if s < CAP => Ok(s + 1),
                    _ => Ok(0),
                };
                prop_assert_eq!(r, want);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn hash_prealloc_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let h = rt().map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, CAP)).unwrap();
        check_hash(&h, &ops)?;
    }

    #[test]
    fn hash_no_prealloc_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let h = rt().map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, CAP).flags(BPF_F_NO_PREALLOC)).unwrap();
        check_hash(&h, &ops)?;
    }

    #[test]
    fn array_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        let h = rt().map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, CAP)).unwrap();
        check_array(&h, &ops)?;
    }

    /// Outer maps: slots hold inner ids; stale handles give EBADF, non-maps EINVAL, wrong
    /// shapes EINVAL; ids of removed inner maps disappear once nothing holds them.
    #[test]
    fn outer_maps_match_model(
        hash_outer in any::<bool>(),
        ops in proptest::collection::vec((0u32..6, 0u8..6), 1..80),
    ) {
        let rt = rt();
        let tmpl = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2)).unwrap();
        let t = if hash_outer { BPF_MAP_TYPE_HASH_OF_MAPS } else { BPF_MAP_TYPE_ARRAY_OF_MAPS };
        let outer = rt.map_create(&MapAttr::new(t, 4, 4, 4).inner_map(tmpl.raw())).unwrap();
        drop(tmpl);
        let mut model: BTreeMap<u32, u32> = BTreeMap::new();
        let mut live: Vec<MapHandle> = Vec::new();
        for (key, what) in ops {
            match what {
                0 | 1 => {
                    // Insert a fresh compatible inner map (its handle closed right after for 1).
                    let inner = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2)).unwrap();
                    // Array: index out of range. Hash: a new key in a full table.
                    let full = if hash_outer {
                        !model.contains_key(&key) && model.len() >= 4
                    } else {
                        key >= 4
                    };
                    let want = if full {
                        Err(Errno::E2BIG)
                    } else {
                        model.insert(key, inner.id());
                        Ok(())
                    };
                    prop_assert_eq!(outer.update_elem(Some(&b(key)), &inner.raw().to_ne_bytes(), BPF_ANY), want);
                    if what == 0 { live.push(inner); }
                }
                2 => {
                    // A stale handle number: EBADF (hash: checked first; array: after the index).
                    let stale = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2)).unwrap();
                    let n = stale.raw();
                    drop(stale);
                    let want = if !hash_outer && key >= 4 { Errno::E2BIG } else { Errno::EBADF };
                    prop_assert_eq!(outer.update_elem(Some(&b(key)), &n.to_ne_bytes(), BPF_ANY), Err(want));
                }
                3 => {
                    // Wrong shape or not a map: EINVAL.
                    let wrong = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 16, 2)).unwrap();
                    let other = rt.open_other();
                    let want = if !hash_outer && key >= 4 { Errno::E2BIG } else { Errno::EINVAL };
                    prop_assert_eq!(outer.update_elem(Some(&b(key)), &wrong.raw().to_ne_bytes(), BPF_ANY), Err(want));
                    prop_assert_eq!(outer.update_elem(Some(&b(key)), &other.raw().to_ne_bytes(), BPF_ANY), Err(want));
                }
                4 => {
                    let want = if !hash_outer && key >= 4 {
                        Err(Errno::E2BIG)
                    } else {
                        model.remove(&key).map(|_| ()).ok_or(Errno::ENOENT)
                    };
                    prop_assert_eq!(outer.delete_elem(Some(&b(key))), want);
                }
                _ => {
                    let mut id = [0u8; 4];
                    let r = outer.lookup_elem(Some(&b(key)), &mut id, 0).map(|()| u32::from_ne_bytes(id));
                    prop_assert_eq!(r, model.get(&key).copied().ok_or(Errno::ENOENT));
                }
            }
        }
        // Every id in a slot resolves; after the outer map goes, only maps with handles remain.
        for id in model.values() {
            prop_assert!(rt.map_get_fd_by_id(*id, 0).is_ok());
        }
        drop(outer);
        rt.rcu_barrier();
        let mut remaining = Vec::new();
        let mut cur = 0;
        while let Ok(id) = rt.map_get_next_id(cur) {
            remaining.push(id);
            cur = id;
        }
        let mut held: Vec<u32> = live.iter().map(|h| h.id()).collect();
        held.sort_unstable();
        prop_assert_eq!(remaining, held);
    }
}

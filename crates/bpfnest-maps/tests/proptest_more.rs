// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Property tests for the map types `proptest_models.rs` does not cover: queue and stack
//! against a deque, bloom filters (no false negatives), per-CPU hashes against a model of one
//! value per CPU, and LRU hashes (never more than max_entries, the newest key always present).

use std::collections::{BTreeMap, VecDeque};

use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, Errno, MapAttr, Runtime};
use proptest::prelude::*;

fn rt(nr_cpus: u32) -> Runtime {
    Runtime::new(Config {
        nr_cpus,
        ..Config::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Queue and stack: push (ANY: E2BIG when full; EXIST: drop the oldest), pop, peek.
    #[test]
    fn queue_stack_match_deque(
        stack in any::<bool>(),
        ops in proptest::collection::vec((0u8..4, any::<u32>()), 1..150),
    ) {
        const CAP: usize = 5;
        let t = if stack { BPF_MAP_TYPE_STACK } else { BPF_MAP_TYPE_QUEUE };
        let h = rt(2).map_create(&MapAttr::new(t, 0, 4, CAP as u32)).unwrap();
        let mut model: VecDeque<u32> = VecDeque::new();
        for (what, v) in ops {
            let mut out = [0u8; 4];
            match what {
                0 | 1 => {
                    let flags = if what == 0 { BPF_ANY } else { BPF_EXIST };
                    let want = if model.len() == CAP && flags == BPF_ANY {
                        Err(Errno::E2BIG)
                    } else {
                        if model.len() == CAP {
                            model.pop_front(); // the oldest goes, for stacks too
                        }
                        model.push_back(v);
                        Ok(())
                    };
                    prop_assert_eq!(h.update_elem(None, &v.to_ne_bytes(), flags), want);
                }
                2 => {
                    let want = if stack { model.pop_back() } else { model.pop_front() };
                    let r = h.lookup_and_delete_elem(None, &mut out, 0).map(|()| u32::from_ne_bytes(out));
                    prop_assert_eq!(r, want.ok_or(Errno::ENOENT));
                }
                _ => {
                    let want = if stack { model.back() } else { model.front() };
                    let r = h.lookup_elem(None, &mut out, 0).map(|()| u32::from_ne_bytes(out));
                    prop_assert_eq!(r, want.copied().ok_or(Errno::ENOENT));
                }
            }
        }
    }

    /// Bloom filters never give a false negative.
    #[test]
    fn bloom_has_no_false_negatives(
        values in proptest::collection::vec(any::<u64>(), 1..200),
        hashes in 1u64..16,
        seeded in any::<bool>(),
    ) {
        let flags = if seeded { 0 } else { BPF_F_ZERO_SEED };
        let h = rt(2)
            .map_create(&MapAttr::new(BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 64).flags(flags).extra(hashes))
            .unwrap();
        for v in &values {
            h.update_elem(None, &v.to_ne_bytes(), BPF_ANY).unwrap();
        }
        for v in &values {
            let mut probe = v.to_ne_bytes();
            prop_assert_eq!(h.lookup_elem(None, &mut probe, 0), Ok(()));
        }
    }

    /// Per-CPU hash: syscall updates set every CPU's value; lookups return them all.
    #[test]
    fn percpu_hash_matches_model(
        ops in proptest::collection::vec((0u32..6, proptest::option::of(proptest::collection::vec(any::<u32>(), 3))), 1..80),
    ) {
        let h = rt(3).map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_HASH, 4, 4, 4)).unwrap();
        let mut model: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (k, vals) in ops {
            let key = k.to_ne_bytes();
            match vals {
                Some(vals) => {
                    // The kernel's layout: each CPU's 4-byte value rounded up to 8 bytes.
                    let buf: Vec<u8> = vals.iter().flat_map(|v| [v.to_ne_bytes(), [0; 4]].concat()).collect();
                    let want = if !model.contains_key(&k) && model.len() >= 4 { Err(Errno::E2BIG) } else {
                        model.insert(k, vals.clone());
                        Ok(())
                    };
                    prop_assert_eq!(h.update_elem(Some(&key), &buf, BPF_ANY), want);
                }
                None => {
                    let mut out = [0u8; 24];
                    let r = h.lookup_elem(Some(&key), &mut out, 0).map(|()| {
                        out.chunks(8).map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>()
                    });
                    prop_assert_eq!(r, model.get(&k).cloned().ok_or(Errno::ENOENT));
                }
            }
        }
    }

    /// LRU hashes: inserts never fail for lack of room, the map never holds more than
    /// max_entries, and the key just written is always present.
    #[test]
    fn lru_never_overflows(
        percpu_lru in any::<bool>(),
        keys in proptest::collection::vec(0u32..64, 1..300),
    ) {
        let flags = if percpu_lru { BPF_F_NO_COMMON_LRU } else { 0 };
        let h = rt(2).map_create(&MapAttr::new(BPF_MAP_TYPE_LRU_HASH, 4, 8, 16).flags(flags)).unwrap();
        let max = h.info().max_entries as usize;
        for k in keys {
            prop_assert_eq!(h.update_elem(Some(&k.to_ne_bytes()), &u64::from(k).to_ne_bytes(), BPF_ANY), Ok(()));
            let mut out = [0u8; 8];
            prop_assert_eq!(h.lookup_elem(Some(&k.to_ne_bytes()), &mut out, 0), Ok(()));
            prop_assert_eq!(u64::from_ne_bytes(out), u64::from(k));
            let mut n = 0;
            let mut prev: Option<[u8; 4]> = None;
            let mut next = [0u8; 4];
            while h.get_next_key(prev.as_ref().map(|p| &p[..]), &mut next).is_ok() {
                n += 1;
                prev = Some(next);
                prop_assert!(n <= max);
            }
        }
    }
}

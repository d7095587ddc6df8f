// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Typed views: size checks at construction, ENOENT folded into None, errno kept otherwise.

use bpfnest::maps::{
    Array, ArrayOfMaps, BloomFilter, HashMap, HashOfMaps, Key, LpmTrie, MapError, PerCpuArray,
    PerCpuHashMap, PerCpuValues, Queue, Stack,
};
use bpfnest::uapi::*;
use bpfnest::{Config, Errno, MapAttr, Runtime};

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 3,
        ..Config::default()
    })
}

#[test]
fn construction_checks_type_and_sizes() {
    let rt = rt();
    let arr = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    assert_eq!(
        Array::<_, u32>::new(&arr).unwrap_err(),
        MapError::InvalidValueSize {
            size: 4,
            expected: 8
        }
    );
    assert_eq!(
        HashMap::<_, u32, u64>::new(&arr).unwrap_err(),
        MapError::InvalidMapType {
            map_type: BPF_MAP_TYPE_ARRAY
        }
    );
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 8, 8, 4))
        .unwrap();
    assert_eq!(
        HashMap::<_, u32, u64>::new(&h).unwrap_err(),
        MapError::InvalidKeySize {
            size: 4,
            expected: 8
        }
    );
    assert!(HashMap::<_, u64, u64>::new(&h).is_ok());
}

#[test]
fn array_and_hash() {
    let rt = rt();
    let mut arr = Array::<_, u64>::try_from(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
            .unwrap(),
    )
    .unwrap();
    arr.set(2, 7, BPF_ANY).unwrap();
    assert_eq!(
        arr.iter().collect::<Result<Vec<_>, _>>().unwrap(),
        vec![0, 0, 7, 0]
    );
    assert_eq!(
        arr.set(4, 1, BPF_ANY).unwrap_err().errno(),
        Some(Errno::E2BIG)
    );
    assert_eq!(
        arr.set(1, 1, BPF_NOEXIST).unwrap_err().errno(),
        Some(Errno::EEXIST)
    );

    let mut h = HashMap::<_, u32, u64>::try_from(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 2))
            .unwrap(),
    )
    .unwrap();
    h.insert(1, 10, BPF_ANY).unwrap();
    h.insert(2, 20, BPF_NOEXIST).unwrap();
    assert_eq!(
        h.insert(3, 30, BPF_ANY).unwrap_err().errno(),
        Some(Errno::E2BIG)
    );
    assert_eq!(h.get(&1, 0).unwrap(), Some(10));
    assert_eq!(h.get(&9, 0).unwrap(), None);
    let mut all: Vec<(u32, u64)> = h.iter().collect::<Result<_, _>>().unwrap();
    all.sort();
    assert_eq!(all, vec![(1, 10), (2, 20)]);
    h.remove(&1).unwrap();
    assert_eq!(h.remove(&1).unwrap_err().errno(), Some(Errno::ENOENT));
}

#[test]
fn per_cpu_views() {
    let rt = rt();
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2))
        .unwrap();
    let mut pa = PerCpuArray::<_, u32>::new(m).unwrap();
    pa.set(1, PerCpuValues::new(vec![1, 2, 3]), BPF_ANY)
        .unwrap();
    assert_eq!(&*pa.get(1, 0).unwrap(), &[1, 2, 3]);
    assert_eq!(
        pa.set(0, PerCpuValues::new(vec![1]), BPF_ANY).unwrap_err(),
        MapError::InvalidCpuCount { got: 1, nr_cpus: 3 }
    );
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 2))
        .unwrap();
    let mut ph = PerCpuHashMap::<_, u32, u64>::new(m).unwrap();
    ph.insert(5, PerCpuValues::new(vec![7, 8, 9]), BPF_ANY)
        .unwrap();
    assert_eq!(&*ph.get(&5, 0).unwrap().unwrap(), &[7, 8, 9]);
    assert_eq!(ph.keys().collect::<Result<Vec<_>, _>>().unwrap(), vec![5]);
}

#[test]
fn outer_views() {
    let rt = rt();
    let tmpl = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4))
        .unwrap();
    let mut outer = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw()))
        .unwrap();
    let mut aom = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw()))
        .unwrap();
    // A shared borrow gives a read-only view; writes need the handle mutably (aya's rule).
    assert_eq!(
        HashOfMaps::<_, u32>::new(&outer).unwrap().get(&3).unwrap(),
        None
    );
    let mut hom = HashOfMaps::<_, u32>::new(&mut outer).unwrap();
    hom.insert(3, &tmpl, BPF_NOEXIST).unwrap();
    assert_eq!(
        hom.insert(3, &tmpl, BPF_NOEXIST).unwrap_err().errno(),
        Some(Errno::EEXIST)
    );
    assert_eq!(hom.get(&3).unwrap(), Some(tmpl.id()));
    assert_eq!(hom.get(&4).unwrap(), None);
    assert_eq!(hom.keys().collect::<Result<Vec<_>, _>>().unwrap(), vec![3]);
    hom.remove(&3).unwrap();

    let mut slots = ArrayOfMaps::new(&mut aom).unwrap();
    assert_eq!(slots.len(), 2);
    slots.set(1, &tmpl, BPF_ANY).unwrap();
    assert_eq!(slots.get(1).unwrap(), Some(tmpl.id()));
    // kernel 6.18: NOEXIST on an array of maps is EINVAL, an index out of range E2BIG.
    assert_eq!(
        slots.set(0, &tmpl, BPF_NOEXIST).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        slots.set(2, &tmpl, BPF_ANY).unwrap_err().errno(),
        Some(Errno::E2BIG)
    );
    assert_eq!(slots.get(2).unwrap(), None);
    slots.clear_index(1).unwrap();
    assert_eq!(
        slots.clear_index(1).unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
}

#[test]
fn queue_stack_bloom_lpm() {
    let rt = rt();
    let mut q = Queue::<_, u32>::new(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 4, 2))
            .unwrap(),
    )
    .unwrap();
    q.push(1, BPF_ANY).unwrap();
    q.push(2, BPF_ANY).unwrap();
    assert_eq!(q.peek().unwrap(), Some(1));
    assert_eq!(q.pop().unwrap(), Some(1));
    let mut s = Stack::<_, u32>::new(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_STACK, 0, 4, 2))
            .unwrap(),
    )
    .unwrap();
    s.push(1, BPF_ANY).unwrap();
    s.push(2, BPF_ANY).unwrap();
    assert_eq!(s.pop().unwrap(), Some(2));
    assert_eq!(s.pop().unwrap(), Some(1));
    assert_eq!(s.pop().unwrap(), None);

    let mut b = BloomFilter::<_, u64>::new(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 100))
            .unwrap(),
    )
    .unwrap();
    b.insert(42, BPF_ANY).unwrap();
    assert!(b.contains(&42).unwrap());

    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_LPM_TRIE, 8, 8, 16).flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let mut t = LpmTrie::<_, [u8; 4], u64>::new(m).unwrap();
    t.insert(&Key::new(8, [10, 0, 0, 0]), 1, BPF_ANY).unwrap();
    t.insert(&Key::new(16, [10, 1, 0, 0]), 2, BPF_ANY).unwrap();
    assert_eq!(t.get(&Key::new(32, [10, 1, 2, 3]), 0).unwrap(), Some(2));
    assert_eq!(t.get(&Key::new(32, [10, 2, 2, 3]), 0).unwrap(), Some(1));
    assert_eq!(t.get(&Key::new(32, [11, 2, 2, 3]), 0).unwrap(), None);
    assert_eq!(t.keys().count(), 2);
}

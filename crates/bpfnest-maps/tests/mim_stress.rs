// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Multi-threaded stress of map-in-map reclamation: readers look up through outer maps and
//! dereference inner values inside read-side sections while writers swap, delete and recreate
//! inner maps and delete hash elements. Any use-after-free is a crash under AddressSanitizer:
//!
//! ```sh
//! RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" \
//!     cargo test --target x86_64-unknown-linux-gnu -p bpfnest-maps --test mim_stress
//! ```
//! `BPFNEST_STRESS_ITERS` scales the writers' work (default 2,000 swaps per writer).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use bpfnest_maps::map::arraymap::array_of_maps_lookup;
use bpfnest_maps::map::hashtab::hash_of_maps_lookup;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{BpfMap, Config, MapAttr, MapHandle, OpCtx, Runtime};

const MAGIC: u64 = 0x5a5a_1234_abcd_0042;
const SLOTS: u32 = 4;
const INNER_ENTRIES: u32 = 8;

fn iters() -> u32 {
    std::env::var("BPFNEST_STRESS_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000)
}

fn new_inner_array(rt: &Runtime) -> MapHandle {
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, INNER_ENTRIES))
        .expect("inner array");
    for i in 0..INNER_ENTRIES {
        h.update_elem(Some(&i.to_ne_bytes()), &MAGIC.to_ne_bytes(), BPF_ANY)
            .expect("fill");
    }
    h
}

fn new_inner_hash(rt: &Runtime) -> MapHandle {
    let h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 64).flags(BPF_F_NO_PREALLOC))
        .expect("inner hash");
    for i in 0..16u32 {
        h.update_elem(Some(&i.to_ne_bytes()), &MAGIC.to_ne_bytes(), BPF_ANY)
            .expect("fill");
    }
    h
}

/// Reads the u64 a program would read through a value pointer.
fn read_value(inner: &BpfMap, key: u32) -> Option<u64> {
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    let p = inner.ops().lookup_elem(inner, &ctx, &key.to_ne_bytes())?;
    // SAFETY: the pointer came from a lookup inside the caller's read-side section, which keeps
    // the value's memory alive; values are 8-byte aligned. A racing writer may change the bytes
    // (as in the kernel), which this test tolerates by only checking for MAGIC.
    Some(unsafe { core::ptr::read_volatile(p.as_ptr() as *const u64) })
}

#[test]
fn readers_never_see_freed_inner_maps() {
    let rt = Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    });
    let tmpl_a = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, INNER_ENTRIES))
        .unwrap();
    let outer_a = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, SLOTS).inner_map(tmpl_a.raw()))
        .unwrap();
    let tmpl_h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 64).flags(BPF_F_NO_PREALLOC))
        .unwrap();
    let outer_h = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, SLOTS).inner_map(tmpl_h.raw()))
        .unwrap();
    drop((tmpl_a, tmpl_h));
    for s in 0..SLOTS {
        let a = new_inner_array(&rt);
        outer_a
            .update_elem(Some(&s.to_ne_bytes()), &a.raw().to_ne_bytes(), BPF_ANY)
            .unwrap();
        let h = new_inner_hash(&rt);
        outer_h
            .update_elem(Some(&s.to_ne_bytes()), &h.raw().to_ne_bytes(), BPF_ANY)
            .unwrap();
    }
    // One sleepable "program" uses the hash outer map: its removed inners need both grace periods.
    outer_h.map().inc_sleepable();

    let stop = Arc::new(AtomicBool::new(false));
    // Writers start once every reader is running, so a loaded machine cannot skip the race.
    let started = Arc::new(std::sync::Barrier::new(4));
    let outer_a = Arc::new(outer_a);
    let outer_h = Arc::new(outer_h);
    let mut readers = Vec::new();
    for t in 0..3u32 {
        let (stop, oa, oh, rt) = (stop.clone(), outer_a.clone(), outer_h.clone(), rt.clone());
        let started = started.clone();
        readers.push(thread::spawn(move || {
            let sleepable = t == 2;
            let domain = if sleepable {
                rt.rcu().tasks_trace.clone()
            } else {
                rt.rcu().normal.clone()
            };
            let reader = domain.register();
            started.wait();
            let mut seen = 0u64;
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                let guard = reader.read_lock();
                i = i.wrapping_add(1);
                let slot = i % SLOTS;
                if !sleepable {
                    if let Some(inner) = array_of_maps_lookup(oa.map(), &guard, slot) {
                        let v = read_value(inner, i % INNER_ENTRIES)
                            .expect("array values always exist");
                        assert_eq!(v, MAGIC);
                        seen += 1;
                    }
                }
                if let Some(inner) = hash_of_maps_lookup(oh.map(), &guard, &slot.to_ne_bytes()) {
                    if let Some(v) = read_value(inner, i % 16) {
                        assert!(v == MAGIC || v == !MAGIC, "value {v:#x}");
                        seen += 1;
                    }
                }
                if sleepable && i % 64 == 0 {
                    // Sleepable programs may block inside their section.
                    thread::yield_now();
                }
                drop(guard);
            }
            seen
        }));
    }

    started.wait();
    let n = iters();
    let mut writers = Vec::new();
    for w in 0..2u32 {
        let (oa, oh, rt) = (outer_a.clone(), outer_h.clone(), rt.clone());
        writers.push(thread::spawn(move || {
            for i in 0..n {
                let slot = (i + w) % SLOTS;
                match i % 4 {
                    0 | 1 => {
                        let a = new_inner_array(&rt);
                        oa.update_elem(Some(&slot.to_ne_bytes()), &a.raw().to_ne_bytes(), BPF_ANY)
                            .unwrap();
                        // The outer map now holds the only reference.
                    }
                    2 => {
                        let _ = oa.delete_elem(Some(&slot.to_ne_bytes()));
                        let h = new_inner_hash(&rt);
                        oh.update_elem(Some(&slot.to_ne_bytes()), &h.raw().to_ne_bytes(), BPF_ANY)
                            .unwrap();
                    }
                    _ => {
                        // Churn elements of a live inner hash map through its id.
                        let mut id = [0u8; 4];
                        if oh
                            .lookup_elem(Some(&slot.to_ne_bytes()), &mut id, 0)
                            .is_ok()
                        {
                            if let Ok(inner) = rt.map_get_fd_by_id(u32::from_ne_bytes(id), 0) {
                                for k in 0..16u32 {
                                    let _ = inner.delete_elem(Some(&k.to_ne_bytes()));
                                    let _ = inner.update_elem(
                                        Some(&k.to_ne_bytes()),
                                        &(!MAGIC).to_ne_bytes(),
                                        BPF_ANY,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(seen > 0);

    outer_h.map().dec_sleepable();
    drop(outer_a);
    drop(outer_h);
    rt.rcu_barrier();
    // Every map is gone: ids are free again.
    assert_eq!(rt.map_get_next_id(0), Err(bpfnest_maps::Errno::ENOENT));
}

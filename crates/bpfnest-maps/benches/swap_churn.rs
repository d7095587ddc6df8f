// SPDX-License-Identifier: Apache-2.0 OR MIT
//! 10^6 inner-map swaps under load, with resident memory measured before and after.
//!
//! Each swap creates a fresh inner array, inserts it into an outer slot (waiting for readers)
//! and closes its handle, so the replaced map must be reclaimed after its grace period or
//! memory grows. Reader threads look up through the outer map the whole time. The kernel does
//! the same for a few hundred swaps (each costs a `synchronize_rcu`), in the same run.
//!
//! `cargo bench -p bpfnest-maps --bench swap_churn` (`BPFNEST_SWAPS` overrides 10^6).

use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bpfnest_maps::map::arraymap::array_of_maps_lookup;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, MapAttr, OpCtx, Runtime};

mod kernel_sys;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let swaps: u64 = std::env::var("BPFNEST_SWAPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = Runtime::new(Config::default());
    let tmpl = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    let outer = Arc::new(
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4).inner_map(tmpl.raw()))
            .unwrap(),
    );
    drop(tmpl);
    let k0 = 0u32.to_ne_bytes();
    let first = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
        .unwrap();
    outer
        .update_elem(Some(&k0), &first.raw().to_ne_bytes(), BPF_ANY)
        .unwrap();
    drop(first);

    let stop = Arc::new(AtomicBool::new(false));
    let lookups = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, rt, outer, lookups) = (stop.clone(), rt.clone(), outer.clone(), lookups.clone());
        std::thread::spawn(move || {
            let r = rt.rcu().normal.register();
            let ctx = OpCtx {
                cpu: 1,
                files: None,
            };
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let g = r.read_lock();
                if let Some(m) = array_of_maps_lookup(outer.map(), &g, 0) {
                    black_box(m.ops().lookup_elem(m, &ctx, &0u32.to_ne_bytes()));
                }
                n += 1;
            }
            lookups.store(n, Ordering::Relaxed);
        })
    };

    // Warm up allocator and reclaimer so the "before" figure is steady.
    let swap = |n: u64| {
        for _ in 0..n {
            let inner = rt
                .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4))
                .unwrap();
            outer
                .update_elem(Some(&k0), &inner.raw().to_ne_bytes(), BPF_ANY)
                .unwrap();
        }
    };
    swap(10_000);
    rt.rcu_barrier();
    let before = rss_kib();
    let t = Instant::now();
    swap(swaps);
    let elapsed = t.elapsed();
    rt.rcu_barrier();
    let after = rss_kib();
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let per_swap_ns = elapsed.as_nanos() as f64 / swaps as f64;
    println!("bpfnest: {swaps} swaps in {elapsed:.2?} = {per_swap_ns:.0} ns/swap (create + update + close)");
    println!(
        "bpfnest: RSS before {before} KiB, after {after} KiB, delta {} KiB",
        after as i64 - before as i64
    );
    println!(
        "bpfnest: reader completed {} lookups meanwhile",
        lookups.load(Ordering::Relaxed)
    );

    // The kernel: the same loop, fewer times (each update waits ~10 ms for synchronize_rcu).
    let kswaps = 200u64;
    let kernel = kernel_sys::create(BPF_MAP_TYPE_ARRAY, 4, 8, 4, None)
        .and_then(|ti| kernel_sys::create(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4, Some(&ti)));
    match kernel {
        None => println!("kernel: bpf(2) refused, skipped"),
        Some(ko) => {
            let t = Instant::now();
            for _ in 0..kswaps {
                let ki =
                    kernel_sys::create(BPF_MAP_TYPE_ARRAY, 4, 8, 4, None).expect("kernel inner");
                assert_eq!(
                    kernel_sys::update(&ko, &k0, &(ki.as_raw_fd() as u32).to_ne_bytes(), 0),
                    0
                );
            }
            let kns = t.elapsed().as_nanos() as f64 / kswaps as f64;
            println!("kernel: {kswaps} swaps = {kns:.0} ns/swap");
            println!("ratio kernel/bpfnest per swap: {:.0}x", kns / per_swap_ns);
        }
    }
}

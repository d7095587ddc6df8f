// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Map-in-map costs, bpfnest next to the kernel's bpf(2) in the same run (ratios are what
//! docs/benchmarks.md reports). `cargo bench -p bpfnest-maps --bench map_in_map`.
//!
//! * `read_section`: one RCU read-side section (wraps every program run).
//! * `outer_lookup/*`: an outer-map lookup — program side (pointer to the inner map) and
//!   syscall side (the inner id), and the kernel's syscall.
//! * `inner_lookup/*`: a lookup in an inner array, program side and syscall side, and kernel.
//! * `outer_update/*`: replacing an inner map, including the wait for readers, idle and with a
//!   reader thread running short sections on the other core; kernel: idle.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bpfnest_maps::map::arraymap::array_of_maps_lookup;
use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, MapAttr, OpCtx, Runtime};
use criterion::{criterion_group, criterion_main, Criterion};

mod kernel_sys;

fn setup() -> (
    Runtime,
    bpfnest_maps::MapHandle,
    Vec<bpfnest_maps::MapHandle>,
) {
    let rt = Runtime::new(Config::default());
    let tmpl = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 16))
        .unwrap();
    let outer = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4).inner_map(tmpl.raw()))
        .unwrap();
    let inners: Vec<_> = (0..2)
        .map(|_| {
            rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 16))
                .unwrap()
        })
        .collect();
    outer
        .update_elem(
            Some(&0u32.to_ne_bytes()),
            &inners[0].raw().to_ne_bytes(),
            BPF_ANY,
        )
        .unwrap();
    (rt, outer, inners)
}

fn bench(c: &mut Criterion) {
    let (rt, outer, inners) = setup();
    let reader = rt.rcu().normal.register();
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    let k0 = 0u32.to_ne_bytes();

    c.bench_function("read_section/bpfnest", |b| {
        b.iter(|| drop(black_box(reader.read_lock())))
    });

    let mut g = c.benchmark_group("outer_lookup");
    g.bench_function("bpfnest_prog", |b| {
        b.iter(|| {
            let guard = reader.read_lock();
            black_box(array_of_maps_lookup(outer.map(), &guard, black_box(0)).map(|m| m.id()));
        })
    });
    g.bench_function("bpfnest_sys", |b| {
        let mut id = [0u8; 4];
        b.iter(|| outer.lookup_elem(Some(&k0), &mut id, 0).unwrap())
    });
    let kmaps = kernel_sys::create(BPF_MAP_TYPE_ARRAY, 4, 8, 16, None).and_then(|ti| {
        let ko = kernel_sys::create(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4, Some(&ti))?;
        let ki0 = kernel_sys::create(BPF_MAP_TYPE_ARRAY, 4, 8, 16, None)?;
        let ki1 = kernel_sys::create(BPF_MAP_TYPE_ARRAY, 4, 8, 16, None)?;
        use std::os::fd::AsRawFd;
        (kernel_sys::update(&ko, &k0, &(ki0.as_raw_fd() as u32).to_ne_bytes(), 0) == 0)
            .then_some((ko, ki0, ki1))
    });
    if kmaps.is_none() {
        eprintln!("bpf(2) refused: kernel figures skipped");
    }
    if let Some((ko, _, _)) = &kmaps {
        g.bench_function("kernel_sys", |b| {
            let mut id = [0u8; 4];
            b.iter(|| assert_eq!(kernel_sys::lookup(ko, &k0, &mut id), 0))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("inner_lookup");
    let inner = inners[0].map();
    g.bench_function("bpfnest_prog", |b| {
        b.iter(|| {
            let _guard = reader.read_lock();
            black_box(inner.ops().lookup_elem(inner, &ctx, black_box(&k0)));
        })
    });
    g.bench_function("bpfnest_sys", |b| {
        let mut v = [0u8; 8];
        b.iter(|| inners[0].lookup_elem(Some(&k0), &mut v, 0).unwrap())
    });
    if let Some((_, ki0, _)) = &kmaps {
        g.bench_function("kernel_sys", |b| {
            let mut v = [0u8; 8];
            b.iter(|| assert_eq!(kernel_sys::lookup(ki0, &k0, &mut v), 0))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("outer_update");
    let fds = [inners[0].raw().to_ne_bytes(), inners[1].raw().to_ne_bytes()];
    let mut i = 0usize;
    g.bench_function("bpfnest_idle", |b| {
        b.iter(|| {
            i ^= 1;
            outer.update_elem(Some(&k0), &fds[i], BPF_ANY).unwrap()
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let busy = {
        let (stop, rt, outer) = (stop.clone(), rt.clone(), outer.try_clone());
        std::thread::spawn(move || {
            let reader = rt.rcu().normal.register();
            while !stop.load(Ordering::Relaxed) {
                let guard = reader.read_lock();
                if let Some(m) = array_of_maps_lookup(outer.map(), &guard, 0) {
                    black_box(m.ops().lookup_elem(
                        m,
                        &OpCtx {
                            cpu: 1,
                            files: None,
                        },
                        &0u32.to_ne_bytes(),
                    ));
                }
            }
        })
    };
    g.bench_function("bpfnest_busy_readers", |b| {
        b.iter(|| {
            i ^= 1;
            outer.update_elem(Some(&k0), &fds[i], BPF_ANY).unwrap()
        })
    });
    stop.store(true, Ordering::Relaxed);
    busy.join().unwrap();
    if let Some((ko, ki0, ki1)) = &kmaps {
        use std::os::fd::AsRawFd;
        let kfds = [
            (ki0.as_raw_fd() as u32).to_ne_bytes(),
            (ki1.as_raw_fd() as u32).to_ne_bytes(),
        ];
        g.sample_size(10).measurement_time(Duration::from_secs(3));
        g.bench_function("kernel_idle", |b| {
            b.iter(|| {
                i ^= 1;
                assert_eq!(kernel_sys::update(ko, &k0, &kfds[i], 0), 0)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_QUEUE` and `BPF_MAP_TYPE_STACK` through the public API: every create and op
//! errno, FIFO/LIFO order, `BPF_EXIST` overwrite and `mem_usage`. Each expectation was
//! measured on Linux 6.18 with bpf(2) and is marked "kernel 6.18".
#![cfg(not(bpfnest_loom))]

use bpfnest_maps::registry::{self, Caps};
use bpfnest_maps::uapi::*;
use bpfnest_maps::{BatchArgs, Config, Errno, MapAttr, MapHandle, OpCtx, Runtime};

const KM: u32 = KMALLOC_MAX_SIZE as u32;
const TYPES: [(u32, &str); 2] = [(BPF_MAP_TYPE_QUEUE, "queue"), (BPF_MAP_TYPE_STACK, "stack")];

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn create(rt: &Runtime, attr: MapAttr) -> Result<MapHandle, Errno> {
    rt.map_create(&attr)
}

fn push(h: &MapHandle, v: u32, flags: u64) -> Result<(), Errno> {
    h.update_elem(None, &v.to_ne_bytes(), flags)
}

fn peek(h: &MapHandle) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    h.lookup_elem(None, &mut v, 0)
        .map(|_| u32::from_ne_bytes(v))
}

fn pop(h: &MapHandle) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    h.lookup_and_delete_elem(None, &mut v, 0)
        .map(|_| u32::from_ne_bytes(v))
}

#[test]
fn create_errnos() {
    let rt = rt();
    for (t, name) in TYPES {
        let c = |k, v, n, f| create(&rt, MapAttr::new(t, k, v, n).flags(f)).map(|_| ());
        // kernel 6.18: queue_stack_map_alloc_check refuses these with EINVAL ...
        assert_eq!(c(0, 4, 0, 0), Err(Errno::EINVAL), "{name} max_entries 0");
        assert_eq!(c(4, 4, 4, 0), Err(Errno::EINVAL), "{name} key_size 4");
        assert_eq!(c(0, 0, 4, 0), Err(Errno::EINVAL), "{name} value_size 0");
        // ... and an over-large value with E2BIG, but only once the EINVAL checks passed.
        assert_eq!(c(0, KM, 1, 0), Ok(()), "{name} value_size KMALLOC_MAX_SIZE");
        assert_eq!(
            c(0, KM + 1, 1, 0),
            Err(Errno::E2BIG),
            "{name} value_size too big"
        );
        assert_eq!(
            c(4, KM + 1, 1, 0),
            Err(Errno::EINVAL),
            "{name} too big and keyed"
        );
        assert_eq!(
            c(0, KM + 1, 0, 0),
            Err(Errno::EINVAL),
            "{name} too big and empty"
        );
        // kernel 6.18: only NUMA_NODE (2), RDONLY (3), WRONLY (4), RDONLY_PROG (7) and
        // WRONLY_PROG (8) are accepted among flag bits 0..=19.
        for bit in 0..20 {
            let want = if [2, 3, 4, 7, 8].contains(&bit) {
                Ok(())
            } else {
                Err(Errno::EINVAL)
            };
            assert_eq!(c(0, 4, 4, 1 << bit), want, "{name} flag bit {bit}");
        }
        assert_eq!(
            c(0, 4, 4, BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG),
            Err(Errno::EINVAL)
        );
        assert_eq!(c(0, 4, 4, BPF_F_RDONLY | BPF_F_WRONLY), Err(Errno::EINVAL));
        // kernel 6.18: a ring of 2^32 slots of 4 MiB cannot be allocated.
        assert_eq!(c(0, KM, u32::MAX, 0), Err(Errno::ENOMEM), "{name} huge");
        assert_eq!(
            c(0, KM, u32::MAX - 1, 0),
            Err(Errno::ENOMEM),
            "{name} huge - 1"
        );
    }
}

#[test]
fn privilege_and_registry_row() {
    // kernel 6.18 (syscall.c map_create): QUEUE and STACK are in the CAP_BPF list, after
    // map_alloc_check; not probed (unprivileged_bpf_disabled = 2 on the test machine).
    let rt = Runtime::new(Config {
        nr_cpus: 2,
        caps: Caps::NONE,
        unprivileged_bpf_disabled: false,
        ..Config::default()
    });
    for (t, name) in TYPES {
        assert_eq!(
            rt.map_create(&MapAttr::new(t, 0, 4, 4)).map(|_| ()),
            Err(Errno::EPERM),
            "{name}"
        );
        // alloc_check runs first, so bad attributes still give EINVAL.
        assert_eq!(
            rt.map_create(&MapAttr::new(t, 4, 4, 4)).map(|_| ()),
            Err(Errno::EINVAL),
            "{name}"
        );
        let row = registry::find(t).unwrap();
        assert!(row.meta_equal.is_some(), "{name} can be an inner map");
        assert!(row.check_btf.is_none() && !row.unprivileged);
    }
}

#[test]
fn op_errnos() {
    let rt = rt();
    for (t, name) in TYPES {
        let h = create(&rt, MapAttr::new(t, 0, 4, 3)).unwrap();
        let mut v = [0u8; 4];
        // kernel 6.18: empty peek and pop are ENOENT.
        assert_eq!(peek(&h), Err(Errno::ENOENT), "{name}");
        assert_eq!(pop(&h), Err(Errno::ENOENT), "{name}");
        // kernel 6.18: push refuses NOEXIST, 3, F_LOCK, 8 and 1 << 32 with EINVAL.
        for f in [BPF_NOEXIST, 3, BPF_F_LOCK, 8, 1 << 32] {
            assert_eq!(
                push(&h, 9, f),
                Err(Errno::EINVAL),
                "{name} push flags {f:#x}"
            );
        }
        for i in 1..=3 {
            push(&h, i, BPF_ANY).unwrap();
        }
        // kernel 6.18: full without BPF_EXIST is E2BIG.
        assert_eq!(push(&h, 4, BPF_ANY), Err(Errno::E2BIG), "{name}");
        // kernel 6.18: a key on a keyless map is EINVAL.
        assert_eq!(
            h.update_elem(Some(&[0; 4]), &[0; 4], BPF_ANY),
            Err(Errno::EINVAL),
            "{name}"
        );
        // kernel 6.18: lookup/pop flags are EINVAL (F_LOCK without a spin lock, or unknown).
        assert_eq!(h.lookup_elem(None, &mut v, BPF_F_LOCK), Err(Errno::EINVAL));
        assert_eq!(h.lookup_elem(None, &mut v, 1), Err(Errno::EINVAL));
        assert_eq!(
            h.lookup_and_delete_elem(None, &mut v, BPF_F_LOCK),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            h.lookup_and_delete_elem(None, &mut v, 1),
            Err(Errno::EINVAL)
        );
        // kernel 6.18: delete and get_next_key are EINVAL, with or without a key.
        assert_eq!(h.delete_elem(None), Err(Errno::EINVAL), "{name}");
        assert_eq!(h.delete_elem(Some(&[0; 4])), Err(Errno::EINVAL), "{name}");
        assert_eq!(h.get_next_key(None, &mut []), Err(Errno::EINVAL), "{name}");
        assert_eq!(
            h.get_next_key(Some(&[0; 4]), &mut []),
            Err(Errno::EINVAL),
            "{name}"
        );
        // kernel 6.18: no batch ops (BPF_DO_BATCH: ENOTSUPP, count untouched).
        type BatchFn = fn(&MapHandle, &mut BatchArgs<'_>) -> Result<(), Errno>;
        let cmds: [BatchFn; 4] = [
            MapHandle::lookup_batch,
            MapHandle::lookup_and_delete_batch,
            MapHandle::update_batch,
            MapHandle::delete_batch,
        ];
        for cmd in cmds {
            let (mut out, mut vals) = ([0u8; 4], [0u8; 4]);
            let mut args = BatchArgs {
                in_batch: None,
                out_batch: &mut out,
                keys: &mut [],
                values: &mut vals,
                count: 1,
                elem_flags: 0,
                flags: 0,
            };
            assert_eq!(cmd(&h, &mut args), Err(Errno::ENOTSUPP), "{name}");
            assert_eq!(args.count, 1);
        }
        // No mmap (bpf_map_mmap: ENOTSUPP); a program lookup returns NULL.
        let map = h.map();
        assert_eq!(map.ops().mmap(map).map(|_| ()), Err(Errno::ENOTSUPP));
        assert!(map
            .ops()
            .lookup_elem(
                map,
                &OpCtx {
                    cpu: 0,
                    files: None
                },
                &[]
            )
            .is_none());
    }
}

#[test]
fn fifo_lifo_and_exist_overwrite() {
    let rt = rt();
    let q = create(&rt, MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 4, 3)).unwrap();
    let s = create(&rt, MapAttr::new(BPF_MAP_TYPE_STACK, 0, 4, 3)).unwrap();
    for h in [&q, &s] {
        for i in 1..=3 {
            push(h, i, BPF_ANY).unwrap();
        }
        // kernel 6.18: BPF_EXIST on a full map drops the oldest element (1), for stacks too.
        push(h, 4, BPF_EXIST).unwrap();
    }
    // kernel 6.18: queue peeks 2 and pops 2, 3, 4; stack peeks 4 and pops 4, 3, 2.
    assert_eq!(peek(&q), Ok(2));
    assert_eq!(
        [pop(&q), pop(&q), pop(&q), pop(&q)],
        [Ok(2), Ok(3), Ok(4), Err(Errno::ENOENT)]
    );
    assert_eq!(peek(&s), Ok(4));
    assert_eq!(
        [pop(&s), pop(&s), pop(&s), pop(&s)],
        [Ok(4), Ok(3), Ok(2), Err(Errno::ENOENT)]
    );

    // Longer interleavings across the ring's wrap point.
    let q = create(&rt, MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 4, 5)).unwrap();
    let s = create(&rt, MapAttr::new(BPF_MAP_TYPE_STACK, 0, 4, 5)).unwrap();
    let (mut fifo, mut lifo) = (std::collections::VecDeque::new(), Vec::new());
    for i in 0..200u32 {
        if i % 3 == 2 {
            assert_eq!(pop(&q).ok(), fifo.pop_front());
            assert_eq!(pop(&s).ok(), lifo.pop());
        } else {
            let full = fifo.len() == 5;
            let want = if full { Err(Errno::E2BIG) } else { Ok(()) };
            assert_eq!(push(&q, i, BPF_ANY), want);
            assert_eq!(push(&s, i, BPF_ANY), want);
            if !full {
                fifo.push_back(i);
                lifo.push(i);
            }
        }
    }
}

#[test]
fn frozen_map() {
    let rt = rt();
    for (t, name) in TYPES {
        let h = create(&rt, MapAttr::new(t, 0, 4, 3)).unwrap();
        h.freeze().unwrap();
        // kernel 6.18: after freeze, push and pop are EPERM, peek still works (ENOENT here).
        assert_eq!(push(&h, 1, BPF_ANY), Err(Errno::EPERM), "{name}");
        assert_eq!(peek(&h), Err(Errno::ENOENT), "{name}");
        assert_eq!(pop(&h), Err(Errno::EPERM), "{name}");
    }
}

#[test]
fn mem_usage_matches_fdinfo_memlock() {
    let rt = rt();
    for (t, _) in TYPES {
        // kernel 6.18: memlock 328 for (n 3, v 4) and 352 for (n 7, v 5).
        assert_eq!(
            create(&rt, MapAttr::new(t, 0, 4, 3))
                .unwrap()
                .map()
                .mem_usage(),
            328
        );
        assert_eq!(
            create(&rt, MapAttr::new(t, 0, 5, 7))
                .unwrap()
                .map()
                .mem_usage(),
            352
        );
    }
}

#[test]
fn program_and_syscall_variants() {
    let rt = rt();
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    for (t, name) in TYPES {
        let h = create(&rt, MapAttr::new(t, 0, 4, 2)).unwrap();
        let map = h.map();
        let ops = map.ops();
        // Program side: an empty pop/peek zeroes the program's buffer (the kernel's memset).
        let mut v = [0xaa; 4];
        assert_eq!(ops.pop_elem(map, &mut v), Err(Errno::ENOENT));
        assert_eq!(v, [0; 4], "{name}");
        // Syscall side: kernel 6.18 leaves the user buffer untouched when peek/pop fail.
        let mut v = [0xaa; 4];
        assert_eq!(
            ops.lookup_elem_sys(map, &ctx, &[], &mut v, 0),
            Err(Errno::ENOENT)
        );
        assert_eq!(
            ops.lookup_and_delete_elem(map, &ctx, None, &mut v, 0),
            Err(Errno::ENOENT)
        );
        assert_eq!(v, [0xaa; 4], "{name}");
        ops.push_elem(map, &7u32.to_ne_bytes(), BPF_ANY).unwrap();
        ops.push_elem(map, &8u32.to_ne_bytes(), BPF_ANY).unwrap();
        assert_eq!(
            ops.push_elem(map, &9u32.to_ne_bytes(), BPF_ANY),
            Err(Errno::E2BIG)
        );
        ops.peek_elem(map, &mut v).unwrap();
        let first = if t == BPF_MAP_TYPE_QUEUE { 7 } else { 8 };
        assert_eq!(u32::from_ne_bytes(v), first, "{name}");
        ops.lookup_and_delete_elem(map, &ctx, None, &mut v, 0)
            .unwrap();
        assert_eq!(u32::from_ne_bytes(v), first, "{name}");
        // Stubs: update and delete are EINVAL from programs too.
        assert_eq!(
            ops.update_elem(map, &ctx, &[], &[0; 4], BPF_ANY),
            Err(Errno::EINVAL)
        );
        assert_eq!(ops.delete_elem(map, &ctx, &[]), Err(Errno::EINVAL));
    }
}

#[test]
fn wide_values_round_trip() {
    let rt = rt();
    let h = create(&rt, MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 13, 4)).unwrap();
    for i in 0..4u8 {
        h.update_elem(None, &[i; 13], BPF_ANY).unwrap();
    }
    let mut v = [0u8; 13];
    for i in 0..4u8 {
        h.lookup_and_delete_elem(None, &mut v, 0).unwrap();
        assert_eq!(v, [i; 13]);
    }
}

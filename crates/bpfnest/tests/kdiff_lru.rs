// SPDX-License-Identifier: Apache-2.0 OR MIT
//! LRU_HASH and LRU_PERCPU_HASH (common and per-CPU LRU lists) on both backends: inserts past
//! capacity with the surviving key set after each insert, deletes and replacement.
//!
//! LRU state depends on the CPU that runs the syscall. The runtime's syscall CPU is
//! `Config::syscall_cpu` (0 by default), so each test pins its thread to CPU 0 for the kernel.

mod kdiff;

use bpfnest::uapi::*;
use bpfnest::{Errno, MapAttr, MapBackend};
use kdiff::{diff, k, vsz, DynBackend, Trace};

/// Pins the calling thread to CPU 0 (where the runtime's syscalls run): the kernel's LRU free
/// lists are per CPU, so eviction order is only reproducible from one CPU.
fn pin_cpu0() {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU 0 is within the set's capacity.
    unsafe { libc::CPU_SET(0, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t for the duration of the call; pid 0 is this thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(r, 0, "sched_setaffinity(CPU 0) failed");
}

const VARIANTS: [(u32, u32); 4] = [
    (BPF_MAP_TYPE_LRU_HASH, 0),
    (BPF_MAP_TYPE_LRU_HASH, BPF_F_NO_COMMON_LRU),
    (BPF_MAP_TYPE_LRU_PERCPU_HASH, 0),
    (BPF_MAP_TYPE_LRU_PERCPU_HASH, BPF_F_NO_COMMON_LRU),
];

/// The surviving keys, sorted, and the walk's terminating errno.
fn survivors(m: &dyn MapBackend) -> Result<Vec<u32>, Errno> {
    let mut out = Vec::new();
    let mut cur: Option<[u8; 4]> = None;
    loop {
        let mut next = [0u8; 4];
        match m.get_next_key(cur.as_ref().map(|c| &c[..]), &mut next) {
            Ok(()) => {
                out.push(u32::from_ne_bytes(next));
                cur = Some(next);
                if out.len() > 100_000 {
                    break;
                }
            }
            Err(e) if e == Errno::ENOENT => break,
            Err(e) => return Err(e),
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn create_errno(b: &dyn DynBackend, t: &mut Trace) {
    for (ty, f) in VARIANTS {
        for (ks, vs, me) in [
            (4, 8, 4),
            (0, 8, 4),
            (4, 0, 4),
            (4, 8, 0),
            (4, 8, 1),
            (513, 8, 4),
        ] {
            t.rec(
                &format!("{ty}/{f} k{ks} v{vs} n{me}"),
                b.create(&MapAttr::new(ty, ks, vs, me).flags(f))
                    .map(|m| m.info().max_entries),
            );
        }
        for bit in 0..=19u32 {
            t.rec(
                &format!("{ty}/{f} flag bit {bit}"),
                b.create(&MapAttr::new(ty, 4, 8, 64).flags(f | 1 << bit))
                    .map(|m| m.info().map_flags),
            );
        }
    }
}

fn insert_past_capacity(b: &dyn DynBackend, t: &mut Trace) {
    pin_cpu0();
    for (ty, f) in VARIANTS {
        for max in [16u32, 64, 200] {
            let m = b
                .create(&MapAttr::new(ty, 4, 8, max).flags(f | BPF_F_ZERO_SEED))
                .unwrap();
            let v = vec![1u8; vsz(ty, 8)];
            for i in 0..max * 2 {
                t.rec(
                    &format!("{ty}/{f} max {max} insert {i}"),
                    m.update_elem(Some(&k(i)), &v, BPF_ANY),
                );
                if i >= max / 2 {
                    t.rec("survivors", survivors(&*m));
                }
                // Touch an old key now and then (lookup sets the ref bit).
                if i % 5 == 0 {
                    let mut out = vec![0u8; vsz(ty, 8)];
                    t.rec("lookup 1", m.lookup_elem(Some(&k(1)), &mut out, 0));
                }
            }
        }
    }
}

fn delete_replace(b: &dyn DynBackend, t: &mut Trace) {
    pin_cpu0();
    for (ty, f) in VARIANTS {
        let m = b
            .create(&MapAttr::new(ty, 4, 8, 32).flags(f | BPF_F_ZERO_SEED))
            .unwrap();
        let v = |s: u8| vec![s; vsz(ty, 8)];
        for i in 0..20 {
            m.update_elem(Some(&k(i)), &v(i as u8), BPF_NOEXIST)
                .unwrap();
        }
        for i in [0u32, 5, 19, 25] {
            t.rec(&format!("{ty}/{f} delete {i}"), m.delete_elem(Some(&k(i))));
        }
        for (i, fl) in [
            (1u32, BPF_EXIST),
            (1, BPF_NOEXIST),
            (0, BPF_EXIST),
            (0, BPF_NOEXIST),
            (2, BPF_ANY),
            (3, BPF_F_LOCK),
            (3, 3),
        ] {
            t.rec(
                &format!("update {i} flags {fl}"),
                m.update_elem(Some(&k(i)), &v(100 + i as u8), fl),
            );
        }
        let mut out = vec![0u8; vsz(ty, 8)];
        let r = m.lookup_elem(Some(&k(1)), &mut out, 0);
        t.rec("lookup 1", r.map(|()| out));
        let mut out = vec![0u8; vsz(ty, 8)];
        t.rec(
            "lookup_and_delete 2",
            m.lookup_and_delete_elem(Some(&k(2)), &mut out, 0)
                .map(|()| out),
        );
        t.rec("survivors", survivors(&*m));
        for i in 100..160 {
            t.rec(
                &format!("insert {i}"),
                m.update_elem(Some(&k(i)), &v(i as u8), BPF_NOEXIST),
            );
            // Replace an existing key each time (moves it in the LRU).
            t.rec(
                "replace 3",
                m.update_elem(Some(&k(3)), &v(i as u8), BPF_ANY),
            );
            t.rec("survivors", survivors(&*m));
        }
    }
}

#[test]
fn kdiff_lru_create_errno() {
    diff("kdiff_lru_create_errno", create_errno);
}

#[test]
fn kdiff_lru_insert_past_capacity() {
    diff("kdiff_lru_insert_past_capacity", insert_past_capacity);
}

#[test]
fn kdiff_lru_delete_replace() {
    diff("kdiff_lru_delete_replace", delete_replace);
}

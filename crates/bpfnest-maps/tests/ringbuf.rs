// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_RINGBUF` through the public API: create and op errnos, the mmap layout,
//! reserve/commit/discard ordering, wraparound, capacity limits, wakeups and a concurrent
//! producer/consumer run. Expectations marked "kernel 6.18" were measured on Linux 6.18 with
//! bpf(2) and small test programs (BPF_PROG_TEST_RUN) calling the ring-buffer helpers.
#![cfg(not(bpfnest_loom))]

use std::ops::ControlFlow;
use std::ptr::NonNull;

use bpfnest_maps::map::ringbuf::*;
use bpfnest_maps::registry::{self, Caps};
use bpfnest_maps::uapi::*;
use bpfnest_maps::{BatchArgs, BpfMap, Config, Errno, MapAttr, MapHandle, Runtime};

const R: u32 = BPF_MAP_TYPE_RINGBUF;
const PAGE: usize = 4096;

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn ring(rt: &Runtime, size: u32) -> MapHandle {
    rt.map_create(&MapAttr::new(R, 0, 0, size)).unwrap()
}

/// A word of the user-visible mapping (what a process reads after mmap).
fn user_u64(map: &BpfMap, off: usize) -> u64 {
    let (base, len) = map.ops().mmap(map).unwrap();
    assert!(off + 8 <= len);
    // SAFETY: inside the live mapping; tests read it while no producer runs.
    unsafe { base.as_ptr().add(off).cast::<u64>().read_volatile() }
}

/// `(len, pg_off)` of the record header at ring offset `off`.
fn header(map: &BpfMap, off: usize) -> (u32, u32) {
    let w = user_u64(map, 2 * PAGE + off);
    (w as u32, (w >> 32) as u32)
}

/// `(consumer_pos, producer_pos, pending_pos)` as user space sees them.
fn positions(map: &BpfMap) -> (u64, u64, u64) {
    (
        user_u64(map, 0),
        user_u64(map, PAGE),
        user_u64(map, PAGE + 8),
    )
}

fn queries(map: &BpfMap) -> [u64; 5] {
    [0, 1, 2, 3, 4].map(|f| ringbuf_query(map, f))
}

/// Writes `bytes` into a reserved sample.
fn fill(sample: NonNull<u8>, bytes: &[u8]) {
    // SAFETY: the sample was reserved with at least bytes.len() bytes and is ours until
    // submitted.
    unsafe {
        sample
            .as_ptr()
            .copy_from_nonoverlapping(bytes.as_ptr(), bytes.len())
    };
}

fn reserve_submit(map: &BpfMap, size: u64, byte: u8, flags: u64) -> bool {
    match ringbuf_reserve(map, size, 0) {
        Some(p) => {
            fill(p, &vec![byte; size as usize]);
            // SAFETY: freshly reserved on a live map, committed once.
            unsafe { ringbuf_submit(p, flags) };
            true
        }
        None => false,
    }
}

#[test]
fn create_errnos() {
    let rt = rt();
    let c = |k, v, n, f| {
        rt.map_create(&MapAttr::new(R, k, v, n).flags(f))
            .map(|_| ())
    };
    assert_eq!(c(0, 0, 4096, 0), Ok(()));
    // kernel 6.18: keys, values, a zero, non-power-of-two or sub-page size are EINVAL.
    assert_eq!(c(4, 0, 4096, 0), Err(Errno::EINVAL));
    assert_eq!(c(0, 4, 4096, 0), Err(Errno::EINVAL));
    assert_eq!(c(0, 0, 0, 0), Err(Errno::EINVAL));
    assert_eq!(c(0, 0, 2048, 0), Err(Errno::EINVAL));
    assert_eq!(c(0, 0, 3 * 4096, 0), Err(Errno::EINVAL));
    assert_eq!(c(0, 0, 8192, 0), Ok(()));
    // kernel 6.18: only BPF_F_NUMA_NODE (bit 2); even RDONLY/WRONLY are EINVAL.
    for bit in 0..22 {
        let want = if bit == 2 { Ok(()) } else { Err(Errno::EINVAL) };
        assert_eq!(c(0, 0, 4096, 1 << bit), want, "flag bit {bit}");
    }
    // kernel 6.18: there is no E2BIG: 2^30 and 2^31 bytes are accepted (the 64 GiB limit of
    // older kernels cannot be reached with a u32).
    let h = rt.map_create(&MapAttr::new(R, 0, 0, 1 << 31)).unwrap();
    // kernel 6.18: memlock 2155884872.
    assert_eq!(h.map().mem_usage(), 2_155_884_872);
    assert_eq!(ringbuf_query(h.map(), BPF_RB_RING_SIZE), 1 << 31);
    drop(h);
    assert_eq!(c(4, 0, 1 << 31, 0), Err(Errno::EINVAL));
}

#[test]
fn unprivileged_and_registry_row() {
    // kernel 6.18 (syscall.c map_create): RINGBUF is in the unprivileged list.
    let rt = Runtime::new(Config {
        nr_cpus: 2,
        caps: Caps::NONE,
        unprivileged_bpf_disabled: false,
        ..Config::default()
    });
    assert!(rt.map_create(&MapAttr::new(R, 0, 0, 4096)).is_ok());
    let row = registry::find(R).unwrap();
    assert!(
        row.unprivileged
            && row.alloc_check.is_none()
            && row.meta_equal.is_some()
            && row.check_btf.is_none()
    );
}

#[test]
fn mem_usage_matches_fdinfo_memlock() {
    let rt = rt();
    // kernel 6.18: fdinfo memlock.
    for (size, memlock) in [(4096, 16_728), (8192, 20_840), (1 << 20, 1_065_288)] {
        assert_eq!(ring(&rt, size).map().mem_usage(), memlock, "size {size}");
    }
}

#[test]
fn op_errnos() {
    let rt = rt();
    let h = ring(&rt, 8192);
    // kernel 6.18: lookup, update, delete, get_next_key and lookup_and_delete are ENOTSUPP.
    assert_eq!(h.lookup_elem(None, &mut [], 0), Err(Errno::ENOTSUPP));
    assert_eq!(h.update_elem(None, &[], 0), Err(Errno::ENOTSUPP));
    assert_eq!(h.delete_elem(None), Err(Errno::ENOTSUPP));
    assert_eq!(h.get_next_key(None, &mut []), Err(Errno::ENOTSUPP));
    assert_eq!(
        h.lookup_and_delete_elem(None, &mut [], 0),
        Err(Errno::ENOTSUPP)
    );
    // kernel 6.18: a key, or BPF_F_LOCK, is refused first with EINVAL.
    assert_eq!(h.lookup_elem(Some(&[0; 4]), &mut [], 0), Err(Errno::EINVAL));
    assert_eq!(h.lookup_elem(None, &mut [], BPF_F_LOCK), Err(Errno::EINVAL));
    assert_eq!(h.update_elem(None, &[], 7), Err(Errno::EINVAL));
    // kernel 6.18: every batch command is ENOTSUPP.
    type BatchFn = fn(&MapHandle, &mut BatchArgs<'_>) -> Result<(), Errno>;
    let cmds: [BatchFn; 4] = [
        MapHandle::lookup_batch,
        MapHandle::lookup_and_delete_batch,
        MapHandle::update_batch,
        MapHandle::delete_batch,
    ];
    for cmd in cmds {
        let mut out = [0u8; 4];
        let mut args = BatchArgs {
            in_batch: None,
            out_batch: &mut out,
            keys: &mut [],
            values: &mut [],
            count: 1,
            elem_flags: 0,
            flags: 0,
        };
        assert_eq!(cmd(&h, &mut args), Err(Errno::ENOTSUPP));
    }
    // kernel 6.18: the largest mapping is the consumer page, the producer page and the data
    // twice (one page more is EINVAL).
    let (_, len) = h.map().ops().mmap(h.map()).unwrap();
    assert_eq!(len, 2 * PAGE + 2 * 8192);
    // Not a ring buffer: the helpers find nothing.
    let q = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_QUEUE, 0, 4, 4))
        .unwrap();
    assert!(ringbuf_reserve(q.map(), 8, 0).is_none());
    assert_eq!(ringbuf_output(q.map(), &[0; 8], 0), Err(Errno::EINVAL));
    assert_eq!(ringbuf_query(q.map(), BPF_RB_RING_SIZE), 0);
    assert_eq!(
        RingBufConsumer::new(q.map()).map(|_| ()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn kernel_trace_reserve_discard_output_wrap() {
    // The same sequence as the kernel probe, step by step (kernel 6.18 values throughout).
    let rt = rt();
    let h = ring(&rt, 8192);
    let m: &BpfMap = h.map();
    let mut c = RingBufConsumer::new(m).unwrap();
    assert_eq!(queries(m), [0, 8192, 0, 0, 0]);

    // reserve(8) + write + submit: header (8, pg_off 3); producer 16, pending still 0.
    let p = ringbuf_reserve(m, 8, 0).unwrap();
    fill(p, &0x41u64.to_le_bytes());
    // SAFETY: reserved above, committed once.
    unsafe { ringbuf_submit(p, 0) };
    assert_eq!(positions(m), (0, 16, 0));
    assert_eq!(header(m, 0), (8, 3));
    // reserve(20) + discard: len carries the discard bit; the reserve advanced pending to 16.
    let p = ringbuf_reserve(m, 20, 0).unwrap();
    // SAFETY: reserved above, committed once.
    unsafe { ringbuf_discard(p, 0) };
    assert_eq!(positions(m), (0, 48, 16));
    assert_eq!(header(m, 16), (BPF_RINGBUF_DISCARD_BIT | 20, 3));
    // output(13 bytes).
    let data: Vec<u8> = [0x1111u64.to_le_bytes(), 0x2222u64.to_le_bytes()].concat();
    ringbuf_output(m, &data[..13], 0).unwrap();
    assert_eq!(positions(m), (0, 72, 48));
    assert_eq!(header(m, 48), (13, 3));
    assert_eq!(queries(m), [72, 8192, 0, 72, 0]);

    // The consumer sees the submitted and output records, not the discarded one.
    let mut got = Vec::new();
    assert_eq!(
        c.consume(|s| {
            got.push(s.to_vec());
            ControlFlow::Continue(())
        }),
        2
    );
    assert_eq!(got, [0x41u64.to_le_bytes().to_vec(), data[..13].to_vec()]);
    assert_eq!(queries(m), [0, 8192, 72, 72, 0]);

    // 4000-byte records (4008 with header): two fit, the third would run more than 8191
    // bytes ahead of the consumer.
    assert!(reserve_submit(m, 4000, 0x55, 0));
    assert_eq!(positions(m).1, 4080);
    assert!(reserve_submit(m, 4000, 0x55, 0));
    assert_eq!(positions(m).1, 8088);
    assert!(!reserve_submit(m, 4000, 0x55, 0));
    assert_eq!(header(m, 72), (4000, 3));
    assert_eq!(header(m, 4080), (4000, 3));
    assert_eq!(c.consume(|_| ControlFlow::Continue(())), 2);
    assert_eq!(queries(m), [0, 8192, 8088, 8088, 0]);
    // Past the end: the record at 8088 wraps (its header on data page 1, pg_off 4); the next
    // header lands at offset 3904 (pg_off 3).
    assert!(reserve_submit(m, 4000, 0x66, 0));
    assert!(reserve_submit(m, 4000, 0x77, 0));
    assert!(!reserve_submit(m, 4000, 0x88, 0));
    assert_eq!(positions(m).1, 16104);
    assert_eq!(header(m, 8088), (4000, 4));
    assert_eq!(header(m, 3904), (4000, 3));
    // The wrapped sample reads back contiguously.
    let mut got = Vec::new();
    c.consume(|s| {
        got.push(s.to_vec());
        ControlFlow::Continue(())
    });
    assert_eq!(got, [vec![0x66; 4000], vec![0x77; 4000]]);

    // Capacity: with the consumer caught up, 8176 bytes (8184 with header) fit, 8177 do not.
    for (size, fits) in [(8176, true), (8177, false), (8184, false)] {
        c.consume(|_| ControlFlow::Continue(()));
        assert_eq!(reserve_submit(m, size, 1, 0), fits, "size {size}");
    }
    // kernel 6.18: reserve flags must be 0; output takes only the two wakeup bits; an unknown
    // query flag is 0.
    c.consume(|_| ControlFlow::Continue(()));
    assert!(ringbuf_reserve(m, 8, 1).is_none());
    assert_eq!(ringbuf_output(m, &[0; 8], 4), Err(Errno::EINVAL));
    assert_eq!(
        ringbuf_output(m, &[0; 8], BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP),
        Ok(())
    );
    assert_eq!(ringbuf_query(m, 5), 0);
    // Records above RINGBUF_MAX_RECORD_SZ or the ring never fit.
    assert!(ringbuf_reserve(m, RINGBUF_MAX_RECORD_SZ + 1, 0).is_none());
    assert!(ringbuf_reserve(m, 8192, 0).is_none());
    assert_eq!(ringbuf_output(m, &vec![0; 8200], 0), Err(Errno::EAGAIN));
}

#[test]
fn busy_record_blocks_consumer_and_commit_order_is_reserve_order() {
    let rt = rt();
    let h = ring(&rt, 4096);
    let m: &BpfMap = h.map();
    let mut c = RingBufConsumer::new(m).unwrap();
    let a = ringbuf_reserve(m, 8, 0).unwrap();
    let b = ringbuf_reserve(m, 8, 0).unwrap();
    let d = ringbuf_reserve(m, 8, 0).unwrap();
    fill(a, b"AAAAAAAA");
    fill(b, b"BBBBBBBB");
    fill(d, b"DDDDDDDD");
    assert_eq!(header(m, 0).0, BPF_RINGBUF_BUSY_BIT | 8);
    // SAFETY: B was reserved above and is committed once (as are A and D below).
    unsafe { ringbuf_submit(b, 0) };
    // A is still busy: nothing can be consumed, although B is committed.
    assert_eq!(c.next_record(), None);
    assert_eq!(c.avail_data(), 48);
    // SAFETY: as above.
    unsafe { ringbuf_discard(d, 0) };
    // SAFETY: as above.
    unsafe { ringbuf_submit(a, 0) };
    assert_eq!(c.next_record().as_deref(), Some(&b"AAAAAAAA"[..]));
    assert_eq!(c.next_record().as_deref(), Some(&b"BBBBBBBB"[..]));
    assert_eq!(c.next_record(), None, "discarded record skipped");
    assert_eq!(c.avail_data(), 0);

    // While the oldest record stays busy, the producer may not run a full ring ahead of it
    // even when the consumer has caught up (pending_pos check).
    let busy = ringbuf_reserve(m, 8, 0).unwrap();
    let mut n = 0;
    while reserve_submit(m, 100, 2, 0) {
        n += 1;
    }
    // 4096 - 16 (the busy record) leaves room for 36 records of 112 bytes (4032 <= 4095 - 16).
    assert_eq!(n, 36);
    assert_eq!(c.consume(|_| ControlFlow::Continue(())), 0);
    // SAFETY: reserved above, committed once.
    unsafe { ringbuf_submit(busy, 0) };
    assert_eq!(c.consume(|_| ControlFlow::Continue(())), 37);
    // Break stops after the current record, which counts as consumed.
    for i in 0..3 {
        assert!(reserve_submit(m, 8, i, 0));
    }
    let mut seen = Vec::new();
    assert_eq!(
        c.consume(|s| {
            seen.push(s[0]);
            ControlFlow::Break(())
        }),
        1
    );
    assert_eq!(
        c.consume_n(5, |s| {
            seen.push(s[0]);
            ControlFlow::Continue(())
        }),
        2
    );
    assert_eq!(seen, [0, 1, 2]);
}

#[test]
fn wakeup_decisions() {
    let rt = rt();
    let h = ring(&rt, 4096);
    let m: &BpfMap = h.map();
    let mut c = RingBufConsumer::new(m).unwrap();
    // The record at the consumer position wakes; later ones do not; NO_WAKEUP suppresses,
    // FORCE_WAKEUP always wakes.
    assert!(reserve_submit(m, 8, 0, 0));
    assert_eq!(c.wakeups(), 1);
    assert!(reserve_submit(m, 8, 0, 0));
    assert_eq!(c.wakeups(), 1);
    assert!(reserve_submit(m, 8, 0, BPF_RB_FORCE_WAKEUP));
    assert_eq!(c.wakeups(), 2);
    c.consume(|_| ControlFlow::Continue(()));
    assert!(reserve_submit(m, 8, 0, BPF_RB_NO_WAKEUP));
    assert_eq!(c.wakeups(), 2);
    c.consume(|_| ControlFlow::Continue(()));
    ringbuf_output(m, &[1; 8], 0).unwrap();
    assert_eq!(c.wakeups(), 3);
}

#[test]
fn producer_consumer_threads() {
    const N: u64 = 20_000;
    let rt = rt();
    let h = ring(&rt, 4096);
    let mut c = RingBufConsumer::new(h.map()).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let m: &BpfMap = h.map();
            for i in 0..N {
                // Variable sizes so that records wrap at every possible offset.
                let len = 8 + (i % 29) as usize;
                let mut rec = vec![(i % 251) as u8; len];
                rec[..8].copy_from_slice(&i.to_le_bytes());
                while ringbuf_output(m, &rec, 0) == Err(Errno::EAGAIN) {
                    std::thread::yield_now();
                }
            }
        });
        s.spawn(move || {
            let mut next = 0u64;
            while next < N {
                let n = c.consume(|s| {
                    let i = u64::from_le_bytes(s[..8].try_into().unwrap());
                    assert_eq!(i, next, "records arrive in order");
                    assert_eq!(s.len(), 8 + (i % 29) as usize);
                    assert!(s[8..].iter().all(|&b| b == (i % 251) as u8));
                    next += 1;
                    ControlFlow::Continue(())
                });
                if n == 0 {
                    std::thread::yield_now();
                }
            }
            assert_eq!(c.avail_data(), 0);
        });
    });
}

#[test]
fn two_producers_reserve_submit() {
    const N: u32 = 5_000;
    let rt = rt();
    let h = ring(&rt, 8192);
    let mut c = RingBufConsumer::new(h.map()).unwrap();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let h = &h;
            s.spawn(move || {
                let m: &BpfMap = h.map();
                for i in 0..N {
                    let p = loop {
                        match ringbuf_reserve(m, 8, 0) {
                            Some(p) => break p,
                            None => std::thread::yield_now(),
                        }
                    };
                    fill(p, &((t as u64) << 32 | i as u64).to_le_bytes());
                    if i % 7 == 3 {
                        // SAFETY: reserved above, committed once.
                        unsafe { ringbuf_discard(p, 0) };
                    } else {
                        // SAFETY: reserved above, committed once.
                        unsafe { ringbuf_submit(p, 0) };
                    }
                }
            });
        }
        s.spawn(move || {
            let mut next = [0u32; 2];
            let want = (0..N).filter(|i| i % 7 != 3).count() * 2;
            let mut seen = 0;
            while seen < want {
                seen += c.consume(|s| {
                    let w = u64::from_le_bytes(s.try_into().unwrap());
                    let (t, i) = ((w >> 32) as usize, w as u32);
                    // Per producer, records arrive in reservation order, minus discards.
                    assert!(i >= next[t] && i % 7 != 3);
                    next[t] = i + 1;
                    ControlFlow::Continue(())
                });
                std::thread::yield_now();
            }
        });
    });
}

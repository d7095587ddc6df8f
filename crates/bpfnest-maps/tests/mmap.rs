// SPDX-License-Identifier: Apache-2.0 OR MIT
//! mmap of map handles (`bpf_map_mmap`, `array_map_mmap`); every result checked on Linux 6.18.

use bpfnest_maps::record::{BtfField, BtfFieldKind, BtfRecord};
use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, Errno, MapAttr, Runtime};

const PAGE: usize = 4096;

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

#[test]
fn which_maps_can_be_mapped() {
    let rt = rt();
    let e = |a: MapAttr| {
        rt.map_create(&a)
            .unwrap()
            .mmap(0, PAGE, false, true)
            .map(|_| ())
            .unwrap_err()
    };
    // kernel 6.18: no map_mmap → ENOTSUPP (AOM is spec row 71); an ARRAY without the flag EINVAL.
    let tmpl = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 2))
        .unwrap();
    assert_eq!(
        e(MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw())),
        Errno::ENOTSUPP
    );
    assert_eq!(
        e(MapAttr::new(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, 4)),
        Errno::ENOTSUPP
    );
    assert_eq!(e(MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 4)), Errno::ENOTSUPP);
    assert_eq!(e(MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4)), Errno::EINVAL);
    // kernel 6.18: an mmapable array whose value has a spin lock is created, but not mapped.
    let rec = BtfRecord::new(
        vec![BtfField {
            offset: 4,
            kind: BtfFieldKind::SpinLock,
        }],
        8,
    )
    .unwrap();
    let sl = rt
        .map_create_with_record(
            &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE),
            rec,
        )
        .unwrap();
    assert_eq!(sl.mmap(0, PAGE, false, true).unwrap_err(), Errno::ENOTSUPP);
}

#[test]
fn bounds_and_sharing() {
    let rt = rt();
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE))
        .unwrap();
    // kernel 6.18: MAP_PRIVATE EINVAL; past PAGE_ALIGN(max_entries * elem_size) EINVAL.
    assert_eq!(m.mmap(0, PAGE, true, false).unwrap_err(), Errno::EINVAL);
    assert_eq!(m.mmap(0, 2 * PAGE, false, true).unwrap_err(), Errno::EINVAL);
    assert_eq!(m.mmap(PAGE, PAGE, false, true).unwrap_err(), Errno::EINVAL);
    // kernel 6.18: 1024 x 8 bytes = two pages map; three do not.
    let big = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1024).flags(BPF_F_MMAPABLE))
        .unwrap();
    assert_eq!(
        big.mmap(0, 2 * PAGE, false, true).map(|m| m.len()),
        Ok(2 * PAGE)
    );
    assert_eq!(
        big.mmap(0, 3 * PAGE, false, true).unwrap_err(),
        Errno::EINVAL
    );
}

#[test]
fn writes_are_shared_both_ways() {
    let rt = rt();
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE))
        .unwrap();
    let w = m.mmap(0, PAGE, true, true).unwrap();
    // kernel 6.18: a store through the mapping is what a lookup returns, and the reverse.
    w.write(8, &77u64.to_ne_bytes()).unwrap();
    let mut v = [0u8; 8];
    m.lookup_elem(Some(&1u32.to_ne_bytes()), &mut v, 0).unwrap();
    assert_eq!(u64::from_ne_bytes(v), 77);
    m.update_elem(Some(&2u32.to_ne_bytes()), &99u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    w.read(16, &mut v).unwrap();
    assert_eq!(u64::from_ne_bytes(v), 99);
    assert_eq!(w.read(PAGE - 4, &mut v), Err(Errno::EFAULT));
    let r = m.mmap(0, PAGE, false, true).unwrap();
    assert_eq!(r.write(0, &[1]), Err(Errno::EFAULT));
}

#[test]
fn freeze_and_modes() {
    let rt = rt();
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE))
        .unwrap();
    // kernel 6.18: a writable mapping blocks freeze (EBUSY) until it is unmapped; afterwards a
    // writable mapping of the frozen map is EPERM, a read-only one fine.
    let w = m.mmap(0, PAGE, true, true).unwrap();
    assert_eq!(m.freeze(), Err(Errno::EBUSY));
    drop(w);
    assert_eq!(m.freeze(), Ok(()));
    assert_eq!(m.mmap(0, PAGE, true, true).unwrap_err(), Errno::EPERM);
    assert!(m.mmap(0, PAGE, false, true).is_ok());
    // kernel 6.18: a read-only handle cannot be mapped at all (EACCES writable, EINVAL
    // read-only); a write-only handle neither (EACCES).
    let ro = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE | BPF_F_RDONLY))
        .unwrap();
    assert_eq!(ro.mmap(0, PAGE, true, true).unwrap_err(), Errno::EACCES);
    assert_eq!(ro.mmap(0, PAGE, false, true).unwrap_err(), Errno::EINVAL);
    let wo = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE | BPF_F_WRONLY))
        .unwrap();
    assert_eq!(wo.mmap(0, PAGE, false, true).unwrap_err(), Errno::EACCES);
    assert_eq!(wo.mmap(0, PAGE, true, true).unwrap_err(), Errno::EACCES);
    // kernel 6.18: BPF_F_RDONLY_PROG refuses writable mappings (EACCES), not read-only ones.
    let rp = rt
        .map_create(
            &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE | BPF_F_RDONLY_PROG),
        )
        .unwrap();
    assert_eq!(rp.mmap(0, PAGE, true, true).unwrap_err(), Errno::EACCES);
    assert!(rp.mmap(0, PAGE, false, true).is_ok());
}

#[test]
fn mapping_keeps_the_map_alive() {
    let rt = rt();
    let m = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4).flags(BPF_F_MMAPABLE))
        .unwrap();
    m.update_elem(Some(&0u32.to_ne_bytes()), &5u64.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let r = m.mmap(0, PAGE, false, true).unwrap();
    let id = m.id();
    drop(m);
    // The mapping holds a reference (like a VMA's file), so the map and its id stay.
    assert!(rt.map_get_fd_by_id(id, 0).is_ok());
    let mut v = [0u8; 8];
    r.read(0, &mut v).unwrap();
    assert_eq!(u64::from_ne_bytes(v), 5);
    drop(r);
    assert_eq!(rt.map_get_fd_by_id(id, 0).unwrap_err(), Errno::ENOENT);
}

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! The runtime's object table: ids, handles (refcnt + usercnt, modes), pins, info, and the
//! generic checks of BPF_MAP_CREATE and the element commands. Every expectation was checked on
//! Linux 6.18 ("kernel 6.18:" notes).

use bpfnest_maps::uapi::*;
use bpfnest_maps::{Config, Errno, MapAttr, Runtime};

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn array() -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 4)
}

#[test]
fn create_generic_checks() {
    let rt = rt();
    let e = |a: MapAttr| rt.map_create(&a).map(|_| ()).unwrap_err();
    // kernel 6.18: 16 name bytes without NUL, and a '-', are EINVAL; 15 bytes and "a.b_c" are fine.
    let mut a = array();
    a.map_name = [b'a'; 16];
    assert_eq!(e(a), Errno::EINVAL);
    assert!(rt.map_create(&array().name("aaaaaaaaaaaaaaa")).is_ok());
    assert_eq!(e(array().name("a-b")), Errno::EINVAL);
    assert_eq!(
        rt.map_create(&array().name("a.b_c"))
            .unwrap()
            .info()
            .name_str(),
        "a.b_c"
    );
    // kernel 6.18: RDONLY|WRONLY, map_extra on a non-bloom map, unknown type: EINVAL.
    assert_eq!(e(array().flags(BPF_F_RDONLY | BPF_F_WRONLY)), Errno::EINVAL);
    assert_eq!(e(array().extra(1)), Errno::EINVAL);
    assert_eq!(e(MapAttr::new(999, 4, 8, 4)), Errno::EINVAL);
    // kernel 6.18: a BTF key id without a value id: EINVAL.
    let mut a = array();
    a.btf_key_type_id = 1;
    assert_eq!(e(a), Errno::EINVAL);
    // kernel 6.18: BTF ids with a handle that is not open: EBADF; with handle 0 (stdin): EINVAL.
    let mut a = array();
    a.btf_key_type_id = 1;
    a.btf_value_type_id = 2;
    a.btf_fd = 999;
    assert_eq!(e(a), Errno::EBADF);
    a.btf_fd = 0;
    assert_eq!(e(a), Errno::EINVAL);
    // kernel 6.18: NUMA node 1 on a one-node machine: EINVAL; node 0 and NUMA_NO_NODE: fine;
    // numa_node without BPF_F_NUMA_NODE is ignored.
    let mut a = array().flags(BPF_F_NUMA_NODE);
    a.numa_node = 1;
    assert_eq!(e(a), Errno::EINVAL);
    a.numa_node = NUMA_NO_NODE;
    assert!(rt.map_create(&a).is_ok());
    let mut a = array();
    a.numa_node = 5;
    assert!(rt.map_create(&a).is_ok());
    // kernel 6.18: offload to loopback (ifindex 1): EOPNOTSUPP; to a missing device: EINVAL;
    // an offload of a type that cannot be offloaded: EINVAL.
    let mut a = array();
    a.map_ifindex = 1;
    assert_eq!(e(a), Errno::EOPNOTSUPP);
    a.map_ifindex = 999;
    assert_eq!(e(a), Errno::EINVAL);
    // kernel 6.18: BPF_F_TOKEN_FD without a token: EINVAL.
    assert_eq!(e(array().flags(BPF_F_TOKEN_FD)), Errno::EINVAL);
}

#[test]
fn ids_are_cyclic_and_never_reused_at_once() {
    let rt = rt();
    let a = rt.map_create(&array()).unwrap();
    let first = a.id();
    assert_eq!(first, 1);
    drop(a);
    // kernel 6.18: a closed map's id is not handed out again by the next create.
    let b = rt.map_create(&array()).unwrap();
    assert_eq!(b.id(), first + 1);
    assert_eq!(rt.map_get_fd_by_id(first, 0).unwrap_err(), Errno::ENOENT);
    assert_eq!(rt.map_get_next_id(0), Ok(b.id()));
    assert_eq!(rt.map_get_next_id(b.id()), Err(Errno::ENOENT));
}

#[test]
fn handle_modes() {
    let rt = rt();
    let k = 0u32.to_ne_bytes();
    let mut v = [0u8; 8];
    // kernel 6.18: RDONLY is dropped from the stored flags; writes EPERM (before the F_LOCK
    // check), reads fine.
    let ro = rt.map_create(&array().flags(BPF_F_RDONLY)).unwrap();
    assert_eq!(ro.info().map_flags, 0);
    assert_eq!(ro.update_elem(Some(&k), &v, BPF_ANY), Err(Errno::EPERM));
    assert_eq!(ro.update_elem(Some(&k), &v, BPF_F_LOCK), Err(Errno::EPERM));
    assert_eq!(ro.delete_elem(Some(&k)), Err(Errno::EPERM));
    assert_eq!(ro.freeze(), Err(Errno::EPERM));
    assert_eq!(
        ro.lookup_and_delete_elem(Some(&k), &mut v, 0),
        Err(Errno::EPERM)
    );
    assert_eq!(ro.lookup_elem(Some(&k), &mut v, 0), Ok(()));
    // kernel 6.18: WRONLY refuses lookups, next_key and lookup batches; it may freeze.
    let wo = rt.map_create(&array().flags(BPF_F_WRONLY)).unwrap();
    assert_eq!(wo.lookup_elem(Some(&k), &mut v, 0), Err(Errno::EPERM));
    let mut next = [0u8; 4];
    assert_eq!(wo.get_next_key(None, &mut next), Err(Errno::EPERM));
    assert_eq!(wo.update_elem(Some(&k), &v, BPF_ANY), Ok(()));
    assert_eq!(wo.freeze(), Ok(()));
    assert_eq!(wo.update_elem(Some(&k), &v, BPF_ANY), Err(Errno::EPERM));
    // get-by-id with modes. kernel 6.18: unknown open flags and RDONLY|WRONLY: EINVAL.
    let rw = rt.map_create(&array()).unwrap();
    let ro2 = rt.map_get_fd_by_id(rw.id(), BPF_F_RDONLY).unwrap();
    assert_eq!(ro2.update_elem(Some(&k), &v, BPF_ANY), Err(Errno::EPERM));
    assert_eq!(rt.map_get_fd_by_id(rw.id(), 1).unwrap_err(), Errno::EINVAL);
    assert_eq!(
        rt.map_get_fd_by_id(rw.id(), BPF_F_RDONLY | BPF_F_WRONLY)
            .unwrap_err(),
        Errno::EINVAL
    );
    assert_eq!(
        rt.map_get_fd_by_id(0x7fff_fff0, 0).unwrap_err(),
        Errno::ENOENT
    );
    // kernel 6.18: BPF_F_TOKEN_FD is not an open flag (found by kdiff_handles).
    assert_eq!(
        rt.map_get_fd_by_id(rw.id(), BPF_F_TOKEN_FD).unwrap_err(),
        Errno::EINVAL
    );
}

#[test]
fn element_command_generic_checks() {
    let rt = rt();
    let a = rt.map_create(&array()).unwrap();
    let k = 0u32.to_ne_bytes();
    let mut v = [0u8; 8];
    // kernel 6.18: lookup flags other than F_LOCK, and F_LOCK without a spin lock: EINVAL.
    assert_eq!(
        a.lookup_elem(Some(&k), &mut v, BPF_NOEXIST),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        a.lookup_elem(Some(&k), &mut v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(a.update_elem(Some(&k), &v, BPF_F_LOCK), Err(Errno::EINVAL));
    assert_eq!(a.update_elem(Some(&k), &v, 8), Err(Errno::EINVAL));
    // Wrong buffer sizes are bpfnest's own EINVAL (the kernel reads what it needs).
    assert_eq!(
        a.lookup_elem(Some(&k), &mut [0u8; 4], 0),
        Err(Errno::EINVAL)
    );
    assert_eq!(a.update_elem(Some(&[0u8; 3]), &v, 0), Err(Errno::EINVAL));
    // kernel 6.18: freeze, then updates EPERM, lookups fine, a second freeze EPERM.
    assert_eq!(a.freeze(), Ok(()));
    assert!(a.info().frozen);
    assert_eq!(a.update_elem(Some(&k), &v, BPF_ANY), Err(Errno::EPERM));
    assert_eq!(a.lookup_elem(Some(&k), &mut v, 0), Ok(()));
    assert_eq!(a.freeze(), Err(Errno::EPERM));
}

#[test]
fn pins() {
    let rt = rt();
    let a = rt.map_create(&array()).unwrap();
    let id = a.id();
    // kernel 6.18: pin twice EEXIST; missing directory ENOENT; get of a missing path ENOENT;
    // unknown file flags EINVAL; RDONLY get gives a read-only handle.
    assert_eq!(rt.obj_pin(&a, "/x"), Ok(()));
    assert_eq!(rt.obj_pin(&a, "/x"), Err(Errno::EEXIST));
    assert_eq!(rt.obj_pin(&a, "/nodir/x"), Err(Errno::ENOENT));
    assert_eq!(rt.obj_get("/missing", 0).unwrap_err(), Errno::ENOENT);
    assert_eq!(rt.obj_get("/x", 1).unwrap_err(), Errno::EINVAL);
    let ro = rt.obj_get("/x", BPF_F_RDONLY).unwrap();
    assert_eq!(
        ro.update_elem(Some(&0u32.to_ne_bytes()), &[0u8; 8], 0),
        Err(Errno::EPERM)
    );
    drop(ro);
    // The pin keeps the map alive without any handle.
    drop(a);
    let again = rt.obj_get("/x", 0).unwrap();
    assert_eq!(again.id(), id);
    drop(again);
    assert_eq!(rt.pin_mkdir("/dir"), Ok(()));
    let b = rt.map_create(&array()).unwrap();
    assert_eq!(rt.obj_pin(&b, "/dir/b"), Ok(()));
    assert_eq!(rt.unpin("/dir"), Err(Errno::ENOTEMPTY));
    assert_eq!(
        rt.pinned_paths(),
        vec!["/dir/b".to_string(), "/x".to_string()]
    );
    assert_eq!(rt.unpin("/dir/b"), Ok(()));
    assert_eq!(rt.unpin("/dir"), Ok(()));
    assert_eq!(rt.unpin("/x"), Ok(()));
    // The last reference is gone with the pin: the id disappears.
    assert_eq!(rt.map_get_fd_by_id(id, 0).unwrap_err(), Errno::ENOENT);
}

#[test]
fn handle_numbers_behave_like_fds() {
    let rt = rt();
    // 0, 1 and 2 are taken by non-map objects, as stdin/stdout/stderr are.
    let a = rt.map_create(&array()).unwrap();
    assert_eq!(a.raw(), 3);
    let b = rt.map_create(&array()).unwrap();
    assert_eq!(b.raw(), 4);
    drop(a);
    // Lowest free number first, as alloc_fd does.
    let c = rt.map_create(&array()).unwrap();
    assert_eq!(c.raw(), 3);
    let d = c.try_clone();
    assert_eq!(d.id(), c.id());
    assert_eq!(d.raw(), 5);
}

#[test]
fn usercnt_and_refcnt() {
    let rt = rt();
    let a = rt.map_create(&array()).unwrap();
    let m = a.map().map_ref().clone();
    assert_eq!(m.usercnt(), 1);
    let b = a.try_clone();
    assert_eq!(m.usercnt(), 2);
    drop(a);
    drop(b);
    // A plain reference (a program's, an outer slot's) keeps the map but not its user count.
    assert_eq!(m.usercnt(), 0);
    assert!(rt.map_get_fd_by_id(m.id(), 0).is_ok());
    let id = m.id();
    drop(m);
    assert_eq!(rt.map_get_fd_by_id(id, 0).unwrap_err(), Errno::ENOENT);
}

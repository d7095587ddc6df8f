// SPDX-License-Identifier: Apache-2.0 OR MIT
//! `BPF_MAP_TYPE_LPM_TRIE` through the public API, modelled on the kernel selftests
//! `map_tests/lpm_trie_map_basic_ops.c` (formerly `test_lpm_map.c`).
//!
//! Every errno, walk order and lookup result written as "kernel 6.18: ..." was checked on a
//! running 6.18 kernel with the same op sequence. The randomized tests compare against `Model`,
//! a brute-force list of prefixes (the selftest's "trivial longest prefix match", tlpm).

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread;

use bpfnest_maps::registry::{self, BtfKind};
use bpfnest_maps::uapi::*;
use bpfnest_maps::{
    BatchArgs, BtfField, BtfFieldKind, BtfObject, BtfRecord, Caps, Config, Errno, MapAttr,
    MapHandle, OpCtx, Runtime,
};

const NP: u32 = BPF_F_NO_PREALLOC;

fn rt() -> Runtime {
    Runtime::new(Config {
        nr_cpus: 2,
        ..Config::default()
    })
}

fn lpm(key_size: u32, value_size: u32, max_entries: u32) -> MapAttr {
    MapAttr::new(BPF_MAP_TYPE_LPM_TRIE, key_size, value_size, max_entries).flags(NP)
}

/// `struct bpf_lpm_trie_key_u8`: host-order prefix length, then the data.
fn key(plen: u32, data: &[u8]) -> Vec<u8> {
    let mut k = plen.to_ne_bytes().to_vec();
    k.extend_from_slice(data);
    k
}

/// An IPv4 key.
fn v4(plen: u32, a: [u8; 4]) -> Vec<u8> {
    key(plen, &a)
}

fn show_v4(k: &[u8]) -> String {
    let plen = u32::from_ne_bytes(k[..4].try_into().unwrap());
    format!("{}.{}.{}.{}/{}", k[4], k[5], k[6], k[7], plen)
}

fn val(x: u32) -> [u8; 4] {
    x.to_ne_bytes()
}

/// The value of the longest match for `k`, as `bpf_map_lookup_elem` from user space gives it.
fn get(h: &MapHandle, k: &[u8]) -> Result<u32, Errno> {
    let mut v = [0u8; 4];
    h.lookup_elem(Some(k), &mut v, 0)
        .map(|()| u32::from_ne_bytes(v))
}

/// Every key, by `get_next_key` from the start; the walk must end with `ENOENT`.
fn walk(h: &MapHandle) -> Vec<Vec<u8>> {
    let ks = h.info().key_size as usize;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut next = vec![0u8; ks];
    loop {
        match h.get_next_key(out.last().map(|k| k.as_slice()), &mut next) {
            Ok(()) => out.push(next.clone()),
            Err(e) => {
                assert_eq!(e, Errno::ENOENT);
                return out;
            }
        }
        assert!(
            out.len() <= h.info().max_entries as usize,
            "walk does not terminate"
        );
    }
}

fn walk_v4(h: &MapHandle) -> Vec<String> {
    walk(h).iter().map(|k| show_v4(k)).collect()
}

fn next_v4(h: &MapHandle, k: Option<&[u8]>) -> Result<String, Errno> {
    let mut next = [0u8; 8];
    h.get_next_key(k, &mut next).map(|()| show_v4(&next))
}

/// xorshift64*: deterministic, seedable, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The reference model (tlpm).

fn bit(d: &[u8], i: u32) -> u8 {
    (d[i as usize / 8] >> (7 - i % 8)) & 1
}

/// Leading bits `a` and `b` share, at most `limit`.
fn common_bits(a: &[u8], b: &[u8], limit: u32) -> u32 {
    let mut n = 0u32;
    for (x, y) in a.iter().zip(b) {
        if n >= limit {
            break;
        }
        if x != y {
            return (n + (x ^ y).leading_zeros()).min(limit);
        }
        n += 8;
    }
    n.min(limit)
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    plen: u32,
    /// As last written, bits past `plen` included (the trie stores and returns them).
    data: Vec<u8>,
    value: Vec<u8>,
}

impl Entry {
    fn key(&self) -> Vec<u8> {
        key(self.plen, &self.data)
    }
}

/// Postorder of the trie, as a comparison: a longer prefix comes before a shorter one it
/// extends; otherwise the side with a 0 at the first differing bit comes first.
fn postorder(a: &Entry, b: &Entry) -> Ordering {
    let lim = a.plen.min(b.plen);
    let m = common_bits(&a.data, &b.data, lim);
    if m == lim {
        b.plen.cmp(&a.plen)
    } else if bit(&a.data, m) == 0 {
        Ordering::Less
    } else {
        Ordering::Greater
    }
}

/// A linear list of prefixes, with the trie's update/delete errno rules.
struct Model {
    entries: Vec<Entry>,
    max_entries: usize,
    max_prefixlen: u32,
}

impl Model {
    fn new(data_size: usize, max_entries: usize) -> Model {
        Model {
            entries: Vec::new(),
            max_entries,
            max_prefixlen: 8 * data_size as u32,
        }
    }

    fn find(&self, plen: u32, data: &[u8]) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.plen == plen && common_bits(&e.data, data, plen) == plen)
    }

    fn update(&mut self, plen: u32, data: &[u8], value: &[u8], flags: u64) -> Result<(), Errno> {
        if flags > BPF_EXIST || plen > self.max_prefixlen {
            return Err(Errno::EINVAL);
        }
        let e = Entry {
            plen,
            data: data.to_vec(),
            value: value.to_vec(),
        };
        match self.find(plen, data) {
            Some(_) if flags == BPF_NOEXIST => Err(Errno::EEXIST),
            Some(i) => {
                self.entries[i] = e;
                Ok(())
            }
            None if flags == BPF_EXIST => Err(Errno::ENOENT),
            None if self.entries.len() == self.max_entries => Err(Errno::ENOSPC),
            None => {
                self.entries.push(e);
                Ok(())
            }
        }
    }

    fn delete(&mut self, plen: u32, data: &[u8]) -> Result<(), Errno> {
        if plen > self.max_prefixlen {
            return Err(Errno::EINVAL);
        }
        let i = self.find(plen, data).ok_or(Errno::ENOENT)?;
        self.entries.swap_remove(i);
        Ok(())
    }

    /// Longest prefix no longer than the key's own `plen` that the key matches.
    fn lookup(&self, plen: u32, data: &[u8]) -> Option<&Entry> {
        if plen > self.max_prefixlen {
            return None;
        }
        self.entries
            .iter()
            .filter(|e| e.plen <= plen && common_bits(&e.data, data, e.plen) == e.plen)
            .max_by_key(|e| e.plen)
    }

    fn sorted(&self) -> Vec<Entry> {
        let mut v = self.entries.clone();
        v.sort_by(postorder);
        v
    }
}

#[test]
fn model_self_test() {
    // test_lpm_basic: the oracle itself.
    let mut m = Model::new(2, 100);
    assert!(m.lookup(8, &[0xff, 0]).is_none());
    m.update(8, &[0xff, 0], &[1], BPF_ANY).unwrap();
    assert_eq!(m.lookup(8, &[0xff, 0]).unwrap().plen, 8);
    assert_eq!(m.lookup(16, &[0xff, 0xff]).unwrap().plen, 8);
    assert_eq!(m.lookup(16, &[0xff, 0x00]).unwrap().plen, 8);
    assert!(m.lookup(8, &[0x7f, 0]).is_none());
    assert!(m.lookup(8, &[0xfe, 0]).is_none());
    assert!(m.lookup(7, &[0xff, 0]).is_none());
    m.update(16, &[0xff, 0xff], &[2], BPF_ANY).unwrap();
    assert_eq!(m.lookup(16, &[0xff, 0xff]).unwrap().plen, 16);
    assert_eq!(m.lookup(15, &[0xff, 0xff]).unwrap().plen, 8);
    assert!(m.lookup(16, &[0x7f, 0xff]).is_none());
    m.delete(16, &[0xff, 0xff]).unwrap();
    assert_eq!(m.lookup(16, &[0xff, 0xff]).unwrap().plen, 8);
    m.delete(8, &[0xff, 0]).unwrap();
    assert!(m.lookup(8, &[0xff, 0]).is_none());
}

// ---------------------------------------------------------------------------------------------
// Creation.

#[test]
fn create_errno() {
    let rt = rt();
    let e = |a: MapAttr| rt.map_create(&a).map(|_| ()).err();
    // kernel 6.18: the plain case, then max_entries 0 and a missing BPF_F_NO_PREALLOC: EINVAL.
    assert_eq!(e(lpm(8, 4, 16)), None);
    assert_eq!(e(lpm(8, 4, 0)), Some(Errno::EINVAL));
    assert_eq!(e(lpm(8, 4, 16).flags(0)), Some(Errno::EINVAL));
    assert_eq!(e(lpm(8, 4, 0).flags(0)), Some(Errno::EINVAL));
    // kernel 6.18: LPM_CREATE_FLAG_MASK is NO_PREALLOC | NUMA_NODE | the access flags.
    for f in [
        BPF_F_NUMA_NODE,
        BPF_F_RDONLY,
        BPF_F_WRONLY,
        BPF_F_RDONLY_PROG,
        BPF_F_WRONLY_PROG,
    ] {
        assert_eq!(e(lpm(8, 4, 16).flags(NP | f)), None, "flag {f:#x}");
    }
    for f in [
        BPF_F_RDONLY | BPF_F_WRONLY,
        BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG,
        BPF_F_NO_COMMON_LRU,
        BPF_F_STACK_BUILD_ID,
        BPF_F_ZERO_SEED,
        BPF_F_CLONE,
        BPF_F_MMAPABLE,
        BPF_F_PRESERVE_ELEMS,
        BPF_F_INNER_MAP,
        BPF_F_NO_USER_CONV,
        1 << 31,
    ] {
        assert_eq!(
            e(lpm(8, 4, 16).flags(NP | f)),
            Some(Errno::EINVAL),
            "flag {f:#x}"
        );
    }
    // kernel 6.18: key_size is 4 + 1..=256 data bytes.
    for ks in [0, 1, 4, 261, 1000] {
        assert_eq!(e(lpm(ks, 4, 16)), Some(Errno::EINVAL), "key_size {ks}");
    }
    for ks in [5, 6, 7, 9, 260] {
        assert_eq!(e(lpm(ks, 4, 16)), None, "key_size {ks}");
    }
    // kernel 6.18: value_size is 1..=4194024 (KMALLOC_MAX_SIZE - 256 - sizeof(lpm_trie_node)).
    for vs in [0, 4_194_025, 1 << 22] {
        assert_eq!(e(lpm(8, vs, 1)), Some(Errno::EINVAL), "value_size {vs}");
    }
    for vs in [1, 4_194_008, 4_194_024] {
        assert_eq!(e(lpm(8, vs, 1)), None, "value_size {vs}");
    }
    // kernel 6.18: no upper bound on max_entries (nothing is preallocated).
    assert_eq!(e(lpm(8, 4, u32::MAX)), None);
    // kernel 6.18: map_extra, and a NUMA node that does not exist, are refused by map_create.
    assert_eq!(e(lpm(8, 4, 16).extra(1)), Some(Errno::EINVAL));
    let mut a = lpm(8, 4, 16).flags(NP | BPF_F_NUMA_NODE);
    a.numa_node = 0;
    assert_eq!(e(a), None);
    a.numa_node = 5;
    assert_eq!(e(a), Some(Errno::EINVAL));
    a.max_entries = 0;
    assert_eq!(e(a), Some(Errno::EINVAL));
    // Stored flags keep the access bits for programs.
    let h = rt
        .map_create(&lpm(8, 4, 16).flags(NP | BPF_F_RDONLY_PROG))
        .unwrap();
    assert_eq!(h.info().map_flags, NP | BPF_F_RDONLY_PROG);
}

#[test]
fn create_needs_cap_bpf_before_attr_checks() {
    // kernel 6.18 (unprivileged_bpf_disabled = 0 and = 2, without CAP_BPF/CAP_SYS_ADMIN): EPERM
    // for a valid trie, and also for max_entries 0: the trie's checks live in map_alloc, after
    // map_create's capability check (a HASH with max_entries 0 gives EINVAL there instead).
    for disabled in [false, true] {
        let rt = Runtime::new(Config {
            nr_cpus: 2,
            caps: Caps::NONE,
            unprivileged_bpf_disabled: disabled,
            ..Config::default()
        });
        assert_eq!(rt.map_create(&lpm(8, 4, 16)).unwrap_err(), Errno::EPERM);
        assert_eq!(rt.map_create(&lpm(8, 4, 0)).unwrap_err(), Errno::EPERM);
    }
    let row = registry::find(BPF_MAP_TYPE_LPM_TRIE).unwrap();
    assert!(
        row.alloc_check.is_none(),
        "trie_map_ops has no map_alloc_check"
    );
    assert!(!row.unprivileged);
    assert!(
        row.meta_equal.is_some(),
        "LPM tries can be inner maps (bpf_map_meta_equal)"
    );
    assert!(row.check_btf.is_some());
}

/// BTF: 1 int, 2 struct { int; int } (8 bytes), 4 an 8-byte int, 6 struct { int; bpf_spin_lock }.
#[derive(Debug)]
struct FakeBtf;

impl BtfObject for FakeBtf {
    fn id(&self) -> u32 {
        7
    }
    fn type_size(&self, type_id: u32) -> Option<u32> {
        match type_id {
            1 => Some(4),
            2 | 4 | 6 => Some(8),
            _ => None,
        }
    }
    fn type_kind(&self, type_id: u32) -> BtfKind {
        match type_id {
            1 => BtfKind::Int32,
            4 => BtfKind::Int,
            2 | 6 => BtfKind::Struct,
            _ => BtfKind::Other,
        }
    }
    fn value_record(&self, type_id: u32, value_size: u32) -> Result<Option<BtfRecord>, Errno> {
        if type_id == 6 {
            let lock = BtfField {
                offset: 4,
                kind: BtfFieldKind::SpinLock,
            };
            return BtfRecord::new(vec![lock], value_size).map(Some);
        }
        Ok(None)
    }
}

#[test]
fn create_with_btf() {
    let rt = rt();
    let btf = rt.install_btf(Arc::new(FakeBtf));
    let e = |k: u32, v: u32, vs: u32| {
        let mut a = lpm(8, vs, 16);
        a.btf_fd = btf.raw();
        a.btf_key_type_id = k;
        a.btf_value_type_id = v;
        rt.map_create(&a).map(|_| ()).err()
    };
    // kernel 6.18: trie_check_btf wants a struct key; an integer key, or no key type (void),
    // gives EINVAL.
    assert_eq!(e(2, 1, 4), None);
    assert_eq!(e(4, 1, 4), Some(Errno::EINVAL));
    assert_eq!(e(0, 1, 4), Some(Errno::EINVAL));
    // kernel 6.18: a spin lock in the value is refused first, whatever the key: EOPNOTSUPP (95).
    assert_eq!(e(2, 6, 8), Some(Errno::EOPNOTSUPP));
    assert_eq!(e(0, 6, 8), Some(Errno::EOPNOTSUPP));
    assert_eq!(e(4, 6, 8), Some(Errno::EOPNOTSUPP));
}

// ---------------------------------------------------------------------------------------------
// Element operations: errnos.

#[test]
fn elem_ops_errno() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 3)).unwrap();
    let mut nk = [0u8; 8];
    // kernel 6.18: an empty trie.
    assert_eq!(h.get_next_key(None, &mut nk), Err(Errno::ENOENT));
    assert_eq!(
        h.get_next_key(Some(&v4(8, [10, 0, 0, 0])), &mut nk),
        Err(Errno::ENOENT)
    );
    assert_eq!(get(&h, &v4(32, [10, 0, 0, 0])), Err(Errno::ENOENT));
    assert_eq!(
        h.delete_elem(Some(&v4(8, [10, 0, 0, 0]))),
        Err(Errno::ENOENT)
    );
    // kernel 6.18: flags above BPF_EXIST (3, BPF_F_LOCK, 8) and prefixlen > 32: EINVAL.
    for f in [3, BPF_F_LOCK, 8] {
        assert_eq!(
            h.update_elem(Some(&v4(8, [10, 0, 0, 0])), &val(1), f),
            Err(Errno::EINVAL)
        );
    }
    assert_eq!(
        h.update_elem(Some(&v4(33, [10, 0, 0, 0])), &val(1), BPF_ANY),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.update_elem(Some(&v4(33, [10, 0, 0, 0])), &val(1), 3),
        Err(Errno::EINVAL)
    );
    // kernel 6.18: EXIST on a missing key, NOEXIST on a present one.
    let k8 = v4(8, [10, 0, 0, 0]);
    assert_eq!(
        h.update_elem(Some(&k8), &val(1), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    assert_eq!(h.update_elem(Some(&k8), &val(1), BPF_NOEXIST), Ok(()));
    assert_eq!(
        h.update_elem(Some(&k8), &val(1), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(h.update_elem(Some(&k8), &val(2), BPF_EXIST), Ok(()));
    // kernel 6.18: lookups match the longest prefix no longer than the key's own prefixlen;
    // a prefixlen over 32 matches nothing.
    assert_eq!(get(&h, &v4(32, [10, 1, 1, 1])), Ok(2));
    assert_eq!(get(&h, &v4(33, [10, 1, 1, 1])), Err(Errno::ENOENT));
    assert_eq!(get(&h, &v4(4, [10, 1, 1, 1])), Err(Errno::ENOENT));
    assert_eq!(get(&h, &v4(8, [10, 1, 1, 1])), Ok(2));
    assert_eq!(get(&h, &v4(32, [11, 0, 0, 0])), Err(Errno::ENOENT));
    // Two /24s under one /23 intermediate node; the trie is then full (3 entries).
    assert_eq!(
        h.update_elem(Some(&v4(24, [192, 168, 0, 0])), &val(3), BPF_ANY),
        Ok(())
    );
    assert_eq!(
        h.update_elem(Some(&v4(24, [192, 168, 1, 0])), &val(4), BPF_ANY),
        Ok(())
    );
    // kernel 6.18: a new key in a full trie is ENOSPC; replacing a present key is fine with
    // ANY and EXIST; EXIST on a missing key is ENOENT before ENOSPC.
    let k1 = v4(24, [192, 168, 1, 0]);
    assert_eq!(
        h.update_elem(Some(&v4(24, [192, 168, 2, 0])), &val(5), BPF_ANY),
        Err(Errno::ENOSPC)
    );
    assert_eq!(h.update_elem(Some(&k1), &val(44), BPF_ANY), Ok(()));
    assert_eq!(h.update_elem(Some(&k1), &val(45), BPF_EXIST), Ok(()));
    assert_eq!(
        h.update_elem(Some(&k1), &val(45), BPF_NOEXIST),
        Err(Errno::EEXIST)
    );
    assert_eq!(
        h.update_elem(Some(&v4(24, [192, 168, 2, 0])), &val(45), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    // kernel 6.18: the intermediate node 192.168.0.0/23 is not an element: EXIST gives ENOENT,
    // ANY and NOEXIST would add one (ENOSPC here), delete gives ENOENT.
    let im = v4(23, [192, 168, 0, 0]);
    assert_eq!(
        h.update_elem(Some(&im), &val(45), BPF_EXIST),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        h.update_elem(Some(&im), &val(45), BPF_ANY),
        Err(Errno::ENOSPC)
    );
    assert_eq!(
        h.update_elem(Some(&im), &val(45), BPF_NOEXIST),
        Err(Errno::ENOSPC)
    );
    assert_eq!(h.delete_elem(Some(&im)), Err(Errno::ENOENT));
    // kernel 6.18: delete wants the exact prefix; bits past it are ignored.
    assert_eq!(
        h.delete_elem(Some(&v4(33, [192, 168, 0, 0]))),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.delete_elem(Some(&v4(24, [192, 168, 2, 0]))),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        h.delete_elem(Some(&v4(25, [192, 168, 0, 0]))),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        h.delete_elem(Some(&v4(16, [192, 168, 0, 0]))),
        Err(Errno::ENOENT)
    );
    assert_eq!(h.delete_elem(Some(&v4(24, [192, 168, 1, 7]))), Ok(()));
    assert_eq!(get(&h, &v4(32, [192, 168, 1, 9])), Err(Errno::ENOENT));
    // kernel 6.18: the data is stored as given, host bits included, and get_next_key returns it.
    assert_eq!(
        h.update_elem(Some(&v4(24, [192, 168, 1, 7])), &val(9), BPF_ANY),
        Ok(())
    );
    assert_eq!(next_v4(&h, None), Ok("10.0.0.0/8".into()));
    assert_eq!(
        walk_v4(&h),
        ["10.0.0.0/8", "192.168.0.0/24", "192.168.1.7/24"]
    );
    // kernel 6.18: lookup_and_delete is not supported for tries: ENOTSUPP (524); flags are
    // checked first.
    let mut v = [0u8; 4];
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k8), &mut v, 0),
        Err(Errno::ENOTSUPP)
    );
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k8), &mut v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.lookup_and_delete_elem(Some(&k8), &mut v, 8),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        h.lookup_elem(Some(&k8), &mut v, BPF_F_LOCK),
        Err(Errno::EINVAL)
    );
    assert_eq!(h.lookup_elem(Some(&k8), &mut v, 8), Err(Errno::EINVAL));
    // kernel 6.18: mmap of a trie fd: ENOTSUPP (524).
    assert_eq!(
        h.map().ops().mmap(h.map()).map(|_| ()),
        Err(Errno::ENOTSUPP)
    );
    // kernel 6.18 (fdinfo memlock): (24 + 4 + 4) bytes per element.
    assert_eq!(h.map().mem_usage(), 96);
    // kernel 6.18: freezing works; updates then fail with EPERM.
    assert_eq!(h.freeze(), Ok(()));
    assert_eq!(
        h.update_elem(Some(&k8), &val(1), BPF_ANY),
        Err(Errno::EPERM)
    );
    assert_eq!(h.delete_elem(Some(&k8)), Err(Errno::EPERM));
    assert_eq!(get(&h, &v4(32, [10, 9, 9, 9])), Ok(2));
}

#[test]
fn program_side_ops() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 8)).unwrap();
    let map = h.map();
    let ops = map.ops();
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    assert_eq!(
        ops.update_elem(map, &ctx, &v4(16, [10, 1, 0, 0]), &val(7), BPF_ANY),
        Ok(())
    );
    let reader = map.rcu().normal.register();
    {
        let _g = reader.read_lock();
        let p = ops
            .lookup_elem(map, &ctx, &v4(32, [10, 1, 2, 3]))
            .expect("match");
        assert_eq!(p.as_ptr() as usize % 8, 0, "values are 8-byte aligned");
        // SAFETY: the pointer came from a lookup inside this read-side section.
        assert_eq!(unsafe { p.as_ptr().cast::<u32>().read() }, 7);
        assert!(ops.lookup_elem(map, &ctx, &v4(32, [10, 2, 0, 0])).is_none());
        assert!(ops.lookup_elem(map, &ctx, &v4(33, [10, 1, 0, 0])).is_none());
        assert!(ops
            .lookup_percpu_elem(map, &v4(32, [10, 1, 2, 3]), 0)
            .is_none());
    }
    assert_eq!(ops.delete_elem(map, &ctx, &v4(16, [10, 1, 0, 0])), Ok(()));
    assert!(ops.gen_lookup(map).is_none());
    // The verifier refuses these helpers on a trie: EINVAL, and for_each_map_elem ENOTSUPP.
    let mut v = [0u8; 4];
    assert_eq!(ops.push_elem(map, &val(1), 0), Err(Errno::EINVAL));
    assert_eq!(ops.pop_elem(map, &mut v), Err(Errno::EINVAL));
    assert_eq!(ops.peek_elem(map, &mut v), Err(Errno::EINVAL));
    assert_eq!(
        ops.for_each_callback(map, &ctx, &mut |_, _| false),
        Err(Errno::ENOTSUPP)
    );
}

#[test]
fn batch_ops() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 3)).unwrap();
    for (k, v) in [
        (v4(8, [10, 0, 0, 0]), 2),
        (v4(24, [192, 168, 0, 0]), 3),
        (v4(24, [192, 168, 1, 7]), 9),
    ] {
        h.update_elem(Some(&k), &val(v), BPF_ANY).unwrap();
    }
    let (mut ob, mut keys, mut values) = ([0u8; 8], [0u8; 80], [0u8; 40]);
    let mut args = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut keys,
        values: &mut values,
        count: 10,
        elem_flags: 0,
        flags: 0,
    };
    // kernel 6.18: generic lookup batch in postorder, ENOENT once exhausted, count 3.
    assert_eq!(h.lookup_batch(&mut args), Err(Errno::ENOENT));
    assert_eq!(args.count, 3);
    let got: Vec<String> = keys[..24].chunks(8).map(show_v4).collect();
    assert_eq!(got, ["10.0.0.0/8", "192.168.0.0/24", "192.168.1.7/24"]);
    let vals: Vec<u32> = values[..12]
        .chunks(4)
        .map(|c| u32::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(vals, [2, 3, 9]);
    // kernel 6.18: no lookup_and_delete_batch: ENOTSUPP, count left as passed.
    let (mut ob, mut keys, mut values) = ([0u8; 8], [0u8; 80], [0u8; 40]);
    let mut args = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut keys,
        values: &mut values,
        count: 10,
        elem_flags: 0,
        flags: 0,
    };
    assert_eq!(h.lookup_and_delete_batch(&mut args), Err(Errno::ENOTSUPP));
    assert_eq!(args.count, 10);
    // kernel 6.18: generic update batch into a full trie: ENOSPC, count 0.
    let mut keys = v4(16, [172, 16, 0, 0]);
    let mut values = val(7).to_vec();
    let mut ob = [0u8; 8];
    let mut args = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut keys,
        values: &mut values,
        count: 1,
        elem_flags: 0,
        flags: 0,
    };
    assert_eq!(h.update_batch(&mut args), Err(Errno::ENOSPC));
    assert_eq!(args.count, 0);
    // kernel 6.18: generic delete batch stops at the first ENOENT: count 1.
    let mut keys = [v4(8, [10, 0, 0, 0]), v4(8, [10, 0, 0, 0])].concat();
    let mut values = [0u8; 8];
    let mut ob = [0u8; 8];
    let mut args = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut keys,
        values: &mut values,
        count: 2,
        elem_flags: 0,
        flags: 0,
    };
    assert_eq!(h.delete_batch(&mut args), Err(Errno::ENOENT));
    assert_eq!(args.count, 1);
    let mut keys = v4(16, [172, 16, 0, 0]);
    let mut values = val(7).to_vec();
    let mut ob = [0u8; 8];
    let mut args = BatchArgs {
        in_batch: None,
        out_batch: &mut ob,
        keys: &mut keys,
        values: &mut values,
        count: 1,
        elem_flags: 0,
        flags: 0,
    };
    assert_eq!(h.update_batch(&mut args), Ok(()));
    assert_eq!(args.count, 1);
    // kernel 6.18 (fdinfo memlock after the same sequence): 3 entries, 96 bytes.
    assert_eq!(h.map().mem_usage(), 96);
}

// ---------------------------------------------------------------------------------------------
// Walk order and lookups, as recorded on the kernel.

#[test]
fn postorder_walk_matches_kernel() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 100)).unwrap();
    let ins = [
        v4(8, [10, 0, 0, 0]),
        v4(16, [10, 1, 0, 0]),
        v4(24, [10, 1, 1, 0]),
        v4(16, [192, 168, 0, 0]),
        v4(0, [0, 0, 0, 0]),
        v4(24, [192, 168, 0, 0]),
        v4(24, [192, 168, 1, 0]),
        v4(24, [192, 168, 128, 0]),
        v4(32, [10, 1, 1, 1]),
        v4(12, [172, 16, 0, 0]),
        v4(9, [10, 128, 0, 0]),
    ];
    for (i, k) in ins.iter().enumerate() {
        h.update_elem(Some(k), &val(i as u32 + 1), BPF_ANY).unwrap();
    }
    // kernel 6.18: next_key from NULL, then from each returned key.
    assert_eq!(
        walk_v4(&h),
        [
            "10.1.1.1/32",
            "10.1.1.0/24",
            "10.1.0.0/16",
            "10.128.0.0/9",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/24",
            "192.168.1.0/24",
            "192.168.128.0/24",
            "192.168.0.0/16",
            "0.0.0.0/0",
        ]
    );
    // kernel 6.18: an intermediate node, a missing key and prefixlen 33 all restart at the
    // first key; the last key has no successor.
    assert_eq!(
        next_v4(&h, Some(&v4(23, [192, 168, 0, 0]))),
        Ok("10.1.1.1/32".into())
    );
    assert_eq!(
        next_v4(&h, Some(&v4(32, [1, 2, 3, 4]))),
        Ok("10.1.1.1/32".into())
    );
    assert_eq!(
        next_v4(&h, Some(&v4(33, [10, 0, 0, 0]))),
        Ok("10.1.1.1/32".into())
    );
    assert_eq!(
        next_v4(&h, Some(&v4(24, [10, 1, 1, 0]))),
        Ok("10.1.0.0/16".into())
    );
    assert_eq!(next_v4(&h, Some(&v4(0, [0, 0, 0, 0]))), Err(Errno::ENOENT));
    // kernel 6.18: delete a one-child node, the two-child root (it turns intermediate) and a
    // leaf under an intermediate node.
    for k in [
        v4(16, [10, 1, 0, 0]),
        v4(0, [0, 0, 0, 0]),
        v4(24, [192, 168, 0, 0]),
    ] {
        assert_eq!(h.delete_elem(Some(&k)), Ok(()));
    }
    assert_eq!(
        walk_v4(&h),
        [
            "10.1.1.1/32",
            "10.1.1.0/24",
            "10.128.0.0/9",
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.1.0/24",
            "192.168.128.0/24",
            "192.168.0.0/16",
        ]
    );
    assert_eq!(
        next_v4(&h, Some(&v4(0, [0, 0, 0, 0]))),
        Ok("10.1.1.1/32".into())
    );
    // kernel 6.18: lookups over what is left (values are insertion index + 1).
    let lookups: [([u8; 4], Result<u32, Errno>); 11] = [
        ([10, 1, 1, 1], Ok(9)),
        ([10, 1, 1, 2], Ok(3)),
        ([10, 1, 2, 2], Ok(1)),
        ([10, 200, 0, 0], Ok(11)),
        ([10, 2, 0, 0], Ok(1)),
        ([192, 168, 0, 5], Ok(4)),
        ([192, 168, 1, 5], Ok(7)),
        ([192, 168, 128, 1], Ok(8)),
        ([172, 20, 0, 0], Ok(10)),
        ([172, 32, 0, 0], Err(Errno::ENOENT)),
        ([8, 8, 8, 8], Err(Errno::ENOENT)),
    ];
    for (a, want) in lookups {
        assert_eq!(get(&h, &v4(32, a)), want, "{a:?}");
    }
}

#[test]
fn postorder_walk_odd_data_size() {
    // kernel 6.18: a 3-byte trie (key_size 7, value_size 1).
    let rt = rt();
    let h = rt.map_create(&lpm(7, 1, 10)).unwrap();
    for (plen, d) in [
        (24, [1, 2, 3]),
        (1, [0x80, 0, 0]),
        (0, [0, 0, 0]),
        (17, [1, 2, 0x80]),
        (23, [1, 2, 2]),
    ] {
        h.update_elem(Some(&key(plen, &d)), &[7], BPF_ANY).unwrap();
    }
    let got: Vec<Vec<u8>> = walk(&h);
    let want: Vec<Vec<u8>> = [
        (24, [1, 2, 3]),
        (23, [1, 2, 2]),
        (17, [1, 2, 0x80]),
        (1, [0x80, 0, 0]),
        (0, [0, 0, 0]),
    ]
    .iter()
    .map(|(p, d)| key(*p, d))
    .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// The selftest's scenarios.

#[test]
fn selftest_lpm_map_random() {
    // test_lpm_map(keysize) for 1..=16 bytes: 256 random prefixes, 512 random full-length
    // lookups against the model, delete half, 512 more lookups.
    let rt = rt();
    let mut rng = Rng(0x00f0_0ba1);
    for ds in 1..=16usize {
        let h = rt
            .map_create(&lpm(4 + ds as u32, ds as u32 + 1, 4096))
            .unwrap();
        let mut m = Model::new(ds, 4096);
        for _ in 0..256 {
            let mut value = rng.bytes(ds);
            let plen = rng.below(8 * ds as u64 + 1) as u32;
            value.push(plen as u8);
            let k = key(plen, &value[..ds]);
            assert_eq!(h.update_elem(Some(&k), &value, BPF_ANY), Ok(()));
            m.update(plen, &value[..ds], &value, BPF_ANY).unwrap();
        }
        let check = |h: &MapHandle, m: &Model, rng: &mut Rng| {
            let mut out = vec![0u8; ds + 1];
            for _ in 0..512 {
                let data = rng.bytes(ds);
                let r = h.lookup_elem(Some(&key(8 * ds as u32, &data)), &mut out, 0);
                match m.lookup(8 * ds as u32, &data) {
                    Some(e) => {
                        assert_eq!(r, Ok(()));
                        assert_eq!(out, e.value);
                    }
                    None => assert_eq!(r, Err(Errno::ENOENT)),
                }
            }
        };
        check(&h, &m, &mut rng);
        let half = m.entries.len() / 2;
        for _ in 0..half {
            let e = m.entries[0].clone();
            assert_eq!(h.delete_elem(Some(&e.key())), Ok(()));
            m.delete(e.plen, &e.data).unwrap();
        }
        check(&h, &m, &mut rng);
        assert_eq!(
            walk(&h),
            m.sorted().iter().map(Entry::key).collect::<Vec<_>>()
        );
    }
}

#[test]
fn selftest_lpm_ipaddr() {
    let rt = rt();
    let h4 = rt.map_create(&lpm(8, 8, 100)).unwrap();
    let h6 = rt.map_create(&lpm(20, 8, 100)).unwrap();
    for (plen, a, v) in [
        (16, [192, 168, 0, 0], 1u64),
        (24, [192, 168, 0, 0], 2),
        (24, [192, 168, 128, 0], 3),
        (24, [192, 168, 1, 0], 5),
        (23, [192, 168, 0, 0], 4),
    ] {
        assert_eq!(
            h4.update_elem(Some(&v4(plen, a)), &v.to_ne_bytes(), BPF_ANY),
            Ok(())
        );
    }
    // 2a00:1450:4001:814::200e/64
    let six = |tail: [u8; 8]| {
        let mut d = vec![0x2a, 0x00, 0x14, 0x50, 0x40, 0x01, 0x08, 0x14];
        d.extend_from_slice(&tail);
        d
    };
    let k6 = key(64, &six([0, 0, 0, 0, 0, 0, 0x20, 0x0e]));
    assert_eq!(
        h6.update_elem(Some(&k6), &0xdead_beef_u64.to_ne_bytes(), BPF_ANY),
        Ok(())
    );
    let get64 = |h: &MapHandle, k: &[u8]| {
        let mut v = [0u8; 8];
        h.lookup_elem(Some(k), &mut v, 0)
            .map(|()| u64::from_ne_bytes(v))
    };
    assert_eq!(get64(&h4, &v4(32, [192, 168, 128, 23])), Ok(3));
    assert_eq!(get64(&h4, &v4(32, [192, 168, 0, 1])), Ok(2));
    assert_eq!(get64(&h6, &key(128, &six([0; 8]))), Ok(0xdead_beef));
    assert_eq!(
        get64(&h6, &key(128, &six([0, 0, 0, 0, 0, 0, 0, 1]))),
        Ok(0xdead_beef)
    );
    assert_eq!(get64(&h4, &v4(32, [10, 0, 0, 1])), Err(Errno::ENOENT));
    assert_eq!(get64(&h4, &v4(32, [11, 11, 11, 11])), Err(Errno::ENOENT));
    let mut other = vec![0x2a, 0x00, 0xff, 0xff];
    other.resize(16, 0);
    assert_eq!(get64(&h6, &key(128, &other)), Err(Errno::ENOENT));
}

#[test]
fn selftest_lpm_delete() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 100)).unwrap();
    //         (1)
    //        /   \
    //     (IM)    (3)
    //    /   \
    //   (2)  (4)
    for (plen, a, v) in [
        (16, [192, 168, 0, 0], 1),
        (24, [192, 168, 0, 0], 2),
        (24, [192, 168, 128, 0], 3),
        (24, [192, 168, 1, 0], 4),
    ] {
        assert_eq!(h.update_elem(Some(&v4(plen, a)), &val(v), BPF_ANY), Ok(()));
    }
    assert_eq!(get(&h, &v4(32, [10, 0, 0, 1])), Err(Errno::ENOENT));
    assert_eq!(
        h.delete_elem(Some(&v4(30, [192, 255, 0, 0]))),
        Err(Errno::ENOENT)
    );
    assert_eq!(
        h.delete_elem(Some(&v4(16, [192, 255, 0, 0]))),
        Err(Errno::ENOENT)
    );
    assert_eq!(get(&h, &v4(32, [192, 168, 0, 1])), Ok(2));
    // Leaf.
    assert_eq!(h.delete_elem(Some(&v4(24, [192, 168, 0, 0]))), Ok(()));
    assert_eq!(get(&h, &v4(32, [192, 168, 0, 1])), Ok(1));
    // Leaf and its intermediate parent.
    assert_eq!(h.delete_elem(Some(&v4(24, [192, 168, 1, 0]))), Ok(()));
    assert_eq!(get(&h, &v4(32, [192, 168, 1, 1])), Ok(1));
    // Root.
    assert_eq!(h.delete_elem(Some(&v4(16, [192, 168, 0, 0]))), Ok(()));
    assert_eq!(get(&h, &v4(32, [192, 168, 128, 1])), Ok(3));
    // Last node.
    assert_eq!(h.delete_elem(Some(&v4(24, [192, 168, 128, 0]))), Ok(()));
    assert_eq!(get(&h, &v4(32, [192, 168, 128, 1])), Err(Errno::ENOENT));
    assert_eq!(h.map().mem_usage(), 0);
}

#[test]
fn selftest_lpm_get_next_key() {
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 100)).unwrap();
    assert_eq!(next_v4(&h, None), Err(Errno::ENOENT));
    let add = |plen, a| assert_eq!(h.update_elem(Some(&v4(plen, a)), &val(0), BPF_ANY), Ok(()));
    add(16, [192, 168, 0, 0]);
    assert_eq!(walk_v4(&h), ["192.168.0.0/16"]);
    // No exact match: the first key in postorder.
    assert_eq!(
        next_v4(&h, Some(&v4(8, [192, 168, 0, 0]))),
        Ok("192.168.0.0/16".into())
    );
    add(24, [192, 168, 128, 0]);
    assert_eq!(walk_v4(&h), ["192.168.128.0/24", "192.168.0.0/16"]);
    add(24, [192, 168, 0, 0]);
    assert_eq!(
        walk_v4(&h),
        ["192.168.0.0/24", "192.168.128.0/24", "192.168.0.0/16"]
    );
    add(24, [192, 168, 1, 0]);
    assert_eq!(
        walk_v4(&h),
        [
            "192.168.0.0/24",
            "192.168.1.0/24",
            "192.168.128.0/24",
            "192.168.0.0/16"
        ]
    );
    add(28, [192, 168, 1, 128]);
    assert_eq!(
        walk_v4(&h),
        [
            "192.168.0.0/24",
            "192.168.1.128/28",
            "192.168.1.0/24",
            "192.168.128.0/24",
            "192.168.0.0/16"
        ]
    );
    assert_eq!(
        next_v4(&h, Some(&v4(22, [192, 168, 1, 0]))),
        Ok("192.168.0.0/24".into())
    );
}

#[test]
fn selftest_lpm_multi_thread() {
    // test_lpm_multi_thread: four threads (update, delete, lookup, get_next_key) hammer the
    // same four keys; update always succeeds, the others succeed or give ENOENT.
    let rt = rt();
    let h = rt.map_create(&lpm(8, 4, 100)).unwrap();
    let keys = [
        v4(16, [192, 168, 0, 0]),
        v4(24, [192, 168, 0, 0]),
        v4(24, [192, 168, 128, 0]),
        v4(24, [192, 168, 1, 0]),
    ];
    const ITER: usize = 2000;
    thread::scope(|s| {
        for cmd in 0..4 {
            let (h, keys) = (&h, &keys);
            s.spawn(move || {
                for iter in 0..ITER {
                    for i in 0..keys.len() {
                        let j = if iter < ITER / 2 {
                            i
                        } else {
                            keys.len() - i - 1
                        };
                        let k = &keys[j];
                        let mut buf = [0u8; 8];
                        match cmd {
                            0 => {
                                assert_eq!(h.update_elem(Some(k), &val(j as u32), BPF_ANY), Ok(()))
                            }
                            1 => assert!(matches!(
                                h.delete_elem(Some(k)),
                                Ok(()) | Err(Errno::ENOENT)
                            )),
                            2 => assert!(matches!(
                                h.lookup_elem(Some(k), &mut buf[..4], 0),
                                Ok(()) | Err(Errno::ENOENT)
                            )),
                            _ => assert!(matches!(
                                h.get_next_key(Some(k), &mut buf),
                                Ok(()) | Err(Errno::ENOENT)
                            )),
                        }
                    }
                }
            });
        }
    });
    rt.rcu_barrier();
}

// ---------------------------------------------------------------------------------------------
// Randomized comparison with the model: errnos, values, stored keys and postorder.

fn random_model_run(seed: u64, data_size: usize, max_entries: u32, ops: usize) {
    let rt = rt();
    let h = rt
        .map_create(&lpm(4 + data_size as u32, 4, max_entries))
        .unwrap();
    let mut m = Model::new(data_size, max_entries as usize);
    let mut rng = Rng(seed);
    let maxp = 8 * data_size as u64;
    // Keys drawn from a small pool of addresses so that prefixes collide, nest and split.
    let pool: Vec<Vec<u8>> = (0..24).map(|_| rng.bytes(data_size)).collect();
    let pick = |rng: &mut Rng| -> (u32, Vec<u8>) {
        let mut d = pool[rng.below(pool.len() as u64) as usize].clone();
        // Occasionally scramble the tail so host bits differ from the pool's.
        if rng.below(4) == 0 {
            let last = d.len() - 1;
            d[last] ^= rng.next() as u8;
        }
        // Now and then one past the maximum prefix length.
        let plen = if rng.below(50) == 0 {
            maxp as u32 + 1
        } else {
            rng.below(maxp + 1) as u32
        };
        (plen, d)
    };
    for op in 0..ops {
        match rng.below(10) {
            0..=3 => {
                let (plen, d) = pick(&mut rng);
                let flags = [BPF_ANY, BPF_ANY, BPF_NOEXIST, BPF_EXIST, 3][rng.below(5) as usize];
                let v = (op as u32).to_ne_bytes();
                let got = h.update_elem(Some(&key(plen, &d)), &v, flags);
                assert_eq!(
                    got,
                    m.update(plen, &d, &v, flags),
                    "op {op}: update /{plen} {d:?} flags {flags}"
                );
            }
            4..=5 => {
                let (plen, d) = if rng.below(2) == 0 && !m.entries.is_empty() {
                    let e = &m.entries[rng.below(m.entries.len() as u64) as usize];
                    (e.plen, e.data.clone())
                } else {
                    pick(&mut rng)
                };
                assert_eq!(
                    h.delete_elem(Some(&key(plen, &d))),
                    m.delete(plen, &d),
                    "op {op}: delete /{plen} {d:?}"
                );
            }
            6..=8 => {
                let (plen, mut d) = pick(&mut rng);
                let plen = if rng.below(2) == 0 { maxp as u32 } else { plen };
                if rng.below(2) == 0 {
                    d = rng.bytes(data_size);
                }
                let mut out = [0u8; 4];
                let got = h
                    .lookup_elem(Some(&key(plen, &d)), &mut out, 0)
                    .map(|()| out.to_vec());
                let want = m
                    .lookup(plen, &d)
                    .map(|e| e.value.clone())
                    .ok_or(Errno::ENOENT);
                assert_eq!(got, want, "op {op}: lookup /{plen} {d:?}");
            }
            _ => {
                let sorted = m.sorted();
                let mut next = vec![0u8; 4 + data_size];
                if !sorted.is_empty() && rng.below(3) != 0 {
                    let i = rng.below(sorted.len() as u64) as usize;
                    let got = h
                        .get_next_key(Some(&sorted[i].key()), &mut next)
                        .map(|()| next.clone());
                    let want = sorted.get(i + 1).map(Entry::key).ok_or(Errno::ENOENT);
                    assert_eq!(got, want, "op {op}: next after #{i}");
                } else {
                    let (plen, d) = pick(&mut rng);
                    let got = h
                        .get_next_key(Some(&key(plen, &d)), &mut next)
                        .map(|()| next.clone());
                    let want = match m.find(plen, &d) {
                        _ if plen as u64 > maxp => sorted.first().map(Entry::key),
                        Some(i) => {
                            let pos = sorted.iter().position(|e| *e == m.entries[i]).unwrap();
                            sorted.get(pos + 1).map(Entry::key)
                        }
                        None => sorted.first().map(Entry::key),
                    };
                    assert_eq!(
                        got,
                        want.ok_or(Errno::ENOENT),
                        "op {op}: next after /{plen} {d:?}"
                    );
                }
            }
        }
        if op % 97 == 0 {
            assert_eq!(
                walk(&h),
                m.sorted().iter().map(Entry::key).collect::<Vec<_>>(),
                "op {op}: walk"
            );
            let per_elem = 24 + data_size as u64 + 4;
            assert_eq!(h.map().mem_usage(), per_elem * m.entries.len() as u64);
        }
    }
    assert_eq!(
        walk(&h),
        m.sorted().iter().map(Entry::key).collect::<Vec<_>>()
    );
}

#[test]
fn random_ops_match_model() {
    // Small tries fill up (ENOSPC paths); wide ones exercise the 8-byte compare and odd tails.
    random_model_run(0x5eed_0001, 1, 40, 3000);
    random_model_run(0x5eed_0002, 2, 48, 3000);
    random_model_run(0x5eed_0003, 4, 64, 3000);
    random_model_run(0x5eed_0004, 11, 1000, 2000);
}

// ---------------------------------------------------------------------------------------------
// Concurrency: lockless readers against a writer.

/// A value naming its own prefix: `plen << 32 | masked IPv4 address`.
fn encode(plen: u32, a: [u8; 4]) -> u64 {
    let mask = if plen == 0 {
        0
    } else {
        u32::MAX << (32 - plen)
    };
    (u64::from(plen) << 32) | u64::from(u32::from_be_bytes(a) & mask)
}

fn covers(v: u64, addr: [u8; 4]) -> bool {
    let plen = (v >> 32) as u32;
    if plen > 32 {
        return false;
    }
    let mask = if plen == 0 {
        0
    } else {
        u32::MAX << (32 - plen)
    };
    u32::from_be_bytes(addr) & mask == v as u32
}

#[test]
fn readers_race_a_writer() {
    const WRITES: usize = 20_000;
    let rt = rt();
    let h = rt.map_create(&lpm(8, 8, 1024)).unwrap();
    // 0.0.0.0/0 never goes away, so every lookup finds something.
    h.update_elem(
        Some(&v4(0, [0; 4])),
        &encode(0, [0; 4]).to_ne_bytes(),
        BPF_ANY,
    )
    .unwrap();
    let mut rng = Rng(0xc0ff_ee00);
    let pool: Vec<(u32, [u8; 4])> = (0..64)
        .map(|i| {
            let plen = [8, 12, 16, 20, 24, 28, 32][i % 7];
            // Few distinct first bytes, so prefixes nest and share intermediate nodes.
            let b = rng.bytes(4);
            (plen, [10 + (b[0] % 3), b[1] % 4, b[2], b[3]])
        })
        .collect();
    let stop: OnceLock<()> = OnceLock::new();
    thread::scope(|s| {
        for r in 0..3u64 {
            let (h, pool, stop) = (&h, &pool, &stop);
            s.spawn(move || {
                let map = h.map();
                let ctx = OpCtx {
                    cpu: r as u32,
                    files: None,
                };
                let reader = map.rcu().normal.register();
                let mut rng = Rng(0x1000 + r);
                let mut rounds = 0u32;
                while stop.get().is_none() || rounds < 200 {
                    let g = reader.read_lock();
                    let mut seen = Vec::with_capacity(8);
                    for _ in 0..8 {
                        let (_, mut a) = pool[rng.below(pool.len() as u64) as usize];
                        a[3] ^= rng.next() as u8;
                        let p = map
                            .ops()
                            .lookup_elem(map, &ctx, &v4(32, a))
                            .expect("0/0 always matches");
                        // SAFETY: the pointer came from a lookup inside this read-side section;
                        // values are 8-byte aligned and never written after publication.
                        let v = unsafe { p.as_ptr().cast::<u64>().read() };
                        assert!(covers(v, a), "value {v:#x} does not cover {a:?}");
                        seen.push((p, v));
                    }
                    // Still inside the section: every node found is still there, unchanged,
                    // although the writer may have unlinked it meanwhile.
                    for (p, v) in seen {
                        // SAFETY: as above; the section has not ended.
                        assert_eq!(unsafe { p.as_ptr().cast::<u64>().read() }, v);
                    }
                    drop(g);
                    rounds += 1;
                }
            });
        }
        // A syscall-side walker: keys come from the pool (or are 0/0), and walks terminate.
        {
            let (h, pool, stop) = (&h, &pool, &stop);
            s.spawn(move || {
                let mut next = [0u8; 8];
                while stop.get().is_none() {
                    let mut cur: Option<Vec<u8>> = None;
                    for _ in 0..200 {
                        match h.get_next_key(cur.as_deref(), &mut next) {
                            Ok(()) => {
                                let plen = u32::from_ne_bytes(next[..4].try_into().unwrap());
                                let a = [next[4], next[5], next[6], next[7]];
                                assert!(
                                    plen == 0 || pool.contains(&(plen, a)),
                                    "{}",
                                    show_v4(&next)
                                );
                                cur = Some(next.to_vec());
                            }
                            Err(e) => {
                                assert_eq!(e, Errno::ENOENT);
                                break;
                            }
                        }
                    }
                }
            });
        }
        for _ in 0..WRITES {
            let (plen, a) = pool[rng.below(pool.len() as u64) as usize];
            let k = v4(plen, a);
            if rng.below(3) == 0 {
                assert!(matches!(
                    h.delete_elem(Some(&k)),
                    Ok(()) | Err(Errno::ENOENT)
                ));
            } else {
                assert_eq!(
                    h.update_elem(Some(&k), &encode(plen, a).to_ne_bytes(), BPF_ANY),
                    Ok(())
                );
            }
        }
        stop.set(()).unwrap();
    });
    rt.rcu_barrier();
    // Whatever is left is consistent.
    for k in walk(&h) {
        let plen = u32::from_ne_bytes(k[..4].try_into().unwrap());
        let a = [k[4], k[5], k[6], k[7]];
        let mut v = [0u8; 8];
        h.lookup_elem(Some(&v4(32, a)), &mut v, 0).unwrap();
        assert!(u64::from_ne_bytes(v) >> 32 >= u64::from(plen));
    }
}

#[test]
fn trie_as_inner_map() {
    // kernel 6.18: an LPM trie is a valid inner-map template; bpf_map_meta_equal compares key
    // size, value size and flags, not max_entries.
    let rt = rt();
    let tmpl = rt.map_create(&lpm(8, 4, 16)).unwrap();
    let outer = rt
        .map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 2).inner_map(tmpl.raw()))
        .unwrap();
    let put = |h: &MapHandle| {
        outer.update_elem(Some(&0u32.to_ne_bytes()), &h.raw().to_ne_bytes(), BPF_ANY)
    };
    assert_eq!(put(&tmpl), Ok(()));
    assert_eq!(put(&rt.map_create(&lpm(8, 4, 1000)).unwrap()), Ok(()));
    assert_eq!(
        put(&rt.map_create(&lpm(20, 4, 16)).unwrap()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        put(&rt
            .map_create(&lpm(8, 4, 16).flags(NP | BPF_F_RDONLY_PROG))
            .unwrap()),
        Err(Errno::EINVAL)
    );
    assert_eq!(
        put(&rt.map_create(&lpm(8, 8, 16)).unwrap()),
        Err(Errno::EINVAL)
    );
}

#[test]
fn sleepable_reader_keeps_its_node() {
    // A sleepable program can reach a trie only as an inner map, reading under tasks-trace RCU
    // alone: a node it found must outlive normal grace periods too. (Under AddressSanitizer a
    // premature free is a crash; without it, the reallocations below would overwrite it.)
    const MAGIC: u64 = 0x1b9f_5eed_0000_0042;
    let rt = rt();
    let h = rt.map_create(&lpm(8, 8, 256)).unwrap();
    let map = h.map();
    let ctx = OpCtx {
        cpu: 0,
        files: None,
    };
    h.update_elem(Some(&v4(8, [10, 0, 0, 0])), &MAGIC.to_ne_bytes(), BPF_ANY)
        .unwrap();
    let tasks_trace = map.rcu().tasks_trace.register();
    let guard = tasks_trace.read_lock();
    let p = map
        .ops()
        .lookup_elem(map, &ctx, &v4(32, [10, 1, 2, 3]))
        .unwrap();
    h.delete_elem(Some(&v4(8, [10, 0, 0, 0]))).unwrap();
    map.rcu().normal.synchronize();
    map.rcu().normal.barrier();
    for i in 0..128u32 {
        let k = v4(24, [11, (i >> 8) as u8, i as u8, 0]);
        h.update_elem(Some(&k), &u64::from(i).to_ne_bytes(), BPF_ANY)
            .unwrap();
    }
    // SAFETY: the pointer came from a lookup inside the tasks-trace section still held.
    assert_eq!(unsafe { p.as_ptr().cast::<u64>().read() }, MAGIC);
    drop(guard);
    drop(tasks_trace);
    rt.rcu_barrier();
}

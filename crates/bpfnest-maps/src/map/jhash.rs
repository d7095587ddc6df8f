// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Bob Jenkins' lookup3 hash as the kernel spells it in `include/linux/jhash.h`.
//!
//! Map types that hash keys or values (bloom filter, hash tables) must produce the kernel's
//! exact bits: with `BPF_F_ZERO_SEED` the seed is 0 and bucket choice and bloom-filter false
//! positives become observable from user space. Two entry points, as in the header:
//! * `jhash` over bytes: 12-byte blocks read as native-endian (`__get_unaligned_cpu32`), the
//!   last 1–12 bytes added byte by byte at fixed shifts, no final mix when nothing is left.
//! * `jhash2` over `u32` words: 3-word blocks, the length counted in bytes (`length << 2`).
//!
//! Both are lookup3's `hashlittle`/`hashword` on a little-endian machine; the unit tests check
//! lookup3's own published vectors and values from an independent implementation.

/// `JHASH_INITVAL`: an arbitrary start value.
const JHASH_INITVAL: u32 = 0xdead_beef;

/// `__jhash_mix`: reversibly mixes three 32-bit values.
#[inline]
fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

/// `__jhash_final`: final mixing of three values into `c`.
#[inline]
fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[inline]
fn word_ne(k: &[u8]) -> u32 {
    u32::from_ne_bytes([k[0], k[1], k[2], k[3]])
}

/// `jhash(key, length, initval)`: hash of an arbitrary byte string.
///
/// The kernel takes the length as `u32`; keys here are at most `KMALLOC_MAX_SIZE` bytes, so the
/// truncating cast matches the kernel for every length a map can produce.
pub(crate) fn jhash(key: &[u8], initval: u32) -> u32 {
    let init = JHASH_INITVAL
        .wrapping_add(key.len() as u32)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = key;
    while k.len() > 12 {
        a = a.wrapping_add(word_ne(&k[0..]));
        b = b.wrapping_add(word_ne(&k[4..]));
        c = c.wrapping_add(word_ne(&k[8..]));
        mix(&mut a, &mut b, &mut c);
        k = &k[12..];
    }
    if k.is_empty() {
        return c;
    }
    // The kernel's fall-through switch adds byte i at shift 8 * (i % 4) into a, b or c by
    // i / 4: independent of the machine's byte order, unlike the block loop above.
    for (i, &byte) in k.iter().enumerate() {
        let v = (byte as u32) << (8 * (i % 4));
        match i / 4 {
            0 => a = a.wrapping_add(v),
            1 => b = b.wrapping_add(v),
            _ => c = c.wrapping_add(v),
        }
    }
    final_mix(&mut a, &mut b, &mut c);
    c
}

/// `jhash2(k, length, initval)`: hash of a sequence of `u32` words (the length the kernel
/// mixes in is the byte length, `words.len() << 2`).
pub(crate) fn jhash2(words: &[u32], initval: u32) -> u32 {
    let init = JHASH_INITVAL
        .wrapping_add((words.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut a, mut b, mut c) = (init, init, init);
    let mut k = words;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        mix(&mut a, &mut b, &mut c);
        k = &k[3..];
    }
    match *k {
        [] => return c,
        [x] => a = a.wrapping_add(x),
        [x, y] => {
            a = a.wrapping_add(x);
            b = b.wrapping_add(y);
        }
        [x, y, z, ..] => {
            a = a.wrapping_add(x);
            b = b.wrapping_add(y);
            c = c.wrapping_add(z);
        }
    }
    final_mix(&mut a, &mut b, &mut c);
    c
}

/// `jhash2` over bytes whose length is a multiple of 4, read as native-endian words: what the
/// kernel does when it casts a `u32`-aligned key or value to `const u32 *`.
pub(crate) fn jhash2_bytes(bytes: &[u8], initval: u32) -> u32 {
    debug_assert!(
        bytes.len().is_multiple_of(4),
        "jhash2_bytes needs whole words"
    );
    let mut words = [0u32; 16];
    let n = bytes.len() / 4;
    if n <= words.len() {
        for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
            *w = word_ne(chunk);
        }
        jhash2(&words[..n], initval)
    } else {
        let v: Vec<u32> = bytes.chunks_exact(4).map(word_ne).collect();
        jhash2(&v, initval)
    }
}

#[cfg(all(test, not(bpfnest_loom)))]
mod tests {
    use super::*;

    #[test]
    fn lookup3_published_vectors() {
        // lookup3.c's driver: hashlittle("", 0, 0) and the "Four score" pair.
        assert_eq!(jhash(b"", 0), 0xdead_beef);
        assert_eq!(jhash2(&[], 0), 0xdead_beef);
        let s = b"Four score and seven years ago";
        assert_eq!(jhash(s, 0), 0x1777_0551);
        assert_eq!(jhash(s, 1), 0xcd62_8161);
    }

    #[test]
    fn jhash_matches_independent_implementation() {
        // (len, seed 0, seed 0xdeadbeef, seed 0x9e3779b9) for bytes (i * 37 + 11) & 0xff,
        // computed by a separate Python transcription of include/linux/jhash.h; every tail
        // length 0..=12 and the block loop (> 12) are covered.
        const V: &[(usize, u32, u32, u32)] = &[
            (0, 0xdeadbeef, 0xbd5b7dde, 0x7ce538a8),
            (1, 0xb9c0f036, 0x6bc22f88, 0x5c8a8633),
            (2, 0x76ccdd71, 0x52e33806, 0x60d5e7c9),
            (3, 0xa71025c3, 0x72f1b201, 0x57335406),
            (4, 0x44e1a72e, 0xd3d98aa8, 0x5373fd14),
            (5, 0xcd53084d, 0x6924dfcb, 0x55bf47ef),
            (7, 0x4f96845f, 0x07c6fe51, 0xceab3a91),
            (8, 0x39c60a25, 0xaff3fa94, 0xd8178bf2),
            (9, 0xa68c01f8, 0x0680c497, 0x4a075bc0),
            (11, 0x37d9d710, 0xb603dc2d, 0x045a1a23),
            (12, 0x387958f9, 0xe7509eae, 0xec8fb5d2),
            (13, 0x0d543670, 0x43c667de, 0x4b7e2e89),
            (23, 0x63d5873f, 0xe406de52, 0x70c3c536),
            (24, 0x2d9723a7, 0xa6fc5c3a, 0x94e5e69e),
            (25, 0x43bd1aa6, 0x13f017a8, 0x893909ae),
            (30, 0x522c3eba, 0xec91a3ce, 0x4d3962b8),
        ];
        for &(n, h0, h1, h2) in V {
            let k: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(jhash(&k, 0), h0, "len {n}");
            assert_eq!(jhash(&k, 0xdead_beef), h1, "len {n}");
            assert_eq!(jhash(&k, 0x9e37_79b9), h2, "len {n}");
        }
    }

    #[test]
    fn jhash2_matches_independent_implementation() {
        // Words i * 0x9e3779b9 + 0x7f4a7c15; (count, seed 0, seed 0x12345678).
        const V: &[(usize, u32, u32)] = &[
            (0, 0xdeadbeef, 0xf0e21567),
            (1, 0x9230ab62, 0xbdca91e1),
            (2, 0x6efd9915, 0x22418039),
            (3, 0x96251e33, 0x13f6f304),
            (4, 0x3c4517e7, 0xb3ba4351),
            (5, 0x1ec8cd89, 0xfa97ec75),
            (6, 0xfd23c6a8, 0x3dec967c),
            (7, 0x4c72d8d5, 0xd24101f4),
            (9, 0xd8e0ad75, 0xfa273ba2),
            (10, 0xab274287, 0xcd2a2432),
        ];
        for &(n, h0, h1) in V {
            let w: Vec<u32> = (0..n as u32)
                .map(|i| i.wrapping_mul(0x9e37_79b9).wrapping_add(0x7f4a_7c15))
                .collect();
            assert_eq!(jhash2(&w, 0), h0, "words {n}");
            assert_eq!(jhash2(&w, 0x1234_5678), h1, "words {n}");
            let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).collect();
            assert_eq!(jhash2_bytes(&bytes, 0x1234_5678), h1, "words {n} as bytes");
        }
        // On a little-endian machine jhash2 over words equals jhash over their bytes.
        #[cfg(target_endian = "little")]
        {
            let w = [1u32, 2, 3, 4, 5];
            let b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            assert_eq!(jhash2(&w, 0), 0x6291_29c0);
            assert_eq!(jhash(&b, 0), 0x6291_29c0);
        }
    }

    #[test]
    fn jhash2_bytes_long_input() {
        let bytes: Vec<u8> = (0..256u32).map(|i| i as u8).collect();
        let w: Vec<u32> = bytes.chunks_exact(4).map(word_ne).collect();
        assert_eq!(jhash2_bytes(&bytes, 7), jhash2(&w, 7));
    }
}

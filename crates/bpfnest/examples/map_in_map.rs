// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Builds inner maps and the two kinds of outer map, swaps inner maps, and prints everything
//! the way `bpftool map show` / `map dump` would describe it.
//!
//! Run with `cargo run -p bpfnest --example map_in_map`.

use bpfnest::maps::{Array, ArrayOfMaps, HashMap, HashOfMaps};
use bpfnest::uapi::*;
use bpfnest::{MapAttr, MapHandle, Runtime};

fn show(h: &MapHandle) {
    let i = h.info();
    println!(
        "{}: {}  name {}  flags 0x{:x}\n\tkey {}B  value {}B  max_entries {}",
        i.id,
        map_type_name(i.map_type).unwrap_or("?"),
        i.name_str(),
        i.map_flags,
        i.key_size,
        i.value_size,
        i.max_entries
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::default();
    println!("runtime with {} possible CPUs\n", rt.nr_cpus());

    // The template fixes type, key/value size and flags of every inner map. BPF_F_INNER_MAP
    // lets inner arrays differ in max_entries.
    let template = rt.map_create(
        &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, 1)
            .flags(BPF_F_INNER_MAP)
            .name("tmpl"),
    )?;
    let outer = rt.map_create(
        &MapAttr::new(BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 4)
            .inner_map(template.raw())
            .name("outer_arr"),
    )?;
    drop(template); // the outer map keeps its own copy of the template

    let mut inners = Vec::new();
    for (n, size) in [(0u32, 2u32), (1, 4), (2, 8)] {
        let mut inner = rt.map_create(
            &MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 8, size)
                .flags(BPF_F_INNER_MAP)
                .name(&format!("inner{n}")),
        )?;
        let mut arr: Array<_, u64> = Array::new(&mut inner)?;
        for i in 0..size {
            arr.set(i, u64::from(n * 100 + i), BPF_ANY)?;
        }
        inners.push(inner);
    }
    let mut slots = ArrayOfMaps::new(outer)?;
    slots.set(0, &inners[0], BPF_ANY)?;
    slots.set(2, &inners[1], BPF_ANY)?;

    let hash_tmpl = rt.map_create(&MapAttr::new(BPF_MAP_TYPE_HASH, 4, 8, 16))?;
    let outer_hash = rt.map_create(
        &MapAttr::new(BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, 8)
            .inner_map(hash_tmpl.raw())
            .name("outer_hash"),
    )?;
    let mut by_key = HashOfMaps::<_, u32>::new(outer_hash)?;
    let mut counters: HashMap<_, u32, u64> = HashMap::new(hash_tmpl)?;
    counters.insert(7, 700, BPF_ANY)?;
    by_key.insert(42, counters.handle(), BPF_ANY)?;

    for h in [slots.handle(), by_key.handle()]
        .into_iter()
        .chain(inners.iter())
    {
        show(h);
    }
    println!("\nouter_arr slots (user space reads inner ids):");
    for i in 0..slots.len() {
        println!("\tkey {i}: {:?}", slots.get(i)?);
    }

    // Swap slot 0 for another inner map: the update returns once no program can still see
    // the old one.
    slots.set(0, &inners[2], BPF_ANY)?;
    println!("after swap, slot 0 -> id {:?}", slots.get(0)?);

    // A wrongly shaped map is refused with the kernel's errno.
    let wrong =
        rt.map_create(&MapAttr::new(BPF_MAP_TYPE_ARRAY, 4, 16, 4).flags(BPF_F_INNER_MAP))?;
    if let Err(e) = slots.set(1, &wrong, BPF_ANY) {
        println!("insert of a 16-byte-value array: {e}");
    }
    println!("outer_hash key 42 -> id {:?}", by_key.get(&42)?);
    for (k, v) in counters.iter().collect::<Result<Vec<_>, _>>()? {
        println!("inner hash {} key {k} -> {v}", counters.handle().id());
    }
    Ok(())
}

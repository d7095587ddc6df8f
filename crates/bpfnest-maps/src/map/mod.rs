// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Map families, one module per kernel file (`kernel/bpf/<file>.c`).

pub mod arraymap;
pub mod bloom_filter;
pub mod hashtab;
pub mod jhash;
pub mod lpm_trie;
pub mod lru_list;
pub mod map_in_map;
pub mod queue_stack;
pub mod ringbuf;

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! PLACEHOLDER: being written. Replaced wholesale by its implementation.
#![allow(missing_docs, dead_code, reason = "placeholder")]
use crate::{attr::MapAttr, errno::{Errno, Result}, ops::MapOps, registry::{AllocCtx, MapTypeOps}};
fn stub_alloc(_: &MapAttr, _: &AllocCtx<'_>) -> Result<Box<dyn MapOps>> { Err(Errno::EINVAL) }
pub static HTAB_MAP_OPS: MapTypeOps = MapTypeOps { map_type: 0, alloc_check: None, alloc: stub_alloc, meta_equal: None, check_btf: None, unprivileged: true };
pub static HTAB_PERCPU_MAP_OPS: MapTypeOps = MapTypeOps { map_type: 0, alloc_check: None, alloc: stub_alloc, meta_equal: None, check_btf: None, unprivileged: true };
pub static HTAB_LRU_MAP_OPS: MapTypeOps = MapTypeOps { map_type: 0, alloc_check: None, alloc: stub_alloc, meta_equal: None, check_btf: None, unprivileged: true };
pub static HTAB_LRU_PERCPU_MAP_OPS: MapTypeOps = MapTypeOps { map_type: 0, alloc_check: None, alloc: stub_alloc, meta_equal: None, check_btf: None, unprivileged: true };
pub static HTAB_OF_MAPS_MAP_OPS: MapTypeOps = MapTypeOps { map_type: 0, alloc_check: None, alloc: stub_alloc, meta_equal: None, check_btf: None, unprivileged: true };

// SPDX-License-Identifier: Apache-2.0 OR MIT
//! Loom models of the BPF LRU (`src/map/lru_list.rs`). Run with `ci/loom.sh`, or:
//! `RUSTFLAGS="--cfg bpfnest_loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release -p bpfnest-maps
//! --test loom_lru --target-dir target/loom`.
//!
//! Two threads, each on its own CPU, pop elements, link them into a model hash table, delete
//! them and pop again on a 2–4 node LRU, so refills, flushes, shrinks, steals and both push
//! paths run against each other under every interleaving loom tries. The table records every
//! node's owner: a pop handing out a node that is still owned (double allocation) fails an
//! assertion, and after the threads join the LRU's own structural check must pass (every list
//! consistent, every node on exactly one list carrying that list's type, counts right).
#![cfg(bpfnest_loom)]

#[cfg(bpfnest_loom)]
mod models {
    use bpfnest_maps::map::lru_list::{BpfLru, LruOwner, NodeId};
    use loom::sync::{Arc, Mutex};
    use loom::thread;

    /// Where a node is, as the hash table sees it.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    enum State {
        /// In the LRU's free lists (or on its way back there).
        Free,
        /// Returned by `pop_free`, not linked yet.
        Popped,
        /// Linked into the table: evictable.
        Linked,
    }

    /// The hash table side: `del_from_htab` unlinks a linked node, as htab_lru_map_delete_node.
    struct Htab {
        lru: BpfLru,
        nodes: Mutex<Vec<State>>,
    }

    impl LruOwner for Htab {
        fn del_from_htab(&self, node: NodeId) -> bool {
            let mut nodes = self.nodes.lock().unwrap();
            if nodes[node as usize] == State::Linked {
                nodes[node as usize] = State::Free;
                true
            } else {
                false
            }
        }
    }

    impl Htab {
        fn new(percpu: bool, nr_elems: u32) -> Arc<Htab> {
            Arc::new(Htab {
                lru: BpfLru::new(percpu, 2, nr_elems),
                nodes: Mutex::new(vec![State::Free; nr_elems as usize]),
            })
        }

        /// htab_lru_map_update_elem for a new key: pop (may evict), then link.
        fn insert(&self, cpu: u32) -> Option<NodeId> {
            let node = self.lru.pop_free(self, cpu, cpu)?;
            let mut nodes = self.nodes.lock().unwrap();
            assert_eq!(
                nodes[node as usize],
                State::Free,
                "node {node} handed out twice"
            );
            nodes[node as usize] = State::Linked;
            Some(node)
        }

        /// htab_lru_map_delete_elem: unlink if still linked (an eviction may have won), then
        /// push free.
        fn delete(&self, node: NodeId) {
            let was_linked = {
                let mut nodes = self.nodes.lock().unwrap();
                let linked = nodes[node as usize] == State::Linked;
                if linked {
                    nodes[node as usize] = State::Free;
                }
                linked
            };
            if was_linked {
                self.lru.push_free(node);
            }
        }

        /// A pop whose node is never linked (the update failed check_flags): straight back.
        fn pop_and_abort(&self, cpu: u32) {
            if let Some(node) = self.lru.pop_free(self, cpu, 0) {
                {
                    let mut nodes = self.nodes.lock().unwrap();
                    assert_eq!(
                        nodes[node as usize],
                        State::Free,
                        "node {node} handed out twice"
                    );
                    nodes[node as usize] = State::Popped;
                    nodes[node as usize] = State::Free;
                }
                self.lru.push_free(node);
            }
        }

        fn check(&self) {
            self.lru.debug_check().unwrap();
            let nodes = self.nodes.lock().unwrap();
            assert!(nodes.iter().all(|s| *s != State::Popped));
        }
    }

    /// Common LRU, 2 CPUs, 2 nodes (target_free 1): each CPU inserts, deletes and inserts
    /// again, so refills, pending pushes and steals from the other CPU's lists interleave.
    #[test]
    fn common_insert_delete_insert() {
        loom::model(|| {
            let h = Htab::new(false, 2);
            let ts: Vec<_> = (0..2)
                .map(|cpu| {
                    let h = h.clone();
                    thread::spawn(move || {
                        if let Some(n) = h.insert(cpu) {
                            h.delete(n);
                        }
                        h.insert(cpu);
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            h.check();
        });
    }

    /// Common LRU, 2 CPUs, 2 nodes: CPU 1 deletes an element still pending on CPU 0's local
    /// list while CPU 0 refills, which flushes that list into the global one. The push must
    /// see either the pending node (under CPU 0's local lock) or the flushed one (type
    /// rechecked under that lock, then the global push).
    #[test]
    fn common_remote_push_races_flush() {
        loom::model(|| {
            let h = Htab::new(false, 2);
            let x = h.insert(0).unwrap();
            let h0 = h.clone();
            let t0 = thread::spawn(move || {
                h0.insert(0);
            });
            let h1 = h.clone();
            let t1 = thread::spawn(move || h1.delete(x));
            t0.join().unwrap();
            t1.join().unwrap();
            h.check();
        });
    }

    /// Common LRU, 2 CPUs, 1 node pending on CPU 1: CPU 0 can only get it by stealing from
    /// CPU 1's pending list, while CPU 1 deletes it and inserts again (then steals it back or
    /// finds it on its local free list).
    #[test]
    fn common_steal_races_delete() {
        loom::model(|| {
            let h = Htab::new(false, 1);
            let y = h.insert(1).unwrap();
            let h0 = h.clone();
            let t0 = thread::spawn(move || {
                h0.insert(0);
            });
            let h1 = h.clone();
            let t1 = thread::spawn(move || {
                h1.delete(y);
                h1.insert(1);
            });
            t0.join().unwrap();
            t1.join().unwrap();
            h.check();
        });
    }

    /// Common LRU, 2 CPUs, 3 nodes: one CPU fills past capacity (evicting through the global
    /// lists) and marks its element referenced while the other aborts an update (a pending
    /// node pushed back to its local free list) and deletes across CPUs.
    #[test]
    fn common_evict_ref_and_abort() {
        loom::model(|| {
            let h = Htab::new(false, 3);
            let first = h.insert(1).unwrap();
            let h0 = h.clone();
            let t0 = thread::spawn(move || {
                if let Some(n) = h0.insert(0) {
                    h0.lru.mark_ref(n);
                }
                h0.insert(0);
            });
            let h1 = h.clone();
            let t1 = thread::spawn(move || {
                h1.pop_and_abort(1);
                h1.delete(first);
            });
            t0.join().unwrap();
            t1.join().unwrap();
            h.check();
        });
    }

    /// Per-CPU LRU, 2 CPUs, 4 nodes (2 each): each CPU inserts past its share (a shrink of
    /// its own list) while the other CPU deletes one of its elements (a push to a remote list).
    #[test]
    fn percpu_shrink_and_remote_push() {
        loom::model(|| {
            let h = Htab::new(true, 4);
            let a = h.insert(0).unwrap();
            let b = h.insert(1).unwrap();
            let ts: Vec<_> = [(0, b), (1, a)]
                .into_iter()
                .map(|(cpu, remote)| {
                    let h = h.clone();
                    thread::spawn(move || {
                        h.insert(cpu);
                        h.delete(remote);
                        h.insert(cpu);
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            h.check();
        });
    }
}

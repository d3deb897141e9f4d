//! Flood reports: what the kernel's per-workload budgets suppressed, and who.
//!
//! A budget entry that suppresses writes a notice to the priority ring (at most one a second
//! per entry). The tracker keeps the entries it was told about and, at each poll, reads their
//! per-CPU tallies from the kernel, reporting what grew since the last poll. An entry that has
//! not grown for two polls is forgotten until its next notice. Only entries that flood are
//! ever read: a poll costs one map lookup per flooding workload, not a scan of the map.
use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use sovereign_agent_common::{
    BudgetKey, FloodTally, FlowRecord, BUDGET_CLASS_TCP, BUDGET_ENTRIES, BUDGET_SCOPE_PROCESS,
    SUPPRESSED_DNS, SUPPRESSED_KINDS, SUPPRESSED_TCP_CONNECT, SUPPRESSED_TLS, SUPPRESSED_UDP,
};

use crate::event::Suppressed;

/// What one budget entry suppressed since the previous report.
#[derive(Clone, Debug, PartialEq)]
pub struct FloodReport {
    pub key: BudgetKey,
    /// The notice: who (tgid for process scope, cgroup, uid, comm when the entry was made).
    pub notice: FlowRecord,
    pub suppressed: Suppressed,
    /// Monotonic ns of the first and last suppression counted here.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The last destination suppressed: family, address, port.
    pub sample: (u16, [u8; 16], u16),
}

impl FloodReport {
    pub fn scope(&self) -> &'static str {
        if self.key.scope == BUDGET_SCOPE_PROCESS {
            "process"
        } else {
            "cgroup"
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.key.class == BUDGET_CLASS_TCP
    }
}

struct Active {
    notice: FlowRecord,
    reported: [u64; SUPPRESSED_KINDS],
    last_ns: u64,
    idle_polls: u8,
}

pub struct FloodTracker {
    floods: PerCpuHashMap<MapData, BudgetKey, FloodTally>,
    suppressed: PerCpuArray<MapData, u64>,
    active: HashMap<BudgetKey, Active>,
    /// Notices for entries beyond [`BUDGET_ENTRIES`] (cannot happen unless the map changes).
    pub notices_dropped: u64,
}

impl FloodTracker {
    pub fn new(
        floods: PerCpuHashMap<MapData, BudgetKey, FloodTally>,
        suppressed: PerCpuArray<MapData, u64>,
    ) -> Self {
        Self {
            floods,
            suppressed,
            active: HashMap::new(),
            notices_dropped: 0,
        }
    }

    /// A flood notice from the priority ring.
    pub fn on_notice(&mut self, rec: &FlowRecord) {
        let key = BudgetKey {
            id: if u32::from(rec.family) == BUDGET_SCOPE_PROCESS {
                u64::from(rec.tgid)
            } else {
                rec.cgroup_id
            },
            scope: u32::from(rec.family),
            class: u32::from(rec.flags),
        };
        if let Some(a) = self.active.get_mut(&key) {
            a.idle_polls = 0;
            return;
        }
        if self.active.len() >= BUDGET_ENTRIES as usize {
            self.notices_dropped += 1;
            return;
        }
        self.active.insert(
            key,
            Active {
                notice: *rec,
                reported: [0; SUPPRESSED_KINDS],
                last_ns: 0,
                idle_polls: 0,
            },
        );
    }

    /// What every flooding entry suppressed since the previous poll.
    pub fn poll(&mut self) -> Vec<FloodReport> {
        let mut out = Vec::new();
        self.active.retain(|key, a| {
            let Ok(per_cpu) = self.floods.get(key, 0) else {
                // Evicted (more flooding workloads than entries): the global counters still
                // count what it suppressed.
                return false;
            };
            let mut total = [0u64; SUPPRESSED_KINDS];
            let (mut first, mut last, mut sample) = (u64::MAX, 0u64, (0, [0u8; 16], 0));
            for t in per_cpu.iter() {
                for (sum, n) in total.iter_mut().zip(t.suppressed) {
                    *sum += n;
                }
                if t.first_ns != 0 {
                    first = first.min(t.first_ns);
                }
                if t.last_ns > last {
                    last = t.last_ns;
                    sample = (t.sample_family, t.sample_addr, t.sample_port);
                }
            }
            let delta: Vec<u64> = total
                .iter()
                .zip(a.reported)
                .map(|(now, before)| now.saturating_sub(before))
                .collect();
            if delta.iter().all(|d| *d == 0) {
                a.idle_polls += 1;
                return a.idle_polls < 2;
            }
            a.idle_polls = 0;
            out.push(FloodReport {
                key: *key,
                notice: a.notice,
                suppressed: Suppressed {
                    tcp_connects: delta[SUPPRESSED_TCP_CONNECT],
                    udp: delta[SUPPRESSED_UDP],
                    dns_packets: delta[SUPPRESSED_DNS],
                    tls_segments: delta[SUPPRESSED_TLS],
                },
                first_ns: if a.last_ns == 0 { first } else { a.last_ns },
                last_ns: last,
                sample,
            });
            a.reported = total;
            a.last_ns = last;
            true
        });
        out
    }

    /// Every record suppressed since load, by what it would have reported (attributed or not).
    pub fn totals(&self) -> Suppressed {
        let mut sums = [0u64; SUPPRESSED_KINDS];
        for (i, sum) in sums.iter_mut().enumerate() {
            if let Ok(per_cpu) = self.suppressed.get(&(i as u32), 0) {
                *sum = per_cpu.iter().sum();
            }
        }
        Suppressed {
            tcp_connects: sums[SUPPRESSED_TCP_CONNECT],
            udp: sums[SUPPRESSED_UDP],
            dns_packets: sums[SUPPRESSED_DNS],
            tls_segments: sums[SUPPRESSED_TLS],
        }
    }
}

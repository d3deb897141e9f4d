//! Flood reports: what the kernel's per-workload budgets suppressed, and who.
//!
//! Two kinds of report: a budget entry's (a process or cgroup over its budget, with the
//! counts by kind and the last destination), and a destination's (TCP connects repeated to a
//! destination the workload had reached, folded by its budget and counted under that
//! destination: `Repeats` notices and the `DESTINATION_REPEATS` map).
//!
//! A budget entry that suppresses writes a notice to the priority ring (at most one a second
//! per entry). The tracker keeps the entries it was told about and, at each poll, reads their
//! per-CPU tallies from the kernel, reporting what grew since the last poll. An entry that has
//! not grown for two polls is forgotten until its next notice. Only entries that flood are
//! ever read: a poll costs one map lookup per flooding workload, not a scan of the map.
use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, PerCpuHashMap};
use sovereign_agent_common::{
    BudgetKey, DestinationKey, FloodTally, FlowRecord, RepeatTally, BUDGET_CLASS_PROCESS_RECORDS,
    BUDGET_CLASS_TCP, BUDGET_ENTRIES, BUDGET_SCOPE_DESTINATION, BUDGET_SCOPE_PROCESS,
    DESTINATION_REPEAT_ENTRIES, SUPPRESSED_DNS, SUPPRESSED_KINDS, SUPPRESSED_PROCESS,
    SUPPRESSED_TCP_CONNECT, SUPPRESSED_TLS, SUPPRESSED_UDP,
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
        match self.key.scope {
            BUDGET_SCOPE_PROCESS => "process",
            BUDGET_SCOPE_DESTINATION => "destination",
            _ => "cgroup",
        }
    }

    pub fn is_tcp(&self) -> bool {
        self.key.class == BUDGET_CLASS_TCP
    }

    /// A report of process records (fork, exec, exit): it has no destination.
    pub fn is_process_records(&self) -> bool {
        self.key.class == BUDGET_CLASS_PROCESS_RECORDS
    }
}

struct Active {
    notice: FlowRecord,
    reported: [u64; SUPPRESSED_KINDS],
    last_ns: u64,
    idle_polls: u8,
}

/// A destination whose repeats are being folded.
struct ActiveDestination {
    notice: FlowRecord,
    reported: u64,
    last_ns: u64,
    idle_polls: u8,
}

pub struct FloodTracker {
    floods: PerCpuHashMap<MapData, BudgetKey, FloodTally>,
    repeats: PerCpuHashMap<MapData, DestinationKey, RepeatTally>,
    suppressed: PerCpuArray<MapData, u64>,
    active: HashMap<BudgetKey, Active>,
    destinations: HashMap<DestinationKey, ActiveDestination>,
    /// Notices for entries beyond [`BUDGET_ENTRIES`] (cannot happen unless the map changes).
    pub notices_dropped: u64,
}

impl FloodTracker {
    pub fn new(
        floods: PerCpuHashMap<MapData, BudgetKey, FloodTally>,
        repeats: PerCpuHashMap<MapData, DestinationKey, RepeatTally>,
        suppressed: PerCpuArray<MapData, u64>,
    ) -> Self {
        Self {
            floods,
            repeats,
            suppressed,
            active: HashMap::new(),
            destinations: HashMap::new(),
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

    /// A `Repeats` notice: the kernel folds repeated connects to this record's destination.
    pub fn on_repeats(&mut self, rec: &FlowRecord) {
        let key = DestinationKey {
            cgroup_id: rec.cgroup_id,
            addr: rec.dst_addr,
            port: rec.dst_port,
            family: rec.family,
            protocol: rec.protocol,
            _pad: [0; 3],
        };
        if let Some(a) = self.destinations.get_mut(&key) {
            a.idle_polls = 0;
            a.notice = *rec;
            return;
        }
        if self.destinations.len() >= DESTINATION_REPEAT_ENTRIES as usize {
            self.notices_dropped += 1;
            return;
        }
        self.destinations.insert(
            key,
            ActiveDestination {
                notice: *rec,
                reported: 0,
                last_ns: 0,
                idle_polls: 0,
            },
        );
    }

    /// What every flooding entry suppressed since the previous poll, and the repeats folded
    /// under each destination.
    pub fn poll(&mut self) -> Vec<FloodReport> {
        let mut out = self.poll_budgets();
        self.poll_destinations(&mut out);
        out
    }

    fn poll_destinations(&mut self, out: &mut Vec<FloodReport>) {
        self.destinations.retain(|key, a| {
            let Ok(per_cpu) = self.repeats.get(key, 0) else {
                // Evicted: the global counter still counts what was folded.
                return false;
            };
            let (mut total, mut first, mut last) = (0u64, u64::MAX, 0u64);
            for t in per_cpu.iter() {
                total += t.connects;
                if t.first_ns != 0 {
                    first = first.min(t.first_ns);
                }
                last = last.max(t.last_ns);
            }
            let delta = total.saturating_sub(a.reported);
            if delta == 0 {
                a.idle_polls += 1;
                return a.idle_polls < 2;
            }
            a.idle_polls = 0;
            out.push(FloodReport {
                key: BudgetKey {
                    id: key.cgroup_id,
                    scope: BUDGET_SCOPE_DESTINATION,
                    class: BUDGET_CLASS_TCP,
                },
                notice: a.notice,
                suppressed: Suppressed {
                    tcp_connects: delta,
                    ..Suppressed::default()
                },
                first_ns: if a.last_ns == 0 { first } else { a.last_ns },
                last_ns: last,
                sample: (key.family, key.addr, key.port),
            });
            a.reported = total;
            a.last_ns = last;
            true
        });
    }

    fn poll_budgets(&mut self) -> Vec<FloodReport> {
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
                    process_records: delta[SUPPRESSED_PROCESS],
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
            process_records: sums[SUPPRESSED_PROCESS],
        }
    }
}

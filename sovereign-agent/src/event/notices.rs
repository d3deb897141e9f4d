//! What the kernel could not report, said as events: `loss` (ring buffers full), `flood` (a
//! budget suppressed records), `dns_refused` (answers refused for naming).
use std::{net::IpAddr, sync::Arc};

use serde::Serialize;

use super::{flow::*, kind::*};

/// Records the kernel could not deliver since the previous loss event.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LossEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    pub kind: EventKind,
    pub lost: u64,
}

/// A DNS answer refused for naming (docs/events.md): nobody in the watched cgroup asked for
/// it, or it posed as a trusted resolver. An attack signal; repeats are folded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DnsRefusedEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    /// Always `dns_refused`.
    pub kind: &'static str,
    pub reason: &'static str,
    pub cgroup_id: u64,
    pub cgroup: Option<Arc<str>>,
    /// The process that owns the receiving socket, when the agent saw it send a query
    /// (0 and empty otherwise).
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Arc<str>>,
    pub cookie: u64,
    pub resolver: String,
    pub client_port: u16,
    pub question: Option<String>,
    pub names: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub count: u64,
}

/// A workload went over its budget: records it would have caused were counted in the kernel
/// instead of written (docs/events.md, "flood"). One per budget entry and poll while the
/// flood lasts; the counts are those since the previous one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FloodEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    /// Always `flood`.
    pub kind: &'static str,
    /// `process` (socket calls, attributed to the process) or `cgroup` (packets).
    pub scope: &'static str,
    pub suppressed: Suppressed,
    /// First and last suppression this event counts.
    pub first: String,
    pub last: String,
    #[serde(skip)]
    pub first_unix_ns: i64,
    #[serde(skip)]
    pub last_unix_ns: i64,
    /// The workload (process facts, cgroup, container, unit) and the last destination it was
    /// suppressed on, judged like any flow.
    pub flow: Box<FlowEvent>,
}

/// Records a budget suppressed, by what they would have reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Suppressed {
    pub tcp_connects: u64,
    /// UDP connects and first datagrams to new destinations.
    pub udp: u64,
    pub dns_packets: u64,
    pub tls_segments: u64,
    /// Fork, exec and exit records (scope `cgroup`; the flow then has no destination).
    pub process_records: u64,
}

impl Suppressed {
    pub fn total(&self) -> u64 {
        self.tcp_connects + self.udp + self.dns_packets + self.tls_segments + self.process_records
    }
}

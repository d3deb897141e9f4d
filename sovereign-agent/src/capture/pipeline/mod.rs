//! The user-space flow: ring buffers → decode → enrich → event → sink.
//!
//! One task drains the ring buffers on each wake-up (in slices, the bulk ring first so a
//! process's exec is read before its TCP connect in the priority ring), so a burst costs one
//! wake-up, not one per record; while records keep coming it polls instead of being woken
//! ([`polling`]). Kernel losses are polled from the per-CPU counter and flow on
//! as `loss` events; budget suppressions as `flood` events. Unknown or truncated records are
//! counted and skipped.
//!
//! [`rings`] reads the two rings; each record's steps: [`flows`] (the flow records),
//! [`describe`] (who, names and verdict: the one place a flow event is built), [`naming`]
//! (what DNS and TLS packets teach), [`gaps`] (what the kernel could not report); [`emit`]
//! is where events leave (the flow ceiling, the sink).
mod describe;
mod emit;
mod flows;
mod gaps;
mod naming;
mod polling;
mod rings;

use std::{
    future::Future,
    io,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use lru::LruCache;
use sovereign_agent_common::{
    DecodeError, Decoded, FlowRecord, PacketView, Record, RecordKind, SendKey, SendTally,
    IPPROTO_TCP,
};
use tokio::io::{unix::AsyncFd, Interest};

use crate::{
    alerts::AlertFolder,
    capture::bpf::CaptureMaps,
    capture::budgets::{FloodReport, FloodTracker},
    clock::WallClock,
    enrich::ProcessTable,
    event::{
        flow_kind, DnsRefusedEvent, Event, EventKind, FloodEvent, FlowEvent, Lifecycle,
        LifecycleEvent, LossEvent,
    },
    journal::output::EventSink,
    names::{Learned, Namer, NamesOptions, RefusedAnswer},
    policy::PolicyReceiver,
};

/// Tunables of the pipeline (from the config file).
#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// Processes kept in the process table.
    pub process_cache_entries: NonZeroUsize,
    /// An exited process stays in the table this long (its flows may still be in the ring).
    pub process_keep_exited: Duration,
    /// Ancestors named on each flow event.
    pub ancestors_depth: usize,
    /// UDP sockets whose first sends are remembered until the socket closes.
    pub udp_socket_entries: NonZeroUsize,
    pub loss_poll_interval: Duration,
    pub clock_refresh_interval: Duration,
    /// Naming: trusted resolvers, the query table and the name map.
    pub names: NamesOptions,
    /// Open TCP connections remembered so that a verdict that changes after connect (when
    /// the SNI is read) still raises its alert once.
    pub open_flow_entries: NonZeroUsize,
    /// The watched cgroup's directory: where a cgroup id seen in no flow is looked up.
    pub watched_cgroup: Option<std::path::PathBuf>,
    /// Drain the ring buffer at least this often (the kernel wakes the reader only for
    /// large batches when [`crate::capture::bpf::CaptureOptions::wakeup_bytes`] is set).
    pub max_event_delay: Duration,
    /// While records keep coming, poll the rings every millisecond and let the programs
    /// submit without waking the reader (see [`polling`]). Off with per-record wake-ups.
    pub poll_when_busy: bool,
    /// Flow events written per second and at once before flows are folded (see
    /// [`crate::journal::ceiling`]); `None`: no ceiling.
    pub flow_ceiling: Option<(u64, u64)>,
}

/// Destinations kept per UDP socket until its release: as many as the kernel's send map holds
/// (more could not have a count).
const MAX_SENDS_PER_SOCKET: usize = 65_536;

/// The sends of one UDP socket, kept until it is released: its first `send` event as the
/// template of its `close` events, and each destination as a 32-byte key, so a socket that
/// sprays 60,000 destinations costs 2 MB here instead of 60,000 events.
struct UdpSends {
    template: Box<FlowEvent>,
    keys: Vec<SendKey>,
}

/// Records handled per turn of the event loop (a few milliseconds of work in a release build),
/// with the other tasks of the thread (the API, the watchdog) run between turns, so a flood
/// that keeps the ring full cannot starve them.
const DRAIN_SLICE: usize = 512;

impl Default for PipelineOptions {
    fn default() -> Self {
        Self {
            process_cache_entries: NonZeroUsize::new(32_768).unwrap(),
            process_keep_exited: Duration::from_secs(30),
            ancestors_depth: 4,
            udp_socket_entries: NonZeroUsize::new(65_536).unwrap(),
            loss_poll_interval: Duration::from_secs(1),
            clock_refresh_interval: Duration::from_secs(60),
            names: NamesOptions::default(),
            open_flow_entries: NonZeroUsize::new(16_384).unwrap(),
            watched_cgroup: None,
            max_event_delay: Duration::from_millis(20),
            poll_when_busy: true,
            flow_ceiling: None,
        }
    }
}

/// Counters of one run, reported at shutdown (and later as metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub connect: u64,
    /// Connections found open at start.
    pub existing: u64,
    /// Connects and datagrams refused by an enforce rule.
    pub refused: u64,
    pub send: u64,
    pub established: u64,
    pub close: u64,
    pub kernel_losses: u64,
    pub truncated_records: u64,
    pub unknown_kinds: u64,
    pub udp_release_without_sends: u64,
    /// Alerts raised after a flow's first event (its verdict changed when its SNI was read).
    pub late_alerts: u64,
    /// TCP closes whose kernel owner entry had been evicted.
    pub owner_evictions: u64,
    /// Fork, exec, argument and exit records applied to the process table.
    pub process_records: u64,
    /// Times the ring buffer was left unread because the journal was behind its disk.
    pub output_behind: u64,
    /// Destinations of one UDP socket beyond `MAX_SENDS_PER_SOCKET` (their datagrams stay
    /// counted in the kernel until its map's LRU drops them).
    pub udp_sends_not_kept: u64,
    /// Releases of sockets whose sends were not seen, not looked up during a flood.
    pub udp_release_unscanned: u64,
    /// `flood` events emitted, and the records they stand for.
    pub flood_events: u64,
    pub suppressed_reported: u64,
    /// Flows the ceiling folded into `aggregated` events.
    pub flows_folded: u64,
    /// DNS, TLS and refused-answer counters of the naming stage.
    pub names: crate::names::NameStats,
}

impl Stats {
    fn count(&mut self, kind: EventKind) {
        match kind {
            EventKind::Connect => self.connect += 1,
            EventKind::Existing => self.existing += 1,
            EventKind::Refused => self.refused += 1,
            EventKind::Send => self.send += 1,
            EventKind::Established => self.established += 1,
            EventKind::Close => self.close += 1,
            EventKind::Loss => {}
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("writing events: {0}")]
    Output(io::Error),
    #[error("reading the ring buffer: {0}")]
    Ring(io::Error),
}

pub struct Pipeline {
    clock: WallClock,
    clock_sampled: Instant,
    options: PipelineOptions,
    processes: ProcessTable,
    /// The sends of each UDP socket that sent unconnected datagrams, by cookie, until release.
    udp_pairs: LruCache<u64, UdpSends>,
    /// When the kernel's send map was last scanned for a socket whose sends were not seen.
    last_send_scan: Option<Instant>,
    udp_sends: HashMap<MapData, SendKey, SendTally>,
    losses: PerCpuArray<MapData, u64>,
    losses_reported: u64,
    floods: FloodTracker,
    /// Folds flows beyond the configured rate (the journal's disk budget).
    ceiling: Option<crate::journal::ceiling::FlowCeiling>,
    /// Priority-ring records read and waiting for their turn in time order (see `drain_some`).
    pending_priority: std::collections::VecDeque<Decoded>,
    sink: Box<dyn EventSink>,
    stats: Stats,
    policy: Option<PolicyReceiver>,
    /// Whether the policy in force has been recorded (a `policy` lifecycle event).
    policy_recorded: bool,
    /// Shared with the API's `GetStatus`.
    counters: Option<std::sync::Arc<crate::telemetry::counters::Counters>>,
    /// Violations → alerts, folded per (workload, destination, rule).
    alerts: Option<AlertFolder>,
    names: Namer,
    /// What the kernel knows of DNS packets' sockets (netns, a named resolver's cgroup).
    dns_provenance: crate::capture::dns_provenance::DnsProvenance,
    /// The connect event of each open TCP connection, and whether it has alerted.
    open_flows: LruCache<u64, (Box<FlowEvent>, bool)>,
    /// Who connected each open TCP socket (the connect record), for a close whose kernel
    /// entry was evicted.
    connect_owners: LruCache<u64, FlowRecord>,
    /// Keys the workloads' shares of the query table (see `enrich::container::share_key`).
    share_keys: std::hash::RandomState,
    /// The process behind each socket that sent DNS queries (for refused-answer reports).
    dns_sockets: LruCache<u64, (u32, [u8; 16])>,
    /// cgroup id → workload, from the watched hierarchy (the kernel's id of every record).
    cgroups: Option<crate::enrich::cgroups::CgroupIndex>,
    /// Flow steps found outside the ring buffer (connections open at start, and their ends).
    found: Option<tokio::sync::mpsc::Receiver<crate::capture::existing::Found>>,
    /// Whether the reader polls instead of being woken (see [`polling`]).
    polling: polling::ReaderPolling,
    /// Records read from the rings so far (a poll that reads none ends polling).
    drained: u64,
}

/// The kernel's two ring buffers.
pub struct Rings {
    /// UDP, DNS, TLS and process records.
    pub events: RingBuf<MapData>,
    /// TCP connections and flood notices.
    pub priority: RingBuf<MapData>,
}

impl Pipeline {
    pub fn new(
        maps: CaptureMaps,
        sink: Box<dyn EventSink>,
        options: PipelineOptions,
    ) -> (Self, Rings) {
        let CaptureMaps {
            events,
            priority,
            floods,
            repeats,
            dns_netns,
            suppressed,
            losses,
            udp_sends,
            tcp_sockets: _,
            reader_polling,
        } = maps;
        let ceiling = options
            .flow_ceiling
            .map(|(rate, burst)| crate::journal::ceiling::FlowCeiling::new(rate, burst));
        let polling = polling::ReaderPolling::new(options.poll_when_busy.then_some(reader_polling));
        let pipeline = Self {
            clock: WallClock::sample(),
            clock_sampled: Instant::now(),
            processes: {
                let mut t =
                    ProcessTable::new(options.process_cache_entries, options.process_keep_exited);
                t.seed();
                t
            },
            udp_pairs: LruCache::new(options.udp_socket_entries),
            last_send_scan: None,
            names: Namer::new(&options.names),
            dns_provenance: crate::capture::dns_provenance::DnsProvenance::new(
                dns_netns,
                // Checked by the configuration's validation.
                crate::names::resolvers::resolver_cgroups(
                    &options.names.resolver_cgroups,
                    "names.resolver_cgroups",
                )
                .unwrap_or_default(),
            ),
            open_flows: LruCache::new(options.open_flow_entries),
            connect_owners: LruCache::new(options.open_flow_entries),
            share_keys: std::hash::RandomState::new(),
            dns_sockets: LruCache::new(options.names.map_per_cgroup),
            cgroups: options
                .watched_cgroup
                .as_deref()
                .map(crate::enrich::cgroups::CgroupIndex::for_cgroup),
            options,
            udp_sends,
            losses,
            losses_reported: 0,
            floods: FloodTracker::new(floods, repeats, suppressed),
            ceiling,
            pending_priority: std::collections::VecDeque::with_capacity(DRAIN_SLICE),
            sink,
            stats: Stats::default(),
            policy: None,
            policy_recorded: false,
            counters: None,
            alerts: None,
            found: None,
            polling,
            drained: 0,
        };
        (pipeline, Rings { events, priority })
    }

    /// Judges every flow under the policy this receiver publishes (it may change while the
    /// pipeline runs: each flow is judged under the policy in force when it is processed).
    pub fn with_policy(mut self, policy: PolicyReceiver) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Also reports the flow steps `found` sends (see [`crate::capture::existing`]).
    pub fn with_found(
        mut self,
        found: tokio::sync::mpsc::Receiver<crate::capture::existing::Found>,
    ) -> Self {
        self.found = Some(found);
        self
    }

    /// Raises alerts for violations (folded by `folder`).
    pub fn with_alerts(mut self, folder: AlertFolder) -> Self {
        self.alerts = Some(folder);
        self
    }

    /// Keeps `counters` current (events, kernel losses, decode errors) for the API.
    pub fn with_counters(
        mut self,
        counters: std::sync::Arc<crate::telemetry::counters::Counters>,
    ) -> Self {
        self.counters = Some(counters);
        self
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

//! The user-space flow: ring buffers → decode → enrich → event → sink.
//!
//! One task drains the ring buffers on each wake-up (in slices, the bulk ring first so a
//! process's exec is read before its TCP connect in the priority ring), so a burst costs one
//! wake-up, not one per record; while records keep coming it polls instead of being woken
//! ([`polling`]). Kernel losses are polled from the per-CPU counter and flow on
//! as `loss` events; budget suppressions as `flood` events. Unknown or truncated records are
//! counted and skipped.
//!
//! Each record's steps: [`flows`] (the flow records), [`describe`] (who, names and verdict:
//! the one place a flow event is built), [`naming`] (what DNS and TLS packets teach),
//! [`floods`] (what the kernel could not report).
mod describe;
mod floods;
mod flows;
mod naming;
mod polling;

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
    capture::flood::{FloodReport, FloodTracker},
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

    /// Emits the alerts and refused-answer reports whose folding window ended by `now_ns`
    /// (all of them with `i64::MAX`, at shutdown).
    fn expire_alerts(&mut self, now_ns: i64) -> Result<(), PipelineError> {
        let due = self
            .alerts
            .as_mut()
            .map(|a| a.expire(now_ns))
            .unwrap_or_default();
        let refused = self
            .names
            .expire_refused((now_ns != i64::MAX).then(Instant::now));
        let any = !due.is_empty() || !refused.is_empty();
        for alert in due {
            self.emit(Event::Alert(Box::new(alert)))?;
        }
        for r in refused {
            self.emit_refused(r)?;
        }
        if any {
            self.sink.flush().map_err(PipelineError::Output)?;
        }
        Ok(())
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

    /// Runs until `shutdown` resolves, then drains what the ring buffers still hold.
    pub async fn run(
        mut self,
        rings: Rings,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Stats, PipelineError> {
        // SAFETY: each RingBuf owns its map fd and neither replaces nor closes it while the
        // AsyncFd holds it; the fd is deregistered when the ring is dropped at the end.
        let mut ring = unsafe { AsyncFd::register_with_interest(rings.events, Interest::READABLE) }
            .map_err(|e| PipelineError::Ring(e.into()))?;
        // SAFETY: as above.
        let mut priority =
            unsafe { AsyncFd::register_with_interest(rings.priority, Interest::READABLE) }
                .map_err(|e| PipelineError::Ring(e.into()))?;
        let mut loss_tick = tokio::time::interval(self.options.loss_poll_interval);
        loss_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain_tick = tokio::time::interval(self.options.max_event_delay);
        drain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut poll_tick = tokio::time::interval(polling::POLL_INTERVAL);
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        self.record_policy()?;
        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(PipelineError::Ring)?;
                    let more = self.drain_some(guard.get_inner_mut(), priority.get_mut())?;
                    if !more {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.poll_from_now(&mut poll_tick);
                    if more {
                        // A flood keeps the ring full: let the health, metrics and API tasks
                        // of this thread run between slices.
                        tokio::task::yield_now().await;
                    }
                }
                guard = priority.readable_mut() => {
                    let mut guard = guard.map_err(PipelineError::Ring)?;
                    let more = self.drain_some(ring.get_mut(), guard.get_inner_mut())?;
                    if !more {
                        guard.clear_ready();
                    }
                    drop(guard);
                    self.poll_from_now(&mut poll_tick);
                    if more {
                        tokio::task::yield_now().await;
                    }
                }
                _ = poll_tick.tick(), if self.polling.is_polling() => {
                    let before = self.drained;
                    let mut more = self.drain_some(ring.get_mut(), priority.get_mut())?;
                    if self.drained == before {
                        // Quiet again: wake-ups from now on, and read what was submitted
                        // while the flag still said not to wake.
                        self.polling.stop();
                        more = self.drain_some(ring.get_mut(), priority.get_mut())?;
                    }
                    if more {
                        // No wake-up will come while the flag is set and the rings may be
                        // full: the next slice at once (after the other branches' turn), not
                        // a millisecond later, or a flood would be read at 512 records a tick.
                        poll_tick.reset_immediately();
                        tokio::task::yield_now().await;
                    }
                }
                _ = drain_tick.tick() => {
                    if self.drain_some(ring.get_mut(), priority.get_mut())? {
                        tokio::task::yield_now().await;
                    }
                }
                found = recv_found(&mut self.found) => match found {
                    Some((kind, rec)) => {
                        self.record_policy()?;
                        self.handle_flow(kind, rec)?;
                        self.sink.flush().map_err(PipelineError::Output)?;
                    }
                    None => self.found = None,
                },
                _ = loss_tick.tick() => {
                    self.poll_losses()?;
                    self.report_floods()?;
                    self.release_folded()?;
                    self.processes.sweep(Instant::now());
                    self.publish_name_metrics();
                    self.expire_alerts(crate::clock::unix_now_ns())?;
                }
                _ = &mut shutdown => break,
            }
        }
        self.drain(ring.get_mut(), priority.get_mut())?;
        self.poll_losses()?;
        self.report_floods()?;
        self.release_folded()?;
        // Folded repeats are reported now rather than lost with the process.
        self.expire_alerts(i64::MAX)?;
        self.sink.flush().map_err(PipelineError::Output)?;
        self.stats.names = self.names.stats.clone();
        Ok(self.stats)
    }

    /// A wake-up brought records: poll on the short timer until a poll finds none, and tell
    /// the programs not to wake the reader meanwhile (see [`polling`]).
    fn poll_from_now(&mut self, poll_tick: &mut tokio::time::Interval) {
        if !self.polling.is_polling() {
            self.polling.start();
            poll_tick.reset();
        }
    }

    /// Emits a `policy` lifecycle event when the policy in force is new (at start and after
    /// each reload), ahead of the first flow judged under it.
    fn record_policy(&mut self) -> Result<(), PipelineError> {
        let Some(rx) = self.policy.as_mut() else {
            return Ok(());
        };
        if self.policy_recorded && !rx.has_changed().unwrap_or(false) {
            return Ok(());
        }
        let current = rx.borrow_and_update().clone();
        self.policy_recorded = true;
        if let Some(policy) = current {
            self.emit(Event::Lifecycle(Box::new(LifecycleEvent::now(
                Lifecycle::policy_in_force(&policy),
            ))))?;
        }
        Ok(())
    }

    /// Handles every record available now, waiting for the outputs if they are behind (at
    /// shutdown).
    pub fn drain(
        &mut self,
        events: &mut RingBuf<MapData>,
        priority: &mut RingBuf<MapData>,
    ) -> Result<(), PipelineError> {
        loop {
            self.sink.flush_wait().map_err(PipelineError::Output)?;
            if !self.drain_some(events, priority)? {
                break;
            }
        }
        self.sink.flush_wait().map_err(PipelineError::Output)
    }

    /// Handles at most `DRAIN_SLICE` records of each ring, in the kernel's time order; true
    /// when more are waiting. Reads nothing while an output is behind (the ring buffers hold
    /// the records meanwhile).
    ///
    /// The two rings are merged by timestamp: a process's exec (bulk ring) is applied before
    /// its TCP connect (priority ring), a DNS answer before the connect it names, and a
    /// connect before its ClientHello. Priority records are copied out and wait in
    /// `pending_priority` until the bulk ring has been read past their time (or is empty).
    fn drain_some(
        &mut self,
        events: &mut RingBuf<MapData>,
        priority: &mut RingBuf<MapData>,
    ) -> Result<bool, PipelineError> {
        if self.sink.behind() {
            self.sink.flush().map_err(PipelineError::Output)?;
            let behind = self.sink.behind();
            if let Some(c) = &self.counters {
                c.output_behind
                    .store(behind, std::sync::atomic::Ordering::Relaxed);
            }
            if behind {
                self.stats.output_behind += 1;
                return Ok(false);
            }
        }
        self.record_policy()?;
        if self.clock_sampled.elapsed() >= self.options.clock_refresh_interval {
            self.clock = WallClock::sample();
            self.clock_sampled = Instant::now();
        }
        let mut priority_more = false;
        while self.pending_priority.len() < DRAIN_SLICE {
            let Some(item) = priority.next() else { break };
            match Decoded::try_from(&*item) {
                Ok(d) => self.pending_priority.push_back(d),
                Err(e) => self.skip_undecodable(e),
            }
            priority_more = self.pending_priority.len() == DRAIN_SLICE;
        }
        let mut handled = 0;
        let mut priority_handled = 0;
        while handled < DRAIN_SLICE {
            let Some(item) = events.next() else { break };
            handled += 1;
            // Every record kind has its kernel time at bytes 8..16.
            let ts = item
                .get(8..16)
                .map_or(0, |b| u64::from_ne_bytes(b.try_into().unwrap_or_default()));
            while self
                .pending_priority
                .front()
                .is_some_and(|d| d.record.ts_ns <= ts)
            {
                if let Some(d) = self.pending_priority.pop_front() {
                    priority_handled += 1;
                    self.handle(d)?;
                }
            }
            // Packets are parsed in place (CPU only); flow records are copied out so the ring
            // slot is released before /proc is read.
            let flow = match Record::try_from(&*item) {
                Ok(Record::Flow(d)) => Ok(d),
                Ok(Record::Process(p)) => {
                    self.stats.process_records += 1;
                    self.processes.on_record(&p, Instant::now());
                    continue;
                }
                Ok(Record::Packet(p)) => {
                    self.handle_packet(&p)?;
                    continue;
                }
                Err(e) => Err(e),
            };
            drop(item);
            match flow {
                Ok(d) => self.handle(d)?,
                Err(e) => self.skip_undecodable(e),
            }
        }
        let events_more = handled == DRAIN_SLICE;
        if !events_more {
            // The bulk ring is read up to now: nothing older can still come from it.
            while let Some(d) = self.pending_priority.pop_front() {
                priority_handled += 1;
                self.handle(d)?;
            }
        }
        if handled + priority_handled > 0 {
            self.drained += (handled + priority_handled) as u64;
            self.sink.flush().map_err(PipelineError::Output)?;
        }
        Ok(events_more || priority_more)
    }

    fn skip_undecodable(&mut self, e: DecodeError) {
        self.count_decode_error();
        match e {
            DecodeError::Truncated { len } => {
                self.stats.truncated_records += 1;
                tracing::warn!(len, "skipping truncated ring buffer record");
            }
            DecodeError::UnknownKind(kind) => {
                self.stats.unknown_kinds += 1;
                tracing::warn!(kind, "skipping record of unknown kind");
            }
        }
    }

    fn count_decode_error(&self) {
        if let Some(c) = &self.counters {
            c.decode_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn emit(&mut self, event: Event) -> Result<(), PipelineError> {
        use std::sync::atomic::Ordering::Relaxed;
        match &event {
            Event::Flow(f) => {
                self.stats.count(f.kind);
                if let Some(c) = &self.counters {
                    c.count_event(f.kind, f.verdict.as_ref());
                }
            }
            Event::Loss(l) => {
                if let Some(c) = &self.counters {
                    c.kernel_losses.fetch_add(l.lost, Relaxed);
                }
            }
            Event::Alert(_) => {
                if let Some(c) = &self.counters {
                    c.alerts_raised.fetch_add(1, Relaxed);
                }
            }
            Event::Flood(f) => {
                self.stats.flood_events += 1;
                self.stats.suppressed_reported += f.suppressed.total();
            }
            Event::Lifecycle(_) | Event::DnsRefused(_) => {}
        }
        let event = match (event, self.ceiling.as_mut()) {
            (Event::Flow(f), Some(ceiling)) => match ceiling.admit(f, Instant::now()) {
                Some(f) => Event::Flow(f),
                None => return Ok(()), // folded: written by `release_folded`
            },
            (event, _) => event,
        };
        self.sink.write(&event).map_err(PipelineError::Output)
    }

    /// Writes the flows the ceiling folded since the last call, one event per (kind, workload,
    /// destination) with their count.
    fn release_folded(&mut self) -> Result<(), PipelineError> {
        let Some(ceiling) = self.ceiling.as_mut() else {
            return Ok(());
        };
        let folded = ceiling.release();
        if folded.is_empty() {
            return Ok(());
        }
        self.stats.flows_folded = ceiling.folded;
        if let Some(c) = &self.counters {
            c.flows_folded
                .store(ceiling.folded, std::sync::atomic::Ordering::Relaxed);
        }
        for f in folded {
            self.sink
                .write(&Event::Flow(f))
                .map_err(PipelineError::Output)?;
        }
        self.sink.flush().map_err(PipelineError::Output)
    }
}

/// The next flow step found outside the ring buffer; never, once there are no more.
async fn recv_found(
    found: &mut Option<tokio::sync::mpsc::Receiver<crate::capture::existing::Found>>,
) -> Option<crate::capture::existing::Found> {
    match found {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

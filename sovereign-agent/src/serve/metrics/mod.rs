//! The Prometheus text exposition (`/metrics`) of what the agent counts: the [`Counters`]
//! the pipeline, the API and the pusher update with relaxed atomic adds
//! ([`crate::telemetry::counters`]), the policy watcher's loads; gauges
//! that are cheap to read (ring-buffer fill, journal size, subscribers, process figures) are
//! read at scrape time instead of being kept current on the hot path.
pub mod exposition;
pub mod http;
pub mod programs;
pub mod ring;

use std::sync::{
    atomic::{AtomicU64, Ordering::Relaxed},
    Arc,
};

use crate::serve::sinks::SinkStats;
pub use crate::telemetry::counters::Counters;
use crate::{
    capture::bpf::HookStatus, event::EventKind, journal::recorder::JournalShared,
    policy::PolicyReceiver, telemetry::counters::KINDS,
};
use exposition::Exposition;

/// Everything `/metrics` reads.
#[derive(Clone)]
pub struct Sources {
    pub counters: Arc<Counters>,
    pub ring: Arc<std::sync::OnceLock<ring::RingFill>>,
    /// The attached programs, for their run-time statistics.
    pub programs: Arc<std::sync::OnceLock<programs::Programs>>,
    /// Every hook, attached or not (known once the programs are attached).
    pub hooks: Arc<std::sync::OnceLock<Vec<HookStatus>>>,
    pub journal: Option<Arc<JournalShared>>,
    pub policy: Option<PolicyReceiver>,
    pub subscribers: Arc<AtomicU64>,
    /// Each sink's delivery (serve/sinks).
    pub sinks: Vec<Arc<SinkStats>>,
    pub started_unix_ns: i64,
    /// The start-up scan for connections already open.
    pub existing: Arc<crate::capture::existing::Report>,
}

fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Connect => "connect",
        EventKind::Existing => "existing",
        EventKind::Send => "send",
        EventKind::Established => "established",
        EventKind::Close => "close",
        EventKind::Loss => "loss",
    }
}

const NS: f64 = 1e-9;

/// Each sink: delivered, backlog, lag, errors, connected, missed (labelled by sink and type).
fn sinks(out: &mut Exposition, sinks: &[Arc<SinkStats>]) {
    if sinks.is_empty() {
        return;
    }
    let series = |read: &dyn Fn(&SinkStats) -> f64| -> Vec<exposition::Sample<'_>> {
        sinks
            .iter()
            .map(|s| {
                (
                    vec![("sink", s.name.as_str()), ("type", s.type_name)],
                    read(s),
                )
            })
            .collect()
    };
    out.counter(
        "sovereign_agent_sink_delivered_total",
        "Events the sink's receiver acknowledged since the agent started.",
        &series(&|s| s.delivered.load(Relaxed) as f64),
    );
    out.gauge(
        "sovereign_agent_sink_backlog_records",
        "Journal records after the sink's cursor (an upper bound on what it has to deliver: \
         its filter skips some).",
        &series(&|s| s.backlog() as f64),
    );
    out.gauge(
        "sovereign_agent_sink_lag_seconds",
        "From the oldest event of the last acknowledged batch to its acknowledgement.",
        &series(&|s| s.lag_ns.load(Relaxed) as f64 * NS),
    );
    out.counter(
        "sovereign_agent_sink_errors_total",
        "Delivery attempts that failed (each is retried with back-off).",
        &series(&|s| s.errors.load(Relaxed) as f64),
    );
    out.gauge(
        "sovereign_agent_sink_connected",
        "1 while the sink is connected to its receiver.",
        &series(&|s| f64::from(u8::from(s.connected.load(Relaxed)))),
    );
    out.counter(
        "sovereign_agent_sink_missed_total",
        "Events the journal's retention deleted before the sink delivered them.",
        &series(&|s| s.missed.load(Relaxed) as f64),
    );
}

/// Naming: DNS queries and answers (verified, untrusted, refused by reason), the tables'
/// sizes and per-cgroup evictions, ClientHellos.
fn names(out: &mut Exposition, n: &crate::names::NamesSnapshot) {
    let st = &n.stats;
    out.counter(
        "sovereign_agent_dns_queries_total",
        "DNS queries sent by watched sockets.",
        &[(vec![], st.dns_queries as f64)],
    );
    out.counter(
        "sovereign_agent_dns_answers_total",
        "DNS answers received by watched sockets: verified (own query, trusted resolver), \
         untrusted (own query, other resolver: names kept as claims), refused (not used).",
        &[
            (vec![("result", "verified")], st.dns_verified as f64),
            (vec![("result", "untrusted")], st.dns_untrusted as f64),
            (vec![("result", "refused")], st.dns_refused as f64),
        ],
    );
    out.counter(
        "sovereign_agent_dns_foreign_netns_answers_total",
        "Answers from a trusted loopback resolver address to a query asked in another network \
         namespace than the trusted one (that namespace's own resolver): names kept as claims.",
        &[(vec![], st.dns_foreign_netns as f64)],
    );
    let reasons: Vec<(Vec<(&str, &str)>, f64)> = st
        .refused_by_reason
        .iter()
        .map(|(r, c)| (vec![("reason", *r)], *c as f64))
        .collect();
    out.counter(
        "sovereign_agent_dns_refused_total",
        "DNS answers refused for naming, by reason (an attack signal; see dns_refused events).",
        &reasons,
    );
    out.counter(
        "sovereign_agent_dns_malformed_total",
        "DNS messages that could not be parsed (skipped).",
        &[(vec![], st.dns_malformed as f64)],
    );
    out.counter(
        "sovereign_agent_dns_served_total",
        "DNS answers sent by processes of the watched cgroup.",
        &[(vec![], st.dns_served as f64)],
    );
    out.gauge(
        "sovereign_agent_dns_queries_outstanding",
        "DNS queries waiting for their answer.",
        &[(vec![], n.queries_outstanding as f64)],
    );
    out.counter(
        "sovereign_agent_dns_queries_not_recorded_total",
        "DNS queries not recorded because the query table or the cgroup's share was full \
         (their answers verify nothing).",
        &[(vec![], n.queries_not_recorded as f64)],
    );
    out.gauge(
        "sovereign_agent_named_addresses",
        "(cgroup, address) entries with names.",
        &[(vec![], n.named_addresses as f64)],
    );
    let ids: Vec<String> = n.evictions.iter().map(|(c, _)| c.to_string()).collect();
    let evictions: Vec<(Vec<(&str, &str)>, f64)> = n
        .evictions
        .iter()
        .zip(&ids)
        .map(|((_, count), id)| (vec![("cgroup_id", id.as_str())], *count as f64))
        .collect();
    out.counter(
        "sovereign_agent_name_evictions_total",
        "Named addresses forgotten for lack of room, by the cgroup that lost them.",
        &evictions,
    );
    out.counter(
        "sovereign_agent_tls_client_hellos_total",
        "ClientHellos read: named (a server name), unreadable (malformed, cut, or split into \
         more segments than are copied).",
        &[
            (vec![("result", "named")], st.sni_names as f64),
            (vec![("result", "unreadable")], st.tls_unreadable as f64),
        ],
    );
}

/// The Prometheus text exposition (version 0.0.4) of every metric.
pub fn render(s: &Sources) -> String {
    let c = &s.counters;
    let mut out = Exposition::default();
    out.gauge(
        "sovereign_agent_build_info",
        "The agent's version (always 1).",
        &[(vec![("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    out.gauge(
        "sovereign_agent_start_time_seconds",
        "When the agent started, Unix time.",
        &[(vec![], s.started_unix_ns as f64 * NS)],
    );
    out.gauge(
        "sovereign_agent_ready",
        "1 when the programs are attached and the policy is loaded.",
        &[(vec![], f64::from(u8::from(c.ready.load(Relaxed))))],
    );
    let kinds: Vec<(String, f64)> = KINDS
        .iter()
        .zip(&c.events_by_kind)
        .map(|(k, n)| (kind_name(*k).to_string(), n.load(Relaxed) as f64))
        .collect();
    out.counter(
        "sovereign_agent_events_total",
        "Flow events observed, by kind.",
        &kinds
            .iter()
            .map(|(k, n)| (vec![("kind", k.as_str())], *n))
            .collect::<Vec<_>>(),
    );
    {
        let verdicts = c
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(String, String, String, u64)> = verdicts
            .iter()
            .flat_map(|((d, sev), rules)| {
                rules.iter().map(move |(rule, n)| {
                    (
                        d.to_string(),
                        rule.clone(),
                        sev.map_or_else(|| "none".into(), |s| s.to_string()),
                        *n,
                    )
                })
            })
            .collect();
        drop(verdicts);
        rows.sort();
        out.counter(
            "sovereign_agent_verdicts_total",
            "Flows judged by the policy, by decision, deciding rule and severity \
             (severity \"none\" for allowed flows).",
            &rows
                .iter()
                .map(|(d, r, sev, n)| {
                    (
                        vec![("decision", d.as_str()), ("rule", r), ("severity", sev)],
                        *n as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
    }
    out.counter(
        "sovereign_agent_kernel_lost_events_total",
        "Events the kernel could not deliver because the ring buffer was full.",
        &[(vec![], c.kernel_losses.load(Relaxed) as f64)],
    );
    let suppressed = *c
        .suppressed
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    out.counter(
        "sovereign_agent_suppressed_records_total",
        "Records a workload's budget suppressed in the kernel (reported in flood events), by what they would have reported.",
        &[
            (vec![("what", "tcp_connect")], suppressed.tcp_connects as f64),
            (vec![("what", "udp")], suppressed.udp as f64),
            (vec![("what", "dns_packet")], suppressed.dns_packets as f64),
            (vec![("what", "tls_segment")], suppressed.tls_segments as f64),
            (vec![("what", "process_record")], suppressed.process_records as f64),
        ],
    );
    out.counter(
        "sovereign_agent_flows_folded_total",
        "Flows over the flow ceiling (journal.max_flows_per_sec), written folded into aggregated events.",
        &[(vec![], c.flows_folded.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_decode_errors_total",
        "Ring-buffer records that could not be decoded (skipped).",
        &[(vec![], c.decode_errors.load(Relaxed) as f64)],
    );
    if let Some(ring) = s.ring.get() {
        out.gauge(
            "sovereign_agent_ring_buffer_used_bytes",
            "Bytes written by the kernel and not yet read by the agent.",
            &[(vec![], ring.used() as f64)],
        );
        out.gauge(
            "sovereign_agent_ring_buffer_size_bytes",
            "Size of the kernel ring buffer.",
            &[(vec![], ring.size() as f64)],
        );
    }
    out.counter(
        "sovereign_agent_alerts_total",
        "Alerts raised (repeats within the alert window are one alert).",
        &[(vec![], c.alerts_raised.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_late_alerts_total",
        "Alerts raised after a flow's first event: its verdict changed when its TLS server name was read.",
        &[(vec![], c.late_alerts.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_tcp_owner_evictions_total",
        "TCP closes whose socket's owner entry in the kernel had been evicted (more open \
         connections than tcp_socket_entries): written, flagged owner_evicted.",
        &[(vec![], c.owner_evictions.load(Relaxed) as f64)],
    );
    names(
        &mut out,
        &c.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if let Some(hooks) = s.hooks.get() {
        out.gauge(
            "sovereign_agent_hook_attached",
            "1 for each hook attached at start, 0 for one the kernel refused (see /readyz for what is not reported).",
            &hooks
                .iter()
                .map(|h| {
                    let attached = u8::from(h.error.is_none());
                    (vec![("hook", h.hook.attach_point())], f64::from(attached))
                })
                .collect::<Vec<_>>(),
        );
    }
    if let Some(programs) = s.programs.get() {
        let stats = programs.read();
        out.counter(
            "sovereign_agent_bpf_program_run_seconds_total",
            "Kernel time spent in each of the agent's programs (0 unless kernel.bpf_stats_enabled=1).",
            &stats
                .iter()
                .map(|(name, r)| (vec![("program", *name)], r.run_time_ns as f64 / 1e9))
                .collect::<Vec<_>>(),
        );
        out.counter(
            "sovereign_agent_bpf_program_runs_total",
            "Runs of each of the agent's programs (0 unless kernel.bpf_stats_enabled=1).",
            &stats
                .iter()
                .map(|(name, r)| (vec![("program", *name)], r.runs as f64))
                .collect::<Vec<_>>(),
        );
    }
    let existing = &s.existing;
    out.counter(
        "sovereign_agent_existing_connections_total",
        "TCP connections of the watched cgroup found open at start (existing events).",
        &[(vec![], existing.connections.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_existing_unattributed_total",
        "Sockets of the watched cgroup found at start that no process held any more (not reported).",
        &[(vec![], existing.unattributed.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_existing_namespaces_failed_total",
        "Network namespaces whose connections could not be listed at start.",
        &[(vec![], existing.namespaces_failed.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_existing_closes_lost_total",
        "Ends of connections found at start that were not heard (the kernel's announcements overflowed).",
        &[(vec![], existing.closes_lost.load(Relaxed) as f64)],
    );
    out.counter(
        "sovereign_agent_existing_forged_destroys_total",
        "Socket-destroy announcements that did not come from the kernel (forged by a process; ignored).",
        &[(vec![], existing.forged_destroys.load(Relaxed) as f64)],
    );
    let (procs, entries) = *c
        .processes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    out.gauge(
        "sovereign_agent_process_table_entries",
        "Processes in the process table (fed by the fork, exec and exit tracepoints).",
        &[(vec![], entries as f64)],
    );
    out.counter(
        "sovereign_agent_process_records_total",
        "Process records applied to the process table, by kind.",
        &[
            (vec![("kind", "fork")], procs.forks as f64),
            (vec![("kind", "exec")], procs.execs as f64),
            (vec![("kind", "exit")], procs.exits as f64),
        ],
    );
    out.counter(
        "sovereign_agent_process_exec_unread_total",
        "Execs whose /proc entry was gone before it was read (the executable is the kernel's \
         path as exec'd).",
        &[(vec![], procs.exec_unread as f64)],
    );
    out.counter(
        "sovereign_agent_process_exec_raced_total",
        "Execs whose process already ran another program when /proc was read (it exec'd \
         again): the executable is left unknown (identity exec_raced), not credited.",
        &[(vec![], procs.exec_raced as f64)],
    );
    out.counter(
        "sovereign_agent_process_table_evictions_total",
        "Live processes pushed out of the full process table (raise process_cache_entries \
         if this keeps rising).",
        &[(vec![], procs.evicted_live as f64)],
    );
    out.counter(
        "sovereign_agent_process_paths_truncated_total",
        "Execs whose path was longer than the kernel record holds (exec_path ends in ...).",
        &[(vec![], procs.paths_truncated as f64)],
    );
    out.counter(
        "sovereign_agent_process_identity_unknown_total",
        "Flows whose process was in no table entry and gone from /proc (identity \
         exited_before_read).",
        &[(vec![], procs.unknown as f64)],
    );
    sinks(&mut out, &s.sinks);
    if let Some(j) = &s.journal {
        let (segments, bytes) = journal_size(&j.dir);
        out.counter(
            "sovereign_agent_journal_records_total",
            "Records in the journal (its next sequence number).",
            &[(vec![], j.next_seq.load(Relaxed) as f64)],
        );
        out.counter(
            "sovereign_agent_journal_not_journaled_total",
            "Events that could not be written to the journal (disk full, I/O error).",
            &[(vec![], j.not_journaled.load(Relaxed) as f64)],
        );
        out.gauge(
            "sovereign_agent_journal_bytes",
            "Size of the journal's segment files.",
            &[(vec![], bytes as f64)],
        );
        out.gauge(
            "sovereign_agent_journal_segments",
            "Segment files in the journal.",
            &[(vec![], segments as f64)],
        );
    }
    if let Some(policy) = s.policy.as_ref().and_then(|rx| rx.borrow().clone()) {
        out.gauge(
            "sovereign_agent_policy_info",
            "The policy in force (always 1).",
            &[(
                vec![
                    ("name", policy.name.as_str()),
                    ("version", policy.version.as_str()),
                    ("hash", policy.hash.as_str()),
                ],
                1.0,
            )],
        );
        out.gauge(
            "sovereign_agent_policy_load_duration_seconds",
            "How long loading and compiling the policy in force took.",
            &[(vec![], c.policy_loads.load_ns.load(Relaxed) as f64 * NS)],
        );
        out.gauge(
            "sovereign_agent_policy_loaded_timestamp_seconds",
            "When the policy in force was loaded, Unix time.",
            &[(
                vec![],
                c.policy_loads.loaded_unix_ns.load(Relaxed) as f64 * NS,
            )],
        );
        out.counter(
            "sovereign_agent_policy_reloads_total",
            "Policy reloads (SIGHUP or file change), by result; a failed reload keeps the \
             previous policy in force.",
            &[
                (
                    vec![("result", "ok")],
                    c.policy_loads.reloads_ok.load(Relaxed) as f64,
                ),
                (
                    vec![("result", "error")],
                    c.policy_loads.reloads_failed.load(Relaxed) as f64,
                ),
            ],
        );
    }
    out.gauge(
        "sovereign_agent_api_subscribers",
        "gRPC event-stream subscribers connected.",
        &[(vec![], s.subscribers.load(Relaxed) as f64)],
    );
    process_metrics(&mut out);
    out.finish()
}

/// (segments, bytes) of the journal directory; read at scrape time.
fn journal_size(dir: &std::path::Path) -> (u64, u64) {
    match crate::journal::writer::list_segments(dir) {
        Ok(segments) => (
            segments.len() as u64,
            segments
                .iter()
                .filter_map(|(_, p)| std::fs::metadata(p).ok())
                .map(|m| m.len())
                .sum(),
        ),
        Err(_) => (0, 0),
    }
}

/// The standard `process_*` metrics, from /proc/self.
fn process_metrics(out: &mut Exposition) {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64,
            libc::sysconf(libc::_SC_PAGESIZE).max(1) as f64,
        )
    };
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        if let (Some(utime), Some(stime)) = (field(14), field(15)) {
            out.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[(vec![], (utime + stime) / ticks)],
            );
        }
        if let Some(rss) = field(24) {
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                &[(vec![], rss * page)],
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            &[(vec![], fds.count() as f64)],
        );
    }
}

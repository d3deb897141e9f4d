//! What the kernel side reports: losses, budget suppressions, decode errors, ring fill, which
//! hooks attached, the programs' run time, and the scan of connections open at start.
use std::sync::atomic::Ordering::Relaxed;

use super::exposition::Exposition;
use super::sources::Sources;

pub(super) fn render(out: &mut Exposition, s: &Sources) {
    let c = &s.counters;
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
        "sovereign_agent_decode_errors_total",
        "Ring-buffer records that could not be decoded (skipped).",
        &[(vec![], c.decode_errors.load(Relaxed) as f64)],
    );
    if let Some(ring) = s.ring() {
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
    if let Some(hooks) = s.hooks() {
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
    if let Some(programs) = s.programs() {
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
}

//! The process table: entries, records applied, execs unread or raced, evictions.
use super::exposition::Exposition;
use crate::telemetry::counters::Counters;

pub(super) fn render(out: &mut Exposition, c: &Counters) {
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
}

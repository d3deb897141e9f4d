//! Each sink's delivery: delivered, backlog, lag, errors, connected, missed.
use std::sync::atomic::Ordering::Relaxed;

use super::exposition::{self, Exposition, NS};
use std::sync::Arc;

use crate::serve::sinks::SinkStats;

/// Each sink: delivered, backlog, lag, errors, connected, missed (labelled by sink and type).
pub(super) fn render(out: &mut Exposition, sinks: &[Arc<SinkStats>]) {
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

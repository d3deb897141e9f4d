//! What the kernel could not report: `flood` events for what the per-workload budgets
//! suppressed, `loss` events for what the ring buffers had no room for.
use super::*;

impl Pipeline {
    /// Emits a `flood` event (and its alert) for each workload whose budget suppressed records
    /// since the last poll.
    pub fn report_floods(&mut self) -> Result<(), PipelineError> {
        let reports = self.floods.poll();
        if let Some(c) = &self.counters {
            *c.suppressed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = self.floods.totals();
        }
        if reports.is_empty() {
            return Ok(());
        }
        for report in reports {
            let event = self.flood_event(&report);
            tracing::warn!(
                pid = event.flow.pid,
                comm = %event.flow.comm,
                cgroup = event.flow.cgroup.as_deref().unwrap_or(""),
                suppressed = event.suppressed.total(),
                "workload over its budget: records suppressed (see the flood event)"
            );
            let alert = self.alerts.as_mut().map(|a| a.observe_flood(&event));
            self.emit(Event::Flood(Box::new(event)))?;
            if let Some(alert) = alert.flatten() {
                self.emit(Event::Alert(Box::new(alert)))?;
            }
        }
        self.sink.flush().map_err(PipelineError::Output)
    }

    /// The event of a report: the workload's facts, and its last suppressed destination as a
    /// flow judged under the policy in force.
    fn flood_event(&mut self, r: &FloodReport) -> FloodEvent {
        let (family, addr, port) = r.sample;
        let mut rec = r.notice;
        rec.ts_ns = r.last_ns;
        rec.pid = rec.tgid;
        rec.family = family;
        rec.protocol = if r.is_tcp() {
            IPPROTO_TCP
        } else {
            sovereign_agent_common::IPPROTO_UDP
        };
        rec.flags = 0;
        rec.dst_addr = addr;
        rec.dst_port = port;
        let kind = if r.is_tcp() {
            EventKind::Connect
        } else {
            EventKind::Send
        };
        // A flood of process records has no destination to name or judge.
        let socket = (!r.is_process_records()).then_some(0);
        let flow = self.describe(kind, &rec, socket);
        let first_ns = self.clock.unix_ns(r.first_ns) as i64;
        FloodEvent {
            ts: flow.ts.clone(),
            ts_unix_ns: flow.ts_unix_ns,
            kind: "flood",
            scope: r.scope(),
            suppressed: r.suppressed,
            first: crate::clock::rfc3339_from_unix_ns(i128::from(first_ns)),
            last: flow.ts.clone(),
            first_unix_ns: first_ns,
            last_unix_ns: flow.ts_unix_ns,
            flow: Box::new(flow),
        }
    }

    /// Emits a `loss` event when the kernel's loss counter grew since the last poll.
    pub fn poll_losses(&mut self) -> Result<(), PipelineError> {
        let total: u64 = match self.losses.get(&0, 0) {
            Ok(per_cpu) => per_cpu.iter().sum(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the kernel loss counter");
                return Ok(());
            }
        };
        if total > self.losses_reported {
            let lost = total - self.losses_reported;
            self.losses_reported = total;
            self.stats.kernel_losses += lost;
            tracing::warn!(lost, "kernel ring buffer was full: records lost");
            let now = WallClock::monotonic_now_ns();
            self.emit(Event::Loss(LossEvent {
                ts: self.clock.rfc3339(now),
                ts_unix_ns: self.clock.unix_ns(now) as i64,
                kind: EventKind::Loss,
                lost,
            }))?;
            self.sink.flush().map_err(PipelineError::Output)?;
        }
        Ok(())
    }
}

//! Where events leave the pipeline: counted, past the flow ceiling (which folds what is over
//! the journal's rate), into the sink; the policy in force recorded ahead of the first flow
//! judged under it; alerts whose folding window ended.
use super::*;

impl Pipeline {
    /// Emits the alerts and refused-answer reports whose folding window ended by `now_ns`
    /// (all of them with `i64::MAX`, at shutdown).
    pub(super) fn expire_alerts(&mut self, now_ns: i64) -> Result<(), PipelineError> {
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

    /// Emits a `policy` lifecycle event when the policy in force is new (at start and after
    /// each reload), ahead of the first flow judged under it.
    pub(super) fn record_policy(&mut self) -> Result<(), PipelineError> {
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

    pub(super) fn emit(&mut self, event: Event) -> Result<(), PipelineError> {
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
    pub(super) fn release_folded(&mut self) -> Result<(), PipelineError> {
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

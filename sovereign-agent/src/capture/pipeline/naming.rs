//! The pipeline's naming step: DNS packets and ClientHello segments teach the namer; refused
//! answers become `dns_refused` events; a connection whose SNI is read after its first event
//! is judged again, and alerted late if that makes it a violation.
use super::*;

impl Pipeline {
    /// A DNS query or answer or a ClientHello segment: learn names, report refused answers,
    /// and re-judge a connection whose SNI was just read.
    pub(super) fn handle_packet(&mut self, p: &PacketView<'_>) -> Result<(), PipelineError> {
        let now = Instant::now();
        let from = match p.kind {
            RecordKind::DnsQuery => crate::names::Provenance {
                share: self.share_of_cgroup(p.cgroup_id, now),
                ..self.dns_provenance.query(
                    sovereign_agent_common::ip_of(p.family, &p.peer_addr),
                    p.cookie,
                )
            },
            RecordKind::DnsResponse => crate::names::Provenance {
                share: self.share_of_cgroup(p.cgroup_id, now),
                ..crate::names::Provenance::HOST
            },
            RecordKind::DnsServed => {
                self.dns_provenance
                    .served(p.cgroup_id, self.cgroups.as_mut(), now)
            }
            _ => crate::names::Provenance::HOST,
        };
        match self.names.on_packet_from(p, from, now) {
            Learned::Nothing => Ok(()),
            Learned::Refused(r) => self.emit_refused(*r),
            Learned::Hello { cookie } => self.rejudge_open_flow(cookie),
        }
    }

    /// The key of the share of cgroup `cgroup_id`'s workload (its pod, unit or container),
    /// for the bounds shared per workload; the cgroup's own without an index.
    fn share_of_cgroup(&mut self, cgroup_id: u64, now: Instant) -> u64 {
        let workload = self
            .cgroups
            .as_mut()
            .and_then(|index| index.workload(cgroup_id, now));
        let w = workload.as_deref();
        crate::enrich::container::share_key(
            &self.share_keys,
            w.and_then(|w| w.pod_uid.as_deref()),
            w.and_then(|w| w.systemd_unit.as_deref()),
            w.and_then(|w| w.container_id.as_deref()),
            cgroup_id,
        )
    }

    /// Copies the naming and process-table counters for /metrics (once a second).
    pub(super) fn publish_name_metrics(&self) {
        if let Some(c) = &self.counters {
            *c.names
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = self.names.snapshot();
            c.late_alerts
                .store(self.stats.late_alerts, std::sync::atomic::Ordering::Relaxed);
            *c.processes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                (self.processes.stats, self.processes.len());
        }
    }

    /// A refused DNS answer as an event, with the process behind the socket when known.
    pub(super) fn emit_refused(&mut self, r: RefusedAnswer) -> Result<(), PipelineError> {
        let (pid, comm) = self
            .dns_sockets
            .get(&r.cookie)
            .copied()
            .unwrap_or((0, [0; 16]));
        let process = (pid != 0).then(|| self.processes.lookup(pid, &comm).info);
        let cgroup = match self.cgroups.as_mut() {
            Some(index) => index
                .workload(r.cgroup_id, Instant::now())
                .and_then(|w| w.cgroup.clone()),
            None => None,
        }
        .or_else(|| process.as_ref().and_then(|p| p.workload.cgroup.clone()));
        let now = WallClock::monotonic_now_ns();
        tracing::warn!(
            reason = r.reason,
            resolver = %r.resolver,
            cgroup_id = r.cgroup_id,
            names = ?r.names,
            count = r.count,
            "DNS answer refused for naming"
        );
        self.emit(Event::DnsRefused(Box::new(DnsRefusedEvent {
            ts: self.clock.rfc3339(now),
            ts_unix_ns: self.clock.unix_ns(now) as i64,
            kind: "dns_refused",
            reason: r.reason,
            cgroup_id: r.cgroup_id,
            cgroup,
            pid,
            comm: sovereign_agent_common::comm_string(&comm),
            exe: process.and_then(|p| p.exe.clone()),
            cookie: r.cookie,
            resolver: r.resolver,
            client_port: r.client_port,
            question: r.question,
            names: r.names,
            addresses: r.addresses,
            count: r.count,
        })))
    }

    /// The SNI of an open connection was read: if that turns its verdict into a violation,
    /// the alert is raised now (once per connection), not when it closes.
    fn rejudge_open_flow(&mut self, cookie: u64) -> Result<(), PipelineError> {
        if self.alerts.is_none() {
            return Ok(());
        }
        let Some((connect, alerted)) = self.open_flows.get_mut(&cookie) else {
            return Ok(());
        };
        if *alerted {
            return Ok(());
        }
        let mut event = (**connect).clone();
        self.name_and_judge(&mut event, cookie);
        self.raise_late(cookie, &event)
    }

    /// Raises the alert of a flow whose violation was learned after its first event.
    pub(super) fn raise_late(
        &mut self,
        cookie: u64,
        event: &FlowEvent,
    ) -> Result<(), PipelineError> {
        if !AlertFolder::alerts_on(event) {
            return Ok(());
        }
        if let Some((_, alerted)) = self.open_flows.get_mut(&cookie) {
            *alerted = true;
        }
        self.stats.late_alerts += 1;
        let alert = self.alerts.as_mut().and_then(|a| a.observe_late(event));
        if let Some(alert) = alert {
            self.emit(Event::Alert(Box::new(alert)))?;
        }
        Ok(())
    }
}

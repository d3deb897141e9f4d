//! The one place a flow event is described: who made it (the process table, and the workload
//! from the kernel's cgroup id of the record, never from /proc), what its destination is
//! called, and the verdict of the policy in force. Every path that writes a flow uses it: a
//! flow record, a UDP destination's close, the sample flow of a flood, and a connection
//! judged again when its SNI is read.
use super::*;

impl Pipeline {
    /// The event of `rec` as `kind`, named and judged when `socket` says whose names apply
    /// (`Some(cookie)`; `Some(0)`: the workload's only), neither with `None` (a flood of
    /// process records has no destination: 0.0.0.0:0 would read as a violation under most
    /// allow-lists).
    pub(super) fn describe(
        &mut self,
        kind: EventKind,
        rec: &FlowRecord,
        socket: Option<u64>,
    ) -> FlowEvent {
        let mut process = if rec.tgid != 0 {
            self.processes
                .identify(rec.tgid, &rec.comm, self.options.ancestors_depth)
        } else {
            crate::enrich::processes::Identity::default()
        };
        if let Some(index) = self.cgroups.as_mut() {
            process.workload = index.workload(rec.cgroup_id, Instant::now());
        }
        let mut event = FlowEvent::from_record(kind, rec, &process, &self.clock);
        if let Some(cookie) = socket {
            self.name_and_judge(&mut event, cookie);
        }
        event
    }

    /// Names `event`'s destination with what its workload (and the socket `cookie`) learned,
    /// and judges it under the policy in force: for a new event, and for one whose destination
    /// or names changed since (a UDP destination's close, a connection whose SNI was read).
    pub(super) fn name_and_judge(&mut self, event: &mut FlowEvent, cookie: u64) {
        event.name(self.names.lookup(
            event.cgroup_id,
            event.dst_ip,
            event.dst_port,
            cookie,
            Instant::now(),
        ));
        event.verdict = None;
        if let Some(policy) = self.policy.as_ref().and_then(|rx| rx.borrow().clone()) {
            event.judge(&policy);
        }
    }
}

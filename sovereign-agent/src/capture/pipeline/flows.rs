//! Flow records to events: who made the flow, what the destination is called, the verdict;
//! UDP destinations released by the kernel close with their datagram counts.
use super::*;

impl Pipeline {
    pub(super) fn handle(&mut self, d: Decoded) -> Result<(), PipelineError> {
        let rec = d.record;
        let Some(kind) = flow_kind(d.kind) else {
            if d.kind == RecordKind::Flood {
                self.floods.on_notice(&rec);
                return Ok(());
            }
            if d.kind == RecordKind::Repeats {
                self.floods.on_repeats(&rec);
                return Ok(());
            }
            debug_assert_eq!(d.kind, RecordKind::UdpRelease);
            return self.udp_released(&rec);
        };
        self.handle_flow(kind, rec)
    }

    /// A close whose kernel entry was evicted carries no owner: it is the connect's.
    fn restore_evicted_owner(&mut self, rec: &mut FlowRecord) {
        self.stats.owner_evictions += 1;
        if let Some(c) = &self.counters {
            c.owner_evictions.store(
                self.stats.owner_evictions,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        tracing::warn!(
            cookie = rec.cookie,
            "a TCP socket's owner entry was evicted before it closed (more open sockets than \
             tcp_socket_entries): its close is written, owner from its connect"
        );
        if let Some(connect) = self.connect_owners.peek(&rec.cookie) {
            rec.pid = connect.pid;
            rec.tgid = connect.tgid;
            rec.uid = connect.uid;
            rec.gid = connect.gid;
            rec.cgroup_id = connect.cgroup_id;
            rec.comm = connect.comm;
        }
    }

    pub(super) fn handle_flow(
        &mut self,
        kind: EventKind,
        mut rec: FlowRecord,
    ) -> Result<(), PipelineError> {
        if kind == EventKind::Close
            && rec.flags & sovereign_agent_common::CLOSE_FLAG_OWNER_EVICTED != 0
        {
            self.restore_evicted_owner(&mut rec);
        }
        let tcp = rec.protocol == IPPROTO_TCP;
        if tcp {
            match kind {
                EventKind::Connect => {
                    self.connect_owners.put(rec.cookie, rec);
                    // A socket connected (again): no earlier connection's ClientHello names it.
                    self.names.connection_started(rec.cookie);
                }
                EventKind::Close => {
                    self.connect_owners.pop(&rec.cookie);
                    self.names.connection_closing(
                        rec.cookie,
                        crate::event::dst_ip(&rec),
                        rec.dst_port,
                    );
                }
                _ => {}
            }
        }
        if rec.dst_port == 53 && matches!(kind, EventKind::Connect | EventKind::Send) {
            self.dns_sockets.put(rec.cookie, (rec.tgid, rec.comm));
        }
        let event = self.describe(kind, &rec, Some(rec.cookie));
        let alert = self.alerts.as_mut().and_then(|a| a.observe(&event));
        if tcp && self.alerts.is_some() && self.policy.is_some() {
            match kind {
                EventKind::Connect | EventKind::Existing => {
                    let alerted = AlertFolder::alerts_on(&event);
                    self.open_flows
                        .put(rec.cookie, (Box::new(event.clone()), alerted));
                }
                EventKind::Close => {
                    // A violation learned only now (the SNI, read after connect) alerts once.
                    if self
                        .open_flows
                        .peek(&rec.cookie)
                        .is_some_and(|(_, alerted)| !alerted)
                    {
                        self.raise_late(rec.cookie, &event)?;
                    }
                    self.open_flows.pop(&rec.cookie);
                }
                _ => {}
            }
        }
        if kind == EventKind::Close && tcp {
            self.names.connection_closed(rec.cookie);
        }
        if kind == EventKind::Send {
            let key = SendKey {
                cookie: rec.cookie,
                dst_addr: rec.dst_addr,
                dst_port: rec.dst_port,
                family: rec.family,
                _pad: 0,
            };
            match self.udp_pairs.get_mut(&rec.cookie) {
                Some(sends) if sends.keys.len() >= MAX_SENDS_PER_SOCKET => {
                    self.stats.udp_sends_not_kept += 1;
                }
                Some(sends) => sends.keys.push(key),
                None => {
                    self.udp_pairs.put(
                        rec.cookie,
                        UdpSends {
                            template: Box::new(event.clone()),
                            keys: vec![key],
                        },
                    );
                }
            }
        }
        self.emit(Event::Flow(Box::new(event)))?;
        if let Some(alert) = alert {
            self.emit(Event::Alert(Box::new(alert)))?;
        }
        Ok(())
    }

    /// A UDP socket closed: one `close` event per destination it sent to, with the number of
    /// datagrams the kernel counted, read and removed from `UDP_SENDS`.
    fn udp_released(&mut self, rec: &FlowRecord) -> Result<(), PipelineError> {
        let sends = match self.udp_pairs.pop(&rec.cookie) {
            Some(sends) => sends,
            None => {
                // The first-send records were lost or evicted: find the pairs in the map. A
                // scan reads the whole map, so during a flood (when this happens for every
                // socket) at most one a second; the rest stay counted in the kernel.
                self.stats.udp_release_without_sends += 1;
                let now = Instant::now();
                if self
                    .last_send_scan
                    .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
                {
                    self.stats.udp_release_unscanned += 1;
                    return Ok(());
                }
                self.last_send_scan = Some(now);
                let keys: Vec<SendKey> = self
                    .udp_sends
                    .keys()
                    .filter_map(Result::ok)
                    .filter(|k| k.cookie == rec.cookie)
                    .collect();
                UdpSends {
                    template: Box::new(self.describe(EventKind::Send, rec, None)),
                    keys,
                }
            }
        };
        let mut seen = std::collections::HashSet::new();
        for key in sends.keys {
            if !seen.insert(key) {
                continue;
            }
            let count = self.udp_sends.get(&key, 0).map_or(0, |t| t.count);
            let _ = self.udp_sends.remove(&key);
            // The destination's close: the socket's facts, this destination's address, names
            // and verdict.
            let mut close = (*sends.template).clone();
            close.kind = EventKind::Close;
            close.ts = self.clock.rfc3339(rec.ts_ns);
            close.ts_unix_ns = self.clock.unix_ns(rec.ts_ns) as i64;
            close.count = Some(count);
            close.family = if key.family == sovereign_agent_common::AF_INET {
                crate::event::Family::Ipv4
            } else {
                crate::event::Family::Ipv6
            };
            close.dst_ip = sovereign_agent_common::ip_of(key.family, &key.dst_addr);
            close.dst_port = key.dst_port;
            self.name_and_judge(&mut close, rec.cookie);
            self.emit(Event::Flow(Box::new(close)))?;
        }
        Ok(())
    }
}

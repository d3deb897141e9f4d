//! Reading the kernel's two ring buffers: the event loop (`run`), slices of records in the
//! kernel's time order across both rings (`drain_some`), and what cannot be decoded.
use super::*;

impl Pipeline {
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
    pub(super) fn poll_from_now(&mut self, poll_tick: &mut tokio::time::Interval) {
        if !self.polling.is_polling() {
            self.polling.start();
            poll_tick.reset();
        }
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
    pub(super) fn drain_some(
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

    pub(super) fn skip_undecodable(&mut self, e: DecodeError) {
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

    pub(super) fn count_decode_error(&self) {
        if let Some(c) = &self.counters {
            c.decode_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// The next flow step found outside the ring buffer; never, once there are no more.
pub(super) async fn recv_found(
    found: &mut Option<tokio::sync::mpsc::Receiver<crate::capture::existing::Found>>,
) -> Option<crate::capture::existing::Found> {
    match found {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

//! The service manager's side of the start and stop: systemd's notify protocol
//! (`Type=notify`). Readiness is sent only once the programs are attached, so
//! `systemctl start` returns when flows are being captured, not before. Outside systemd
//! (`NOTIFY_SOCKET` unset) every call does nothing.
use sd_notify::NotifyState;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// The programs are attached and the policy is loaded.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line status for `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

/// Shutting down: draining, detaching, closing the journal.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// With `WatchdogSec=` in the unit, pings the service manager at half the interval. The
/// runtime has one thread: if the pipeline hangs, the pings stop and systemd restarts the
/// agent (the journal records the crash: a start without a stop).
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = std::time::Duration::from_micros(usec / 2);
    tracing::info!(
        interval_ms = period.as_millis() as u64,
        "systemd watchdog on"
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    }))
}

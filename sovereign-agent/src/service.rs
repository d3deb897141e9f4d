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

//! What an event is: its kind, and a flow's protocol and address family.
use serde::Serialize;
use sovereign_agent_common::RecordKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Connect,
    /// A TCP connection already open when the agent started (found at start, not by a hook).
    Existing,
    Send,
    Established,
    Close,
    /// Refused in the kernel by an enforce rule: the application saw `EPERM`, nothing left.
    Refused,
    Loss,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    Ipv4,
    Ipv6,
}

/// The event kind of a flow record kind; `None` for records that are not flow steps.
pub fn flow_kind(kind: RecordKind) -> Option<EventKind> {
    match kind {
        RecordKind::Connect => Some(EventKind::Connect),
        RecordKind::Send => Some(EventKind::Send),
        RecordKind::Established => Some(EventKind::Established),
        RecordKind::Close => Some(EventKind::Close),
        RecordKind::Refused => Some(EventKind::Refused),
        RecordKind::UdpRelease
        | RecordKind::DnsResponse
        | RecordKind::TlsClientHello
        | RecordKind::DnsQuery
        | RecordKind::DnsServed
        | RecordKind::Fork
        | RecordKind::Exec
        | RecordKind::Exit
        | RecordKind::Argv
        | RecordKind::Flood
        | RecordKind::Repeats => None,
    }
}

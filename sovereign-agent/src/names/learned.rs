//! What naming tells the pipeline: what a packet taught ([`Learned`]), refused answers,
//! and the counters /metrics shows.
use std::{net::IpAddr, time::Duration};

/// A DNS answer that was refused for naming: someone answered what this socket did not ask,
/// or posed as a trusted resolver. Repeats within [`REFUSED_FOLD_WINDOW`] are folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedAnswer {
    pub cgroup_id: u64,
    /// The receiving socket.
    pub cookie: u64,
    /// Who the answer says it is from (`ip:port`).
    pub resolver: String,
    pub client_port: u16,
    /// `no_query`, `wrong_question`, `duplicate`, `expired`, `query_table_full` or
    /// `answered_by_own_cgroup`.
    pub reason: &'static str,
    /// The question and the names and addresses the answer claimed.
    pub question: Option<String>,
    pub names: Vec<String>,
    pub addresses: Vec<IpAddr>,
    /// Answers this report stands for (folded repeats).
    pub count: u64,
}

/// Refused answers of one (cgroup, server, reason) are reported once per this window.
pub const REFUSED_FOLD_WINDOW: Duration = Duration::from_secs(10);

/// What a packet taught.
#[derive(Debug, PartialEq, Eq)]
pub enum Learned {
    Nothing,
    /// An answer refused for naming, to report now.
    Refused(Box<RefusedAnswer>),
    /// The ClientHello of connection `cookie` was read (or found unreadable).
    Hello {
        cookie: u64,
    },
}

/// Counters, for metrics and the stop record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameStats {
    pub dns_queries: u64,
    pub dns_responses: u64,
    /// Answers that verify names (trusted resolver, own query).
    pub dns_verified: u64,
    /// Answers to own queries from other resolvers: names kept as claims.
    pub dns_untrusted: u64,
    /// Of those, answers from a trusted loopback address to a query asked in another network
    /// namespace than the trusted one (that namespace's own resolver, not the host's).
    pub dns_foreign_netns: u64,
    /// Answers refused for naming (every reason).
    pub dns_refused: u64,
    /// DNS messages (queries or answers) that could not be parsed.
    pub dns_malformed: u64,
    /// Answers sent by processes of the watched cgroup.
    pub dns_served: u64,
    pub tls_segments: u64,
    pub sni_names: u64,
    /// ClientHellos that could not be read (malformed, cut, split too finely).
    pub tls_unreadable: u64,
    /// Refused answers by reason.
    pub refused_by_reason: std::collections::BTreeMap<&'static str, u64>,
}

/// What /metrics shows of naming, copied out of the pipeline once a second.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamesSnapshot {
    pub stats: NameStats,
    pub queries_outstanding: usize,
    /// Queries that found the table (or their cgroup's share) full.
    pub queries_not_recorded: u64,
    pub named_addresses: usize,
    /// Named addresses evicted, by the cgroup id that lost them.
    pub evictions: Vec<(u64, u64)>,
}

//! Naming destinations: DNS queries and answers and TLS ClientHellos seen in the kernel,
//! parsed here, joined to flows by (cgroup, address) and by connection.
//!
//! Names are claims made by the workload we watch, so each carries how far it can be trusted
//! (docs/policy.md, "Names are claims"):
//!
//! - a DNS answer names an address only when it answers a query the same socket sent
//!   ([`queries`]): to the server that answers, from the port it arrives on, with the same
//!   transaction id and question, once, before the query timeout. Any other answer is
//!   refused, counted and reported ([`Learned::Refused`]): nobody asked for it.
//! - an accepted answer *verifies* its names only when it comes from a trusted resolver
//!   ([`resolvers`]), was not sent by a watched socket posing as that resolver (the querying
//!   workload's own, or any other watched cgroup's but a resolver the operator named: a
//!   sidecar), and, for a loopback resolver, was asked from the network namespace the operator
//!   trusts (a pod's 127.0.0.53 is the pod's own); otherwise its names are kept as claims
//!   (`verified: false`) or the answer is refused.
//! - the SNI of a connection's ClientHello ([`hello`]) names that connection only, and is
//!   always the client's own claim.
//!
//! [`map`] keeps the result per cgroup, within bounds no single cgroup can exhaust.
pub mod dns;
pub mod hello;
pub mod map;
pub mod queries;
pub mod resolvers;
pub mod sni;

use std::{
    net::IpAddr,
    num::NonZeroUsize,
    time::{Duration, Instant},
};

use lru::LruCache;
use sovereign_agent_common::{PacketView, RecordKind, IPPROTO_TCP};

pub use self::map::{naming, DnsChain, NameMap, Naming};
use self::{
    hello::{Hello, HelloAssembler},
    queries::{QueryKey, QueryTable},
    resolvers::Resolver,
};

/// systemd-resolved's cgroup: the host's stub resolver, a resolver every host names.
pub const SYSTEMD_RESOLVED_CGROUP: &str = "/system.slice/systemd-resolved.service";

/// What the kernel says about a packet's socket beyond the packet itself (the pipeline finds
/// it; the packet cannot forge it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// A query: its socket is in the network namespace where loopback resolvers are the
    /// host's (false when that is not known).
    pub trusted_netns: bool,
    /// A served answer: its socket belongs to a resolver the operator named
    /// (`names.resolver_cgroups`).
    pub named_resolver: bool,
    /// A query or an answer: the key of its workload's share of the query table and the name
    /// map (the pod, unit or container, not the leaf cgroup: four containers of one pod get
    /// one share); 0: the socket's cgroup.
    pub share: u64,
}

impl Provenance {
    /// A packet of the host's own network namespace, of no named resolver.
    pub const HOST: Provenance = Provenance {
        trusted_netns: true,
        named_resolver: false,
        share: 0,
    };
}

/// Tunables of naming (the `[names]` configuration section, and two older top-level keys).
#[derive(Clone, Debug)]
pub struct NamesOptions {
    /// Servers whose answers verify names.
    pub trusted_resolvers: Vec<Resolver>,
    /// (cgroup, address) entries with names, in all.
    pub map_entries: NonZeroUsize,
    /// ... and per cgroup.
    pub map_per_cgroup: NonZeroUsize,
    pub ttl_floor: Duration,
    pub ttl_cap: Duration,
    /// Outstanding DNS queries remembered, in all and per cgroup.
    pub query_table_entries: usize,
    pub query_table_per_cgroup: usize,
    /// An answer later than this after its query is refused (`expired`).
    pub query_timeout: Duration,
    /// cgroup paths (globs) of the resolvers whose answers count as theirs although a watched
    /// socket sent them (`names.resolver_cgroups`).
    pub resolver_cgroups: Vec<String>,
}

impl Default for NamesOptions {
    fn default() -> Self {
        Self {
            trusted_resolvers: resolvers::host_defaults(std::path::Path::new("/etc/resolv.conf")),
            map_entries: NonZeroUsize::new(65_536).unwrap(),
            map_per_cgroup: NonZeroUsize::new(16_384).unwrap(),
            ttl_floor: Duration::from_secs(60),
            ttl_cap: Duration::from_secs(86_400),
            query_table_entries: 10_000,
            query_table_per_cgroup: 2_500,
            query_timeout: Duration::from_secs(10),
            resolver_cgroups: vec![SYSTEMD_RESOLVED_CGROUP.into()],
        }
    }
}

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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ServedKey {
    server: IpAddr,
    server_port: u16,
    client_port: u16,
    id: u16,
}

#[derive(Clone, Copy, Debug)]
struct Served {
    cgroup: u64,
    named_resolver: bool,
    until: Instant,
}

struct Fold {
    window_start: Instant,
    pending: u64,
    last: RefusedAnswer,
}

pub struct Namer {
    trusted: Vec<Resolver>,
    queries: QueryTable,
    /// Answers that watched sockets sent, by the key their receiver will see, with the
    /// sender's cgroup and whether it is a resolver the operator named.
    served: LruCache<ServedKey, Served>,
    timeout: Duration,
    map: NameMap,
    hellos: HelloAssembler,
    refused: LruCache<(u64, String, &'static str), Fold>,
    pub stats: NameStats,
}

impl Namer {
    pub fn new(o: &NamesOptions) -> Self {
        let table = NonZeroUsize::new(o.query_table_entries.max(1)).expect("at least 1");
        Self {
            trusted: o.trusted_resolvers.clone(),
            queries: QueryTable::new(
                o.query_table_entries,
                o.query_table_per_cgroup,
                o.query_timeout,
            ),
            served: LruCache::new(table),
            timeout: o.query_timeout,
            map: NameMap::new(o.map_entries, o.map_per_cgroup, o.ttl_floor, o.ttl_cap),
            hellos: HelloAssembler::new(o.map_entries),
            refused: LruCache::new(NonZeroUsize::new(1024).expect("non-zero")),
            stats: NameStats::default(),
        }
    }

    /// The counters and sizes, for /metrics.
    pub fn snapshot(&self) -> NamesSnapshot {
        let mut evictions: Vec<(u64, u64)> =
            self.map.evictions.iter().map(|(c, n)| (*c, *n)).collect();
        evictions.sort_unstable();
        NamesSnapshot {
            stats: self.stats.clone(),
            queries_outstanding: self.queries.len(),
            queries_not_recorded: self.queries.stats.table_full,
            named_addresses: self.map.len(),
            evictions,
        }
    }

    /// Learns from one DNS or TLS packet record of the host's network namespace.
    pub fn on_packet(&mut self, p: &PacketView<'_>, now: Instant) -> Learned {
        self.on_packet_from(p, Provenance::HOST, now)
    }

    /// Learns from one DNS or TLS packet record, with what the kernel says of its socket.
    /// Malformed packets are counted and skipped.
    pub fn on_packet_from(
        &mut self,
        p: &PacketView<'_>,
        from: Provenance,
        now: Instant,
    ) -> Learned {
        let tcp = p.protocol == IPPROTO_TCP;
        let peer = sovereign_agent_common::ip_of(p.family, &p.peer_addr);
        match p.kind {
            RecordKind::DnsQuery => {
                match dns::parse_query(p.data, tcp) {
                    Ok(q) => {
                        self.stats.dns_queries += 1;
                        let key = QueryKey {
                            cookie: p.cookie,
                            server: peer,
                            server_port: p.peer_port,
                            client_port: p.local_port,
                            id: q.id,
                        };
                        let share = if from.share != 0 {
                            from.share
                        } else {
                            p.cgroup_id
                        };
                        self.queries
                            .record(key, q.question, share, from.trusted_netns, now);
                    }
                    Err(e) => {
                        self.stats.dns_malformed += 1;
                        tracing::debug!(error = %e, len = p.data.len(), "skipping DNS query");
                    }
                }
                Learned::Nothing
            }
            RecordKind::DnsServed => {
                self.stats.dns_served += 1;
                if let Ok(r) = dns::parse_message(p.data, tcp) {
                    let key = ServedKey {
                        server: peer,
                        server_port: p.peer_port,
                        client_port: p.local_port,
                        id: r.id,
                    };
                    self.served.put(
                        key,
                        Served {
                            cgroup: p.cgroup_id,
                            named_resolver: from.named_resolver,
                            until: now + self.timeout,
                        },
                    );
                }
                Learned::Nothing
            }
            RecordKind::DnsResponse => self.on_response(p, peer, tcp, from.share, now),
            RecordKind::TlsClientHello => {
                self.stats.tls_segments += 1;
                if self.map.hello_settled(p.cookie) {
                    return Learned::Nothing; // a retransmission after the hello was read
                }
                let hello = self.hellos.add(p.cookie, p.tcp_seq, p.data);
                self.settle_hello(p.cookie, peer, p.peer_port, hello)
            }
            _ => Learned::Nothing,
        }
    }

    fn settle_hello(&mut self, cookie: u64, ip: IpAddr, port: u16, hello: Hello) -> Learned {
        match &hello {
            Hello::Pending => return Learned::Nothing,
            Hello::Name(_) => self.stats.sni_names += 1,
            Hello::NoName => {}
            Hello::Unreadable(why) => {
                self.stats.tls_unreadable += 1;
                tracing::debug!(cookie, why, "ClientHello unreadable");
            }
        }
        self.map.set_hello(cookie, ip, port, hello);
        Learned::Hello { cookie }
    }

    fn on_response(
        &mut self,
        p: &PacketView<'_>,
        peer: IpAddr,
        tcp: bool,
        share: u64,
        now: Instant,
    ) -> Learned {
        let response = match dns::parse_message(p.data, tcp) {
            Ok(r) => r,
            Err(e) => {
                self.stats.dns_malformed += 1;
                tracing::debug!(error = %e, len = p.data.len(), "skipping DNS response");
                return Learned::Nothing;
            }
        };
        self.stats.dns_responses += 1;
        let key = QueryKey {
            cookie: p.cookie,
            server: peer,
            server_port: p.peer_port,
            client_port: p.local_port,
            id: response.id,
        };
        let resolver = Resolver {
            ip: peer,
            port: p.peer_port,
        };
        let trusted_address = self.trusted.contains(&resolver);
        let answered = self.queries.answer(&key, response.question.as_ref(), now);
        let refusal = match answered {
            Err(why) => Some(why.as_str()),
            Ok(_) if trusted_address => self.posing_as_resolver(&key, p.cgroup_id, now),
            Ok(_) => None,
        };
        // A loopback resolver is whoever listens there in the asking socket's network
        // namespace: the host's only in the namespace the operator trusts.
        let trusted = trusted_address && (!peer.is_loopback() || answered == Ok(true));
        if trusted_address && !trusted && refusal.is_none() {
            self.stats.dns_foreign_netns += 1;
        }
        if let Some(reason) = refusal {
            self.stats.dns_refused += 1;
            *self.stats.refused_by_reason.entry(reason).or_default() += 1;
            let refused = RefusedAnswer {
                cgroup_id: p.cgroup_id,
                cookie: p.cookie,
                resolver: resolver.to_string(),
                client_port: p.local_port,
                reason,
                question: response.question.map(|q| q.name),
                names: response
                    .answers
                    .iter()
                    .flat_map(|a| a.names.iter().cloned())
                    .fold(Vec::new(), |mut v, n| {
                        if !v.contains(&n) {
                            v.push(n);
                        }
                        v
                    }),
                addresses: response.answers.iter().map(|a| a.ip).collect(),
                count: 1,
            };
            return self.fold_refused(refused, now);
        }
        if trusted {
            self.stats.dns_verified += 1;
        } else {
            self.stats.dns_untrusted += 1;
        }
        let resolver = resolver.to_string();
        let share = if share != 0 { share } else { p.cgroup_id };
        for a in response.answers {
            let chain = DnsChain {
                names: a.names,
                resolver: resolver.clone(),
                verified: trusted,
            };
            self.map
                .insert_shared(p.cgroup_id, share, a.ip, chain, a.ttl, now);
        }
        Learned::Nothing
    }

    /// Why the answer to `key` cannot count as the trusted resolver's when a watched socket
    /// sent it: a socket of the querying cgroup itself (a workload posing as the resolver, e.g.
    /// on its address in a network namespace of its own), or of any other watched cgroup that
    /// is not a resolver the operator named (a sidecar the workload controls).
    fn posing_as_resolver(
        &mut self,
        key: &QueryKey,
        cgroup: u64,
        now: Instant,
    ) -> Option<&'static str> {
        let served = ServedKey {
            server: key.server,
            server_port: key.server_port,
            client_port: key.client_port,
            id: key.id,
        };
        match self.served.pop(&served) {
            Some(s) if s.until <= now => None,
            Some(s) if s.cgroup == cgroup => Some("answered_by_own_cgroup"),
            Some(s) if !s.named_resolver => Some("answered_by_watched_socket"),
            _ => None,
        }
    }

    fn fold_refused(&mut self, r: RefusedAnswer, now: Instant) -> Learned {
        let key = (r.cgroup_id, r.resolver.clone(), r.reason);
        match self.refused.get_mut(&key) {
            Some(f) if now.duration_since(f.window_start) < REFUSED_FOLD_WINDOW => {
                f.pending += 1;
                f.last = r;
                Learned::Nothing
            }
            _ => {
                self.refused.put(
                    key,
                    Fold {
                        window_start: now,
                        pending: 0,
                        last: r.clone(),
                    },
                );
                Learned::Refused(Box::new(r))
            }
        }
    }

    /// Folded refusals whose window ended by `now` (all of them when `now` is `None`), each
    /// with the number of answers it stands for.
    pub fn expire_refused(&mut self, now: Option<Instant>) -> Vec<RefusedAnswer> {
        let mut due = Vec::new();
        for (_, f) in &mut self.refused {
            let ended = now.is_none_or(|n| n.duration_since(f.window_start) >= REFUSED_FOLD_WINDOW);
            if ended && f.pending > 0 {
                let mut r = f.last.clone();
                r.count = f.pending;
                f.pending = 0;
                due.push(r);
            }
        }
        due
    }

    /// Names for a flow of connection `cookie` from `cgroup` to `ip`:`port`.
    pub fn lookup(
        &mut self,
        cgroup: u64,
        ip: IpAddr,
        port: u16,
        cookie: u64,
        now: Instant,
    ) -> Naming {
        self.map.lookup(cgroup, ip, port, cookie, now)
    }

    /// A socket is connecting (anew): nothing its previous connection's hello said applies.
    pub fn connection_started(&mut self, cookie: u64) {
        self.map.forget_connection(cookie);
        let _ = self.hellos.finish(cookie);
    }

    /// A connection is closing: a ClientHello still incomplete is unreadable. Call before the
    /// close is named; [`Namer::connection_closed`] after.
    pub fn connection_closing(&mut self, cookie: u64, ip: IpAddr, port: u16) {
        if let Some(hello) = self.hellos.finish(cookie) {
            let _ = self.settle_hello(cookie, ip, port, hello);
        }
    }

    pub fn connection_closed(&mut self, cookie: u64) {
        self.map.forget_connection(cookie);
    }
}

/// A packet recorded from a real tool (tests/fixtures; see its README).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

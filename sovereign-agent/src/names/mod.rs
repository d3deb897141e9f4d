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
mod learned;
pub mod map;
mod options;
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

pub use self::learned::{Learned, NameStats, NamesSnapshot, RefusedAnswer, REFUSED_FOLD_WINDOW};
pub use self::map::{naming, DnsChain, NameMap, Naming};
pub use self::options::{NamesOptions, Provenance, SYSTEMD_RESOLVED_CGROUP};
use self::{
    hello::{Hello, HelloAssembler},
    queries::{QueryKey, QueryTable},
    resolvers::Resolver,
};

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

//! Outstanding DNS queries, so that an answer is accepted only as the answer to a question
//! the same socket asked, of the server that answers, on the port it asked from, with the
//! same transaction id. Each query is answered once: a second answer, a late one, one with
//! another question or one nobody asked for is refused, with the reason.
//!
//! Bounded: at most `capacity` queries in all and `per_cgroup` of them from one cgroup, so a
//! workload that floods queries fills its own share and cannot push out another workload's
//! queries. A query that finds no room is counted; its answer is then refused as
//! [`Refusal::TableFull`] (never taken as verified).
use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
    time::{Duration, Instant},
};

use super::dns::Question;

/// What identifies a query on the wire: the client socket, the server asked and the client's
/// port (the answer's destination), and the transaction id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueryKey {
    pub cookie: u64,
    pub server: IpAddr,
    pub server_port: u16,
    pub client_port: u16,
    pub id: u16,
}

#[derive(Clone, Debug)]
struct Outstanding {
    question: Question,
    cgroup: u64,
    /// The asking socket was in the network namespace the operator trusts (where a loopback
    /// resolver is the host's own).
    trusted_netns: bool,
    expires: Instant,
}

/// Why an answer was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No query of this socket to this server with this id is outstanding.
    NoQuery,
    /// The query was outstanding, but the answer repeats another question.
    WrongQuestion,
    /// The query was already answered.
    Duplicate,
    /// The query was asked longer ago than the query timeout.
    Expired,
    /// The query table was full when the query was sent: it was not recorded.
    TableFull,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NoQuery => "no_query",
            Refusal::WrongQuestion => "wrong_question",
            Refusal::Duplicate => "duplicate",
            Refusal::Expired => "expired",
            Refusal::TableFull => "query_table_full",
        }
    }
}

/// Counters of the table, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub recorded: u64,
    pub matched: u64,
    /// Queries not recorded: the table (or the cgroup's share) was full.
    pub table_full: u64,
}

pub struct QueryTable {
    outstanding: HashMap<QueryKey, Outstanding>,
    /// Insertion order, for expiry (entries already answered are skipped).
    order: VecDeque<(Instant, QueryKey)>,
    per_cgroup: HashMap<u64, usize>,
    /// Recently answered or expired keys (bounded), to tell a duplicate or late answer from
    /// one nobody asked for.
    settled: HashMap<QueryKey, (Refusal, Instant)>,
    settled_order: VecDeque<QueryKey>,
    /// Keys refused for lack of room, until the timeout (bounded like the table).
    dropped: HashMap<QueryKey, Instant>,
    dropped_order: VecDeque<QueryKey>,
    capacity: usize,
    cgroup_share: usize,
    timeout: Duration,
    pub stats: QueryStats,
}

impl QueryTable {
    pub fn new(capacity: usize, per_cgroup: usize, timeout: Duration) -> Self {
        let capacity = capacity.max(1);
        Self {
            outstanding: HashMap::new(),
            order: VecDeque::new(),
            per_cgroup: HashMap::new(),
            settled: HashMap::new(),
            settled_order: VecDeque::new(),
            dropped: HashMap::new(),
            dropped_order: VecDeque::new(),
            capacity,
            cgroup_share: per_cgroup.clamp(1, capacity),
            timeout,
            stats: QueryStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }

    /// Records a query sent at `now` (from the trusted network namespace or not) by the
    /// workload whose share key is `cgroup` (its pod, unit or container; else its cgroup).
    /// Returns false when there was no room for it.
    pub fn record(
        &mut self,
        key: QueryKey,
        question: Question,
        cgroup: u64,
        trusted_netns: bool,
        now: Instant,
    ) -> bool {
        self.expire(now);
        if let Some(old) = self.outstanding.get_mut(&key) {
            // A retransmission of the same query (same id, same socket): one answer expected.
            old.question = question;
            old.trusted_netns &= trusted_netns;
            old.expires = now + self.timeout;
            self.order.push_back((now, key));
            return true;
        }
        let used = self.per_cgroup.get(&cgroup).copied().unwrap_or(0);
        if self.outstanding.len() >= self.capacity || used >= self.cgroup_share {
            self.stats.table_full += 1;
            remember(
                &mut self.dropped,
                &mut self.dropped_order,
                self.capacity,
                key,
                now + self.timeout,
            );
            return false;
        }
        self.settled.remove(&key);
        self.outstanding.insert(
            key,
            Outstanding {
                question,
                cgroup,
                trusted_netns,
                expires: now + self.timeout,
            },
        );
        *self.per_cgroup.entry(cgroup).or_default() += 1;
        self.order.push_back((now, key));
        self.stats.recorded += 1;
        true
    }

    /// Accepts an answer for `key` repeating `question`: the query is settled (a second answer
    /// is a duplicate), and whether it was asked from the trusted network namespace is
    /// returned. Otherwise says why not.
    pub fn answer(
        &mut self,
        key: &QueryKey,
        question: Option<&Question>,
        now: Instant,
    ) -> Result<bool, Refusal> {
        self.expire(now);
        let Some(q) = self.outstanding.get(key) else {
            if let Some((why, _)) = self.settled.get(key) {
                return Err(*why);
            }
            if self.dropped.contains_key(key) {
                return Err(Refusal::TableFull);
            }
            return Err(Refusal::NoQuery);
        };
        // Names are case-insensitive (resolvers echo 0x20-randomised case as it was sent).
        if question != Some(&q.question) {
            return Err(Refusal::WrongQuestion);
        }
        let trusted_netns = q.trusted_netns;
        self.remove(key);
        self.settle(*key, Refusal::Duplicate, now);
        self.stats.matched += 1;
        Ok(trusted_netns)
    }

    fn remove(&mut self, key: &QueryKey) {
        if let Some(q) = self.outstanding.remove(key) {
            if let Some(n) = self.per_cgroup.get_mut(&q.cgroup) {
                *n -= 1;
                if *n == 0 {
                    self.per_cgroup.remove(&q.cgroup);
                }
            }
        }
    }

    fn settle(&mut self, key: QueryKey, why: Refusal, now: Instant) {
        remember(
            &mut self.settled,
            &mut self.settled_order,
            self.capacity,
            key,
            (why, now + self.timeout),
        );
    }

    /// Forgets queries older than the timeout (their late answers are `Expired`).
    fn expire(&mut self, now: Instant) {
        while let Some(&(at, key)) = self.order.front() {
            if at + self.timeout > now {
                break;
            }
            self.order.pop_front();
            let expired = self.outstanding.get(&key).is_some_and(|q| q.expires <= now);
            if expired {
                self.remove(&key);
                self.settle(key, Refusal::Expired, now);
            }
        }
        // Settled and dropped keys are kept one more timeout, then forgotten.
        while let Some(key) = self.settled_order.front() {
            match self.settled.get(key) {
                Some((_, until)) if *until > now => break,
                _ => {
                    let key = *key;
                    self.settled_order.pop_front();
                    if self
                        .settled
                        .get(&key)
                        .is_some_and(|(_, until)| *until <= now)
                    {
                        self.settled.remove(&key);
                    }
                }
            }
        }
        while let Some(key) = self.dropped_order.front() {
            match self.dropped.get(key) {
                Some(until) if *until > now => break,
                _ => {
                    let key = *key;
                    self.dropped_order.pop_front();
                    if self.dropped.get(&key).is_some_and(|until| *until <= now) {
                        self.dropped.remove(&key);
                    }
                }
            }
        }
    }
}

/// Inserts into a bounded side table (oldest forgotten first).
fn remember<V>(
    map: &mut HashMap<QueryKey, V>,
    order: &mut VecDeque<QueryKey>,
    capacity: usize,
    key: QueryKey,
    value: V,
) {
    while map.len() >= capacity {
        match order.pop_front() {
            Some(old) => {
                map.remove(&old);
            }
            None => break,
        }
    }
    if map.insert(key, value).is_none() {
        order.push_back(key);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(cookie: u64, id: u16) -> QueryKey {
        QueryKey {
            cookie,
            server: "192.0.2.53".parse().unwrap(),
            server_port: 53,
            client_port: 40000,
            id,
        }
    }

    fn q(name: &str) -> Question {
        Question {
            name: name.into(),
            qtype: 1,
        }
    }

    fn table() -> QueryTable {
        QueryTable::new(100, 10, Duration::from_secs(5))
    }

    #[test]
    fn an_answer_to_the_query_is_accepted_once() {
        let mut t = table();
        let now = Instant::now();
        assert!(t.record(key(1, 7), q("a.example"), 1, true, now));
        assert_eq!(t.answer(&key(1, 7), Some(&q("a.example")), now), Ok(true));
        assert_eq!(
            t.answer(&key(1, 7), Some(&q("a.example")), now),
            Err(Refusal::Duplicate)
        );
        assert!(t.is_empty());
        assert_eq!(t.stats.matched, 1);
    }

    #[test]
    fn wrong_id_socket_server_port_or_question_is_refused() {
        let mut t = table();
        let now = Instant::now();
        t.record(key(1, 7), q("a.example"), 1, true, now);
        let mut other_server = key(1, 7);
        other_server.server = "198.51.100.53".parse().unwrap();
        let mut other_port = key(1, 7);
        other_port.client_port = 40001;
        let mut other_server_port = key(1, 7);
        other_server_port.server_port = 5353;
        for k in [
            key(1, 8),
            key(2, 7),
            other_server,
            other_port,
            other_server_port,
        ] {
            assert_eq!(
                t.answer(&k, Some(&q("a.example")), now),
                Err(Refusal::NoQuery),
                "{k:?}"
            );
        }
        assert_eq!(
            t.answer(&key(1, 7), Some(&q("b.example")), now),
            Err(Refusal::WrongQuestion)
        );
        assert_eq!(t.answer(&key(1, 7), None, now), Err(Refusal::WrongQuestion));
        // The wrong question did not consume the query: the right answer still matches.
        assert_eq!(t.answer(&key(1, 7), Some(&q("a.example")), now), Ok(true));
    }

    #[test]
    fn late_answers_are_expired() {
        let mut t = table();
        let now = Instant::now();
        t.record(key(1, 7), q("a.example"), 1, true, now);
        let late = now + Duration::from_secs(6);
        assert_eq!(
            t.answer(&key(1, 7), Some(&q("a.example")), late),
            Err(Refusal::Expired)
        );
        assert!(t.is_empty());
        // Long after, the key is forgotten entirely.
        assert_eq!(
            t.answer(
                &key(1, 7),
                Some(&q("a.example")),
                now + Duration::from_secs(30)
            ),
            Err(Refusal::NoQuery)
        );
    }

    #[test]
    fn a_cgroup_cannot_take_more_than_its_share() {
        let mut t = QueryTable::new(20, 5, Duration::from_secs(5));
        let now = Instant::now();
        for id in 0..50 {
            t.record(key(1, id), q("flood.example"), 1, true, now);
        }
        assert_eq!(t.len(), 5);
        assert_eq!(t.stats.table_full, 45);
        // Another cgroup still has room, and its answer matches.
        assert!(t.record(key(2, 1), q("b.example"), 2, true, now));
        assert_eq!(t.answer(&key(2, 1), Some(&q("b.example")), now), Ok(true));
        // The flood's dropped queries are refused as such, never verified.
        assert_eq!(
            t.answer(&key(1, 49), Some(&q("flood.example")), now),
            Err(Refusal::TableFull)
        );
    }

    #[test]
    fn a_full_table_refuses_new_queries() {
        let mut t = QueryTable::new(4, 4, Duration::from_secs(5));
        let now = Instant::now();
        for c in 0..4 {
            assert!(t.record(key(c, 1), q("a.example"), c, true, now));
        }
        assert!(!t.record(key(9, 1), q("a.example"), 9, true, now));
        assert_eq!(
            t.answer(&key(9, 1), Some(&q("a.example")), now),
            Err(Refusal::TableFull)
        );
        // Room again once they expire.
        assert!(t.record(
            key(9, 2),
            q("a.example"),
            9,
            true,
            now + Duration::from_secs(6)
        ));
    }

    proptest! {
        /// Whatever sequence of queries and answers arrives, an answer is accepted only for a
        /// recorded, unexpired, unanswered query with the same key and question, at most once.
        #[test]
        fn accepted_answers_are_exactly_the_matching_ones(
            ops in proptest::collection::vec((any::<bool>(), 0u64..3, 0u16..4, 0u8..2, 0u64..3), 1..200)
        ) {
            let timeout = Duration::from_secs(4);
            let mut t = QueryTable::new(6, 3, timeout);
            let mut now = Instant::now();
            // The model: key -> (question, sent at) of every recorded, unanswered query.
            let mut model: HashMap<QueryKey, (Question, Instant)> = HashMap::new();
            for (is_query, cookie, id, name, step) in ops {
                now += Duration::from_secs(step);
                let k = key(cookie, id);
                let question = q(if name == 0 { "a.example" } else { "b.example" });
                if is_query {
                    if t.record(k, question.clone(), cookie, true, now) {
                        model.insert(k, (question, now));
                    }
                } else {
                    let accepted = t.answer(&k, Some(&question), now).is_ok();
                    let expected = match model.get(&k) {
                        Some((asked, at)) => *asked == question && *at + timeout > now,
                        None => false,
                    };
                    prop_assert_eq!(accepted, expected, "{:?} {:?}", k, question);
                    if accepted {
                        model.remove(&k);
                    }
                }
                prop_assert!(t.len() <= 6);
            }
        }
    }
}

//! DNS messages, with simple-dns (zero-copy, bounds-checked): queries → (id, question),
//! responses → (id, question, (address, names) pairs).
//!
//! For every A/AAAA answer the names are the CNAME chain in order, from the name that was
//! asked to the name that owns the address: `llm.example → edge.cdn.example → 203.0.113.20`
//! gives `["llm.example", "edge.cdn.example"]`.
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use simple_dns::{rdata::RData, Packet, PacketFlag, RCODE};

/// One address learned from a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub ip: IpAddr,
    /// The CNAME chain in order, ending with the name that owns the address.
    pub names: Vec<String>,
    pub ttl: u32,
}

/// The first question of a message: what was asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    /// Lowercased, without the final dot.
    pub name: String,
    pub qtype: u16,
}

/// A query as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub question: Question,
}

/// A response: its transaction id, the question it repeats, and the addresses it gives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub question: Option<Question>,
    pub answers: Vec<Answer>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("malformed DNS message: {0}")]
    Malformed(String),
    #[error("DNS over TCP message shorter than its length prefix")]
    TcpLength,
    #[error("not a DNS query")]
    NotAQuery,
}

/// The DNS message in a UDP payload, or after the 2-byte length of DNS over TCP.
fn message(data: &[u8], tcp: bool) -> Result<&[u8], DnsError> {
    if !tcp {
        return Ok(data);
    }
    let len = data
        .get(..2)
        .map(|l| u16::from_be_bytes([l[0], l[1]]) as usize)
        .ok_or(DnsError::TcpLength)?;
    data.get(2..2 + len).ok_or(DnsError::TcpLength)
}

fn question(packet: &Packet<'_>) -> Option<Question> {
    packet.questions.first().map(|q| Question {
        name: lower(&q.qname.to_string()),
        qtype: u16::from(q.qtype),
    })
}

/// Parses one query (QR = 0, at least one question).
pub fn parse_query(data: &[u8], tcp: bool) -> Result<Query, DnsError> {
    let packet =
        Packet::parse(message(data, tcp)?).map_err(|e| DnsError::Malformed(e.to_string()))?;
    if packet.has_flags(PacketFlag::RESPONSE) {
        return Err(DnsError::NotAQuery);
    }
    Ok(Query {
        id: packet.id(),
        question: question(&packet).ok_or(DnsError::NotAQuery)?,
    })
}

/// Parses one response with its id and question. Errors (NXDOMAIN, SERVFAIL, ...) and
/// answers without addresses give no answers; a query gives [`DnsError::NotAQuery`]'s
/// opposite: no answers either.
pub fn parse_message(data: &[u8], tcp: bool) -> Result<Response, DnsError> {
    let packet =
        Packet::parse(message(data, tcp)?).map_err(|e| DnsError::Malformed(e.to_string()))?;
    let answers = if !packet.has_flags(PacketFlag::RESPONSE) || packet.rcode() != RCODE::NoError {
        Vec::new()
    } else {
        answers(&packet)
    };
    Ok(Response {
        id: packet.id(),
        question: question(&packet),
        answers,
    })
}

/// Longest CNAME chain followed (a loop of CNAMEs must not spin).
const MAX_CHAIN: usize = 16;

/// Parses one response. `tcp`: the message starts with its 2-byte length (DNS over TCP).
/// Queries, errors (NXDOMAIN, SERVFAIL, ...) and answers without addresses give no answers.
pub fn parse_response(data: &[u8], tcp: bool) -> Result<Vec<Answer>, DnsError> {
    parse_message(data, tcp).map(|r| r.answers)
}

fn answers(packet: &Packet<'_>) -> Vec<Answer> {
    // CNAME target -> owner, to walk a chain back to the name that was asked.
    let mut alias_of: HashMap<String, String> = HashMap::new();
    for rr in &packet.answers {
        if let RData::CNAME(target) = &rr.rdata {
            alias_of.insert(lower(&target.0.to_string()), lower(&rr.name.to_string()));
        }
    }
    let mut out = Vec::new();
    for rr in &packet.answers {
        let ip = match &rr.rdata {
            RData::A(a) => IpAddr::V4(Ipv4Addr::from(a.address)),
            RData::AAAA(a) => IpAddr::V6(Ipv6Addr::from(a.address)),
            _ => continue,
        };
        let mut names = vec![lower(&rr.name.to_string())];
        while let Some(owner) = alias_of.get(names.last().expect("non-empty")) {
            if names.len() >= MAX_CHAIN || names.contains(owner) {
                break;
            }
            names.push(owner.clone());
        }
        names.reverse();
        out.push(Answer {
            ip,
            names,
            ttl: rr.ttl,
        });
    }
    out
}

fn lower(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use simple_dns::{rdata, Name, Question, ResourceRecord, CLASS, TYPE};

    use super::*;
    use crate::names::fixture;

    /// A response built with simple-dns itself (real wire format, compression included).
    pub fn response(build: impl FnOnce(&mut Packet<'static>)) -> Vec<u8> {
        let mut p = Packet::new_reply(0x1234);
        p.questions.push(Question::new(
            Name::new_unchecked("llm.sovereign.example"),
            TYPE::A.into(),
            CLASS::IN.into(),
            false,
        ));
        build(&mut p);
        p.build_bytes_vec_compressed().unwrap()
    }

    fn a(name: &'static str, ip: [u8; 4], ttl: u32) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            ttl,
            RData::A(rdata::A {
                address: u32::from_be_bytes(ip),
            }),
        )
    }

    fn cname(name: &'static str, target: &'static str) -> ResourceRecord<'static> {
        ResourceRecord::new(
            Name::new_unchecked(name),
            CLASS::IN,
            300,
            RData::CNAME(rdata::CNAME(Name::new_unchecked(target))),
        )
    }

    #[test]
    fn real_dnsmasq_responses() {
        let a = parse_response(&fixture("dns-cname-chain.bin"), false).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].ip.to_string(), "203.0.113.20");
        assert_eq!(
            a[0].names,
            ["llm.sovereign.example", "edge.sovereign.example"]
        );
        let aaaa = parse_response(&fixture("dns-aaaa.bin"), false).unwrap();
        assert_eq!(
            (aaaa[0].ip.to_string(), aaaa[0].names.clone()),
            (
                "2001:db8::20".into(),
                vec!["edge.sovereign.example".to_string()]
            )
        );
        let tcp = parse_response(&fixture("dns-tcp.bin"), true).unwrap();
        assert_eq!(
            (tcp[0].ip.to_string(), tcp[0].names.clone()),
            ("203.0.113.10".into(), vec!["api.openai.com".to_string()])
        );
        assert!(parse_response(&fixture("dns-refused.bin"), false)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn cname_chain_in_order_and_several_answers() {
        let bytes = response(|p| {
            p.answers
                .push(cname("llm.sovereign.example", "edge.cdn.example"));
            p.answers
                .push(cname("edge.cdn.example", "pop-7.cdn.example"));
            p.answers
                .push(a("pop-7.cdn.example", [203, 0, 113, 20], 60));
            p.answers
                .push(a("pop-7.cdn.example", [203, 0, 113, 21], 60));
        });
        let answers = parse_response(&bytes, false).unwrap();
        assert_eq!(answers.len(), 2);
        assert_eq!(answers[0].ip.to_string(), "203.0.113.20");
        assert_eq!(
            answers[0].names,
            [
                "llm.sovereign.example",
                "edge.cdn.example",
                "pop-7.cdn.example"
            ]
        );
        assert_eq!(answers[1].ip.to_string(), "203.0.113.21");
        assert_eq!(answers[0].ttl, 60);
    }

    #[test]
    fn dns_over_tcp_has_a_length_prefix() {
        let msg = response(|p| {
            p.answers
                .push(a("llm.sovereign.example", [203, 0, 113, 5], 30));
        });
        let mut tcp = (msg.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&msg);
        assert_eq!(
            parse_response(&tcp, true).unwrap()[0].names,
            ["llm.sovereign.example"]
        );
        assert_eq!(
            parse_response(&tcp[..tcp.len() - 1], true),
            Err(DnsError::TcpLength)
        );
        assert_eq!(parse_response(&tcp[..1], true), Err(DnsError::TcpLength));
    }

    #[test]
    fn nxdomain_zero_answers_and_queries_give_nothing() {
        let mut nx = response(|_| {});
        nx[3] = (nx[3] & 0xf0) | 3; // RCODE NXDOMAIN
        assert!(parse_response(&nx, false).unwrap().is_empty());
        let empty = response(|_| {});
        assert!(parse_response(&empty, false).unwrap().is_empty());
        let mut query = response(|p| p.answers.push(a("x.example", [192, 0, 2, 1], 1)));
        query[2] &= 0x7f; // QR = 0: a query
        assert!(parse_response(&query, false).unwrap().is_empty());
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        let full = response(|p| {
            p.answers
                .push(a("llm.sovereign.example", [203, 0, 113, 5], 30));
        });
        for cut in 0..full.len() {
            let _ = parse_response(&full[..cut], false); // any result but a panic
        }
        assert!(parse_response(&full[..full.len() - 2], false).is_err());
        assert!(
            parse_response(&[0xff; 40], false).is_err()
                || parse_response(&[0xff; 40], false).unwrap().is_empty()
        );
    }

    #[test]
    fn compression_loop_is_an_error() {
        // Header (1 question), then a name that is a pointer to itself at offset 12.
        let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert!(parse_response(&msg, false).is_err());
    }

    #[test]
    fn oversized_names_are_errors() {
        let mut msg = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        for _ in 0..5 {
            msg.push(63);
            msg.extend_from_slice(&[b'a'; 63]);
        }
        msg.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert!(
            parse_response(&msg, false).is_err(),
            "a 320-byte name is over the 255-byte limit"
        );
    }

    #[test]
    fn queries_and_responses_carry_id_and_question() {
        let mut q = Packet::new_query(0xbeef);
        q.questions.push(Question::new(
            Name::new_unchecked("API.OpenAI.com"),
            TYPE::AAAA.into(),
            CLASS::IN.into(),
            false,
        ));
        let bytes = q.build_bytes_vec().unwrap();
        let query = parse_query(&bytes, false).unwrap();
        assert_eq!(query.id, 0xbeef);
        assert_eq!(
            query.question,
            super::Question {
                name: "api.openai.com".into(),
                qtype: 28
            }
        );
        let mut tcp = (bytes.len() as u16).to_be_bytes().to_vec();
        tcp.extend_from_slice(&bytes);
        assert_eq!(parse_query(&tcp, true).unwrap(), query);
        // A response is not a query, and a query is a response without answers.
        let resp = response(|p| {
            p.answers
                .push(a("llm.sovereign.example", [192, 0, 2, 1], 5));
        });
        assert_eq!(parse_query(&resp, false), Err(DnsError::NotAQuery));
        let r = parse_message(&resp, false).unwrap();
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.question.unwrap().name, "llm.sovereign.example");
        assert_eq!(r.answers.len(), 1);
        assert!(parse_message(&bytes, false).unwrap().answers.is_empty());
    }

    #[test]
    fn cname_loop_does_not_spin() {
        let bytes = response(|p| {
            p.answers.push(cname("a.example", "b.example"));
            p.answers.push(cname("b.example", "a.example"));
            p.answers.push(a("a.example", [192, 0, 2, 1], 5));
        });
        let answers = parse_response(&bytes, false).unwrap();
        assert!(answers[0].names.len() <= 3, "{:?}", answers[0].names);
    }
}

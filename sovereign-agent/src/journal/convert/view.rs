//! Flows decoded for replay and export as borrowed views of the record's bytes: no event is
//! built and no string copied; the views read exactly what the encoders write.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use sovereign_agent_proto::agent::v1 as pb;

use super::{error::ConvertError, varint::varint};
use crate::names::DnsChain;

/// A protobuf reader over borrowed bytes: (field, wire type, value) at a time.
struct Fields<'a>(&'a [u8]);

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), ConvertError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let bad = || Some(Err(ConvertError::Invalid("protobuf framing")));
        let Some((key, rest)) = varint(self.0) else {
            return bad();
        };
        let field = (key >> 3) as u32;
        let (value, rest) = match key & 7 {
            0 => match varint(rest) {
                Some((v, r)) => (Value::Varint(v), r),
                None => return bad(),
            },
            1 => match rest.get(8..) {
                Some(r) => (Value::Other, r),
                None => return bad(),
            },
            2 => match varint(rest) {
                Some((len, r)) if (len as usize) <= r.len() => {
                    (Value::Bytes(&r[..len as usize]), &r[len as usize..])
                }
                _ => return bad(),
            },
            5 => match rest.get(4..) {
                Some(r) => (Value::Other, r),
                None => return bad(),
            },
            // A group (deprecated, but valid protobuf, and skipped by the full decoder):
            // skipped too, or the view refused records the decoder reads (found by fuzzing).
            3 => match skip_group(rest, key >> 3, 0) {
                Some(r) => (Value::Other, r),
                None => return bad(),
            },
            _ => return bad(),
        };
        self.0 = rest;
        Some(Ok((field, value)))
    }
}

/// The bytes after the end of group `field` (its start tag already read); None if it does
/// not end, or nests deeper than the full decoder's recursion limit.
fn skip_group(mut b: &[u8], field: u64, depth: u32) -> Option<&[u8]> {
    if depth >= 100 {
        return None;
    }
    loop {
        let (key, rest) = varint(b)?;
        b = match key & 7 {
            0 => varint(rest)?.1,
            1 => rest.get(8..)?,
            2 => {
                let (len, r) = varint(rest)?;
                r.get(usize::try_from(len).ok()?..)?
            }
            5 => rest.get(4..)?,
            3 => skip_group(rest, key >> 3, depth + 1)?,
            4 if key >> 3 == field => return Some(rest),
            _ => return None,
        };
    }
}

fn utf8(b: &[u8]) -> Result<&str, ConvertError> {
    std::str::from_utf8(b).map_err(|_| ConvertError::Invalid("UTF-8 string"))
}

/// What replay needs of a recorded flow, borrowed from the record's bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlowView<'a> {
    pub ts_unix_ns: i64,
    /// At a collector: the agent the record came from (empty in an agent's own journal).
    pub agent_id: &'a str,
    /// The step, as the protobuf `FlowKind` number (1 connect, 2 send, 3 established,
    /// 4 close, 5 existing).
    pub kind: u64,
    /// The protobuf `Protocol` number (1 TCP, 2 UDP).
    pub proto: u64,
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    /// Flows this record stands for when the flow ceiling aggregated them.
    pub aggregated_flows: Option<u64>,
    pub pid: u32,
    pub uid: u32,
    pub cookie: u64,
    pub comm: &'a str,
    pub exe: Option<&'a str>,
    pub interpreter: Option<&'a str>,
    pub cgroup: Option<&'a str>,
    pub container_id: Option<&'a str>,
    pub container_runtime: Option<&'a str>,
    pub pod_uid: Option<&'a str>,
    pub systemd_unit: Option<&'a str>,
    pub dst_ip: Option<IpAddr>,
    pub dst_port: u16,
    pub names: Vec<String>,
    pub name_source: &'a str,
    pub name_conflict: bool,
    pub dns: Vec<DnsChain>,
    pub sni: Option<&'a str>,
    pub sni_unreadable: bool,
    /// Executables of the process's ancestors, parent first.
    pub ancestors: Vec<Arc<str>>,
    /// The SNI of a record written before `sni` was a field of its own.
    pub legacy_sni: Option<String>,
    pub verdict: Option<VerdictView<'a>>,
}

impl FlowView<'_> {
    /// The connection's SNI, from either kind of record.
    pub fn sni(&self) -> Option<&str> {
        self.sni.or(self.legacy_sni.as_deref())
    }

    /// Records written before names carried their evidence have only `names` and
    /// `name_source`: their DNS names become one chain of claims (they were never verified),
    /// their SNI (when it can be told apart) the SNI.
    fn legacy_names(&mut self) {
        if !self.dns.is_empty() || self.sni.is_some() || self.names.is_empty() {
            return;
        }
        let mut dns = self.names.clone();
        let sni = match self.name_source {
            "sni" => dns.pop(),
            "dns+sni" if self.name_conflict => dns.pop(),
            _ => None,
        };
        if !dns.is_empty() {
            self.dns.push(DnsChain {
                names: dns,
                resolver: String::new(),
                verified: false,
            });
        }
        self.legacy_sni = sni;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerdictView<'a> {
    pub violation: bool,
    /// The protobuf `Severity` number (0 none, 1 info .. 5 critical).
    pub severity: u64,
    /// Every zone of the policy the destination is in.
    pub matched_zones: Vec<&'a str>,
    pub rule: &'a str,
    pub policy_name: &'a str,
    pub policy_version: &'a str,
    pub policy_hash: &'a str,
}

/// The flow of a record, if it is one (`Ok(None)` for loss and lifecycle records).
pub fn flow_view(payload: &[u8]) -> Result<Option<FlowView<'_>>, ConvertError> {
    // Protobuf semantics, as the full decoder applies them: the last member of the `body`
    // oneof wins, and a message field that occurs more than once is the merge of all its
    // occurrences in order. Recorded events never repeat a field, but replay of a crafted or
    // damaged record must judge the same flow `journal export` shows.
    let mut ts = 0i64;
    let mut agent_id = "";
    let mut flow_parts: Vec<&[u8]> = Vec::new();
    let mut body_is_flow = false;
    for field in Fields(payload) {
        match field? {
            (2, Value::Varint(v)) => ts = v as i64,
            (3, Value::Bytes(s)) => agent_id = utf8(s)?,
            (10, Value::Bytes(b)) => {
                if !body_is_flow {
                    flow_parts.clear();
                }
                body_is_flow = true;
                flow_parts.push(b);
            }
            (11..=14, _) => body_is_flow = false,
            _ => {}
        }
    }
    if !body_is_flow {
        return Ok(None);
    }
    let mut v = FlowView {
        ts_unix_ns: ts,
        agent_id,
        ..Default::default()
    };
    for field in flow_parts.into_iter().flat_map(Fields) {
        match field? {
            (1, Value::Varint(x)) => v.kind = x,
            (2, Value::Varint(x)) => v.pid = x as u32,
            (16, Value::Varint(x)) => v.proto = x,
            (21, Value::Varint(x)) => v.bytes_sent = Some(x),
            (22, Value::Varint(x)) => v.bytes_received = Some(x),
            (38, Value::Bytes(ab)) => {
                let mut flows = v.aggregated_flows.unwrap_or(0);
                for f in Fields(ab) {
                    if let (1, Value::Varint(x)) = f? {
                        flows = x;
                    }
                }
                v.aggregated_flows = Some(flows);
            }
            (4, Value::Varint(x)) => v.uid = x as u32,
            (6, Value::Bytes(s)) => v.comm = utf8(s)?,
            (7, Value::Bytes(s)) => v.exe = Some(utf8(s)?),
            (37, Value::Bytes(s)) => v.interpreter = Some(utf8(s)?),
            (10, Value::Bytes(s)) => v.cgroup = Some(utf8(s)?),
            (11, Value::Bytes(s)) => v.container_id = Some(utf8(s)?),
            (12, Value::Bytes(s)) => v.container_runtime = Some(utf8(s)?),
            (13, Value::Bytes(s)) => v.pod_uid = Some(utf8(s)?),
            (14, Value::Bytes(s)) => v.systemd_unit = Some(utf8(s)?),
            (15, Value::Varint(x)) => v.cookie = x,
            (18, Value::Bytes(a)) => {
                v.dst_ip = Some(match a.len() {
                    4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(a).unwrap())),
                    16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(a).unwrap())),
                    _ => return Err(ConvertError::Invalid("destination address")),
                });
            }
            (19, Value::Varint(x)) => {
                v.dst_port = u16::try_from(x).map_err(|_| ConvertError::Invalid("port"))?;
            }
            (25, Value::Bytes(s)) => v.names.push(utf8(s)?.to_string()),
            (26, Value::Bytes(s)) => v.name_source = utf8(s)?,
            (27, Value::Varint(x)) => v.name_conflict = x != 0,
            (29, Value::Bytes(cb)) => {
                let mut chain = DnsChain {
                    names: Vec::new(),
                    resolver: String::new(),
                    verified: false,
                };
                for f in Fields(cb) {
                    match f? {
                        (1, Value::Bytes(s)) => chain.names.push(utf8(s)?.to_string()),
                        (2, Value::Bytes(s)) => chain.resolver = utf8(s)?.to_string(),
                        (3, Value::Varint(x)) => chain.verified = x != 0,
                        _ => {}
                    }
                }
                v.dns.push(chain);
            }
            (30, Value::Bytes(s)) => v.sni = Some(utf8(s)?),
            (31, Value::Bytes(_)) => v.sni_unreadable = true,
            (35, Value::Bytes(s)) => v.ancestors.push(utf8(s)?.into()),
            (28, Value::Bytes(vb)) => {
                let mut verdict = v.verdict.take().unwrap_or_default();
                for f in Fields(vb) {
                    match f? {
                        (1, Value::Varint(d)) => {
                            verdict.violation = d == pb::Decision::Violation as u64;
                        }
                        (2, Value::Varint(s)) => verdict.severity = s,
                        (5, Value::Bytes(z)) => verdict.matched_zones.push(utf8(z)?),
                        (3, Value::Bytes(s)) => verdict.rule = utf8(s)?,
                        (9, Value::Bytes(pbytes)) => {
                            for pf in Fields(pbytes) {
                                match pf? {
                                    (1, Value::Bytes(s)) => verdict.policy_name = utf8(s)?,
                                    (2, Value::Bytes(s)) => verdict.policy_version = utf8(s)?,
                                    (3, Value::Bytes(s)) => verdict.policy_hash = utf8(s)?,
                                    _ => {}
                                }
                            }
                        }
                        _ => {}
                    }
                }
                v.verdict = Some(verdict);
            }
            _ => {}
        }
    }
    if v.dst_ip.is_none() {
        return Err(ConvertError::Invalid("destination address"));
    }
    v.legacy_names();
    Ok(Some(v))
}

/// The agent a collector's record came from (empty in an agent's own journal, and for a
/// record that is not valid protobuf).
pub fn record_agent(payload: &[u8]) -> &str {
    let mut agent = "";
    for field in Fields(payload) {
        match field {
            Ok((3, Value::Bytes(s))) => agent = utf8(s).unwrap_or(""),
            Ok(_) => {}
            Err(_) => return "",
        }
    }
    agent
}

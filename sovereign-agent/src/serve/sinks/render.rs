//! What a sink sends for one event: its idempotency key, the JSON form (the `tail --json`
//! fields with the key and the agent's and journal's identity added; a `serde_json::Value`,
//! so its keys come out in alphabetical order), a one-line summary (chat), and ArcSight CEF
//! (SIEMs).
use serde_json::Value;
use sovereign_agent_proto::agent::v1 as pb;

use crate::{event::Event, journal::convert, journal::feed::filter::kind_of};

/// Who wrote the events a sink delivers: with the sequence number, the idempotency key.
#[derive(Clone, Debug)]
pub struct Origin {
    pub agent_id: String,
    pub journal_id: String,
}

impl Origin {
    /// `agent:journal:seq`: the same event always has the same key, and no two events do
    /// (a new journal has a new id), so a receiver can drop re-sends by it.
    pub fn key(&self, seq: u64) -> String {
        // Not format!: once per event on a sink's hottest path.
        let mut digits = itoa::Buffer::new();
        let seq = digits.format(seq);
        let mut key =
            String::with_capacity(self.agent_id.len() + self.journal_id.len() + seq.len() + 2);
        for part in [&self.agent_id, ":", &self.journal_id, ":", seq] {
            key.push_str(part);
        }
        key
    }
}

/// The event decoded, with its key, as JSON.
pub struct Rendered {
    pub seq: u64,
    pub kind: &'static str,
    pub key: String,
    pub json: Value,
    pub event: Option<Event>,
}

pub fn render(origin: &Origin, e: pb::Event) -> Rendered {
    let kind = kind_of(&e);
    let key = origin.key(e.seq);
    let seq = e.seq;
    let event = convert::from_proto(e).ok();
    let body = event
        .as_ref()
        .and_then(|ev| serde_json::to_value(ev).ok())
        .unwrap_or_else(|| serde_json::json!({ "kind": kind, "error": "undecodable record" }));
    let mut json = serde_json::Map::new();
    json.insert("id".into(), key.clone().into());
    json.insert("agent_id".into(), origin.agent_id.clone().into());
    json.insert("journal_id".into(), origin.journal_id.clone().into());
    json.insert("seq".into(), seq.into());
    if let Value::Object(fields) = body {
        json.extend(fields);
    }
    Rendered {
        seq,
        kind,
        key,
        json: Value::Object(json),
        event,
    }
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("")
}

/// One line for people in a chat: `[severity] rule: workload → destination (count) on agent`.
/// What the workload chooses (its executable or comm, the destination's names) is set as
/// inline code with the chat's control sequences escaped ([`crate::escape::chat`]): a
/// workload named `<!channel>` pings nobody. The rest (severity, rule, agent id) is the
/// operator's.
pub fn summary(r: &Rendered) -> String {
    use crate::escape::chat;
    let j = &r.json;
    match r.kind {
        "alert" => format!(
            "[{}] {}: {} → {} ({}×) on {}",
            str_at(j, &["severity"]),
            str_at(j, &["rule"]),
            chat(str_at(j, &["workload"])),
            chat(str_at(j, &["destination"])),
            j["count"].as_u64().unwrap_or(1),
            str_at(j, &["agent_id"]),
        ),
        "flood" => format!(
            "[high] flood: {} (pid {}) over its budget on {}",
            chat(str_at(j, &["flow", "comm"])),
            j["flow"]["pid"],
            str_at(j, &["agent_id"]),
        ),
        kind => match &r.event {
            Some(Event::Flow(f)) => format!(
                "{kind}: {} → {} ({}) on {}",
                chat(&f.workload()),
                chat(&f.destination()),
                match f.verdict.as_ref().map(|v| v.decision) {
                    Some(crate::policy::Decision::Allow) => "allow",
                    Some(crate::policy::Decision::Violation) => "violation",
                    None => "no verdict",
                },
                str_at(j, &["agent_id"]),
            ),
            _ => format!("{kind} on {}", str_at(j, &["agent_id"])),
        },
    }
}

/// CEF severity (0-10) of a policy severity name.
fn cef_severity(name: &str) -> u8 {
    match name {
        "critical" => 10,
        "high" => 8,
        "medium" => 5,
        "low" => 3,
        "info" => 1,
        _ => 5,
    }
}

/// `|` and `\` are escaped in the header; `=`, `\` and line ends in extension values.
fn cef_header(s: &str) -> String {
    s.replace('\\', "\\\\").replace('|', "\\|")
}

fn cef_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

/// ArcSight Common Event Format (CEF:0), one line.
pub fn cef(r: &Rendered) -> String {
    let j = &r.json;
    let flow = match r.kind {
        "alert" | "flood" => &j["flow"],
        _ => j,
    };
    let severity = match r.kind {
        "alert" => str_at(j, &["severity"]),
        "flood" => "high",
        _ => str_at(flow, &["verdict", "severity"]),
    };
    let name = match r.kind {
        "alert" => format!("residency violation: {}", str_at(j, &["rule"])),
        "flood" => "workload over its record budget".into(),
        kind => format!("{kind} flow"),
    };
    let mut ext = vec![
        ("externalId", r.key.clone()),
        ("rt", j["ts"].as_str().unwrap_or("").to_string()),
        ("dvchost", str_at(j, &["agent_id"]).to_string()),
        ("dst", str_at(flow, &["dst_ip"]).to_string()),
        ("dpt", flow["dst_port"].to_string()),
        ("dhost", flow["names"][0].as_str().unwrap_or("").to_string()),
        ("proto", str_at(flow, &["proto"]).to_uppercase()),
        ("spid", flow["pid"].to_string()),
        ("sproc", str_at(flow, &["comm"]).to_string()),
        ("suid", flow["uid"].to_string()),
        ("cs1Label", "workload".into()),
        ("cs1", str_at(j, &["workload"]).to_string()),
        ("cs2Label", "rule".into()),
        (
            "cs2",
            if r.kind == "alert" {
                str_at(j, &["rule"]).to_string()
            } else {
                str_at(flow, &["verdict", "rule"]).to_string()
            },
        ),
        ("cs3Label", "decision".into()),
        ("cs3", str_at(flow, &["verdict", "decision"]).to_string()),
        ("cnt", j["count"].as_u64().unwrap_or(1).to_string()),
    ];
    ext.retain(|(_, v)| !v.is_empty() && v != "null");
    let ext: Vec<String> = ext
        .into_iter()
        .map(|(k, v)| format!("{k}={}", cef_value(&v)))
        .collect();
    format!(
        "CEF:0|sovereign|sovereign-agent|{}|{}|{}|{}|{}",
        env!("CARGO_PKG_VERSION"),
        cef_header(r.kind),
        cef_header(&name),
        cef_severity(severity),
        ext.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{convert::to_proto, tests::sample_flow};

    fn origin() -> Origin {
        Origin {
            agent_id: "node-1".into(),
            journal_id: "0123456789abcdef0123456789abcdef".into(),
        }
    }

    #[test]
    fn a_flow_renders_with_its_key_and_identity_in_front() {
        let flow = sample_flow(0);
        let e = to_proto(&Event::Flow(Box::new(flow)), 42);
        let r = render(&origin(), e);
        assert_eq!(r.key, "node-1:0123456789abcdef0123456789abcdef:42");
        assert_eq!(r.json["seq"], 42);
        assert_eq!(r.json["agent_id"], "node-1");
        assert_eq!(r.json["kind"], "connect");
        assert_eq!(r.json["dst_port"], 443);
        assert_eq!(r.json["id"], r.key.as_str());
        assert_eq!(r.json["journal_id"], "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn cef_escapes_what_would_break_its_fields() {
        let mut flow = sample_flow(0);
        flow.comm = "a=b|c\\d".into();
        let e = to_proto(&Event::Flow(Box::new(flow)), 7);
        let line = cef(&render(&origin(), e));
        assert!(
            line.starts_with("CEF:0|sovereign|sovereign-agent|"),
            "{line}"
        );
        assert!(line.contains("sproc=a\\=b|c\\\\d"), "{line}");
        assert!(
            line.contains("externalId=node-1:0123456789abcdef0123456789abcdef:7"),
            "{line}"
        );
        assert!(line.contains("dpt=443"), "{line}");
        // 7 header fields, then the extension.
        assert_eq!(line.split('|').count() - 1, 7 + 1, "{line}");
    }
}

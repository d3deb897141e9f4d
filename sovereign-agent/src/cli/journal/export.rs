//! `sovereign-agent journal export`: records as JSON lines or CSV (cells a spreadsheet cannot
//! take for a formula).
use std::{
    io::{self, Write},
    path::Path,
};

use super::filter::Filter;
use crate::{cli::complain, event::Event, exit, journal::reader};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

pub(super) const CSV_COLUMNS: &[&str] = &[
    "seq",
    "ts",
    "kind",
    "pid",
    "tid",
    "uid",
    "comm",
    "exe",
    "cmdline",
    "cgroup",
    "container_id",
    "pod_uid",
    "systemd_unit",
    "cookie",
    "proto",
    "family",
    "dst_ip",
    "dst_port",
    "src_port",
    "names",
    "name_source",
    "bytes_sent",
    "bytes_received",
    "count",
    "was_established",
    "decision",
    "severity",
    "rule",
    "zones",
    "policy_hash",
    "detail",
];

/// Prints the matching records: JSON lines with the live output's field names plus `seq`,
/// or CSV. Exit 0, 1 when the journal is damaged (what was printed before stays valid), 66
/// not a journal.
pub fn export(dir: &Path, filter: &Filter, format: ExportFormat) -> u8 {
    let out = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
    let mut json_out = None;
    let mut csv_out = None;
    match format {
        ExportFormat::Jsonl => json_out = Some(out),
        ExportFormat::Csv => {
            let mut w = csv::Writer::from_writer(out);
            let _ = w.write_record(CSV_COLUMNS);
            csv_out = Some(w);
        }
    }
    let mut line = Vec::with_capacity(1024);
    let result = reader::for_each_event(
        dir,
        |_| {},
        |seq, event| {
            if !filter.matches(&event) {
                return Ok(());
            }
            let written = if let Some(out) = &mut json_out {
                // `{"seq":N,` and then the event's own object without its opening brace.
                line.clear();
                line.extend_from_slice(format!("{{\"seq\":{seq},").as_bytes());
                let prefix = line.len();
                serde_json::to_writer(&mut line, &event).expect("serializable");
                line.remove(prefix);
                line.push(b'\n');
                out.write_all(&line)
            } else if let Some(w) = &mut csv_out {
                w.write_record(csv_row(seq, &event))
                    .map_err(|e| match e.into_kind() {
                        csv::ErrorKind::Io(e) => e,
                        other => io::Error::other(format!("{other:?}")),
                    })
            } else {
                Ok(())
            };
            written.map_err(|source| crate::journal::JournalError::Io {
                path: "standard output".into(),
                source,
            })
        },
    );
    let flushed = match (json_out, csv_out) {
        (Some(mut o), _) => o.flush(),
        (_, Some(mut w)) => w.flush(),
        _ => Ok(()),
    };
    match result {
        Err(crate::journal::JournalError::Io { source, .. })
            if source.kind() == io::ErrorKind::BrokenPipe =>
        {
            exit::OK
        }
        Err(e) => {
            complain(&e);
            if matches!(e, crate::journal::JournalError::Dir { .. }) {
                exit::NOINPUT
            } else {
                exit::FAILURE
            }
        }
        Ok(()) if flushed.is_err() => exit::FAILURE,
        Ok(()) => exit::OK,
    }
}

pub(super) fn csv_row(seq: u64, event: &Event) -> Vec<String> {
    let mut row = vec![String::new(); CSV_COLUMNS.len()];
    let opt = |v: Option<String>| v.unwrap_or_default();
    let text = |v: Option<&str>| v.unwrap_or_default().to_string();
    row[0] = seq.to_string();
    match event {
        Event::Flow(f) => {
            let json = serde_json::to_value(f.kind).expect("enum");
            row[1] = f.ts.clone();
            row[2] = json.as_str().unwrap_or_default().to_string();
            row[3] = f.pid.to_string();
            row[4] = f.tid.to_string();
            row[5] = f.uid.to_string();
            row[6] = f.comm.clone();
            row[7] = text(f.exe.as_deref());
            row[8] = text(f.cmdline.as_deref());
            row[9] = text(f.cgroup.as_deref());
            row[10] = text(f.container_id.as_deref());
            row[11] = text(f.pod_uid.as_deref());
            row[12] = text(f.systemd_unit.as_deref());
            row[13] = f.cookie.to_string();
            row[14] = serde_json::to_value(f.proto)
                .expect("enum")
                .as_str()
                .unwrap_or_default()
                .into();
            row[15] = serde_json::to_value(f.family)
                .expect("enum")
                .as_str()
                .unwrap_or_default()
                .into();
            row[16] = f.dst_ip.to_string();
            row[17] = f.dst_port.to_string();
            row[18] = opt(f.src_port.map(|p| p.to_string()));
            row[19] = f.names.join(" ");
            row[20] = f.name_source.to_string();
            row[21] = opt(f.bytes_sent.map(|b| b.to_string()));
            row[22] = opt(f.bytes_received.map(|b| b.to_string()));
            row[23] = opt(f.count.map(|b| b.to_string()));
            row[24] = opt(f.was_established.map(|b| b.to_string()));
            if let Some(v) = &f.verdict {
                row[25] = v.decision.to_string();
                row[26] = opt(v.severity.map(|s| s.to_string()));
                row[27] = v.rule.clone();
                row[28] = v.zones.join(" ");
                row[29] = v.policy.hash.clone();
            }
        }
        Event::Loss(l) => {
            row[1] = l.ts.clone();
            row[2] = "loss".into();
            row[30] = format!("lost={}", l.lost);
        }
        Event::Alert(a) => {
            row[1] = a.ts.clone();
            row[2] = "alert".into();
            row[3] = a.flow.pid.to_string();
            row[6] = a.flow.comm.clone();
            row[7] = text(a.flow.exe.as_deref());
            row[16] = a.flow.dst_ip.to_string();
            row[17] = a.flow.dst_port.to_string();
            row[19] = a.flow.names.join(" ");
            row[25] = "violation".into();
            row[26] = opt(a.severity.map(|s| s.to_string()));
            row[27] = a.rule.clone();
            row[30] = format!(
                "count={} first={} last={} workload={} destination={}",
                a.count, a.first, a.last, a.workload, a.destination
            );
        }
        Event::Flood(f) => {
            row[1] = f.ts.clone();
            row[2] = "flood".into();
            row[3] = f.flow.pid.to_string();
            row[6] = f.flow.comm.clone();
            row[7] = text(f.flow.exe.as_deref());
            row[9] = text(f.flow.cgroup.as_deref());
            row[10] = text(f.flow.container_id.as_deref());
            row[12] = text(f.flow.systemd_unit.as_deref());
            row[16] = f.flow.dst_ip.to_string();
            row[17] = f.flow.dst_port.to_string();
            row[30] = format!(
                "scope={} tcp_connects={} udp={} dns_packets={} tls_segments={} process_records={} first={} last={}",
                f.scope,
                f.suppressed.tcp_connects,
                f.suppressed.udp,
                f.suppressed.dns_packets,
                f.suppressed.tls_segments,
                f.suppressed.process_records,
                f.first,
                f.last
            );
        }
        Event::DnsRefused(d) => {
            row[1] = d.ts.clone();
            row[2] = "dns_refused".into();
            row[3] = d.pid.to_string();
            row[6] = d.comm.clone();
            row[7] = text(d.exe.as_deref());
            row[9] = text(d.cgroup.as_deref());
            row[13] = d.cookie.to_string();
            row[19] = d.names.join(" ");
            row[30] = format!(
                "reason={} resolver={} count={} addresses={}",
                d.reason,
                d.resolver,
                d.count,
                d.addresses
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        Event::Lifecycle(l) => {
            let mut json = serde_json::to_value(&l.body).expect("serializable");
            row[1] = l.ts.clone();
            row[2] = json["kind"].as_str().unwrap_or_default().to_string();
            if let Some(obj) = json.as_object_mut() {
                obj.remove("kind");
            }
            row[30] = json.to_string();
        }
    }
    // A cell a spreadsheet would run as a formula (an exe path or name the workload chose
    // beginning with `=`, say) is quoted (`crate::escape`).
    for cell in &mut row {
        if let std::borrow::Cow::Owned(quoted) = crate::escape::csv_cell(cell) {
            *cell = quoted;
        }
    }
    row
}

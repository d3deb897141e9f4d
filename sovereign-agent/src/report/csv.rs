//! The report as CSV for a GRC tool: the egress inventory, one row per workload and
//! destination, with its location, AI provider and verdict counts. (Everything else is in
//! the JSON form.)
use std::io::Write;

use super::model::Report;

const HEADER: [&str; 26] = [
    "agent",
    "workload",
    "exe",
    "systemd_unit",
    "container_id",
    "pod_uid",
    "destination",
    "names",
    "name_sources",
    "address",
    "port",
    "proto",
    "scope",
    "country",
    "eea",
    "adequate",
    "asn",
    "organisation",
    "cloud_provider",
    "cloud_region",
    "ai",
    "first_seen",
    "last_seen",
    "flows",
    "bytes_out",
    "bytes_in",
];

/// Writes the inventory (plus `violations`, `rules` and `zones` columns) as CSV.
pub fn write(report: &Report, out: impl Write) -> std::io::Result<()> {
    let mut w = ::csv::Writer::from_writer(out);
    let mut header = HEADER.to_vec();
    header.extend(["violations", "rules", "zones"]);
    w.write_record(&header)?;
    for r in &report.inventory {
        let l = &r.location;
        let row = [
            r.agent.as_str(),
            &r.workload,
            r.exe.as_deref().unwrap_or(""),
            r.systemd_unit.as_deref().unwrap_or(""),
            r.container_id.as_deref().unwrap_or(""),
            r.pod_uid.as_deref().unwrap_or(""),
            &r.destination,
            &r.names.join(" "),
            &r.name_sources.join(" "),
            &r.address,
            &r.port.to_string(),
            r.proto,
            l.scope,
            l.country.as_deref().unwrap_or(""),
            if r.eea { "true" } else { "false" },
            if r.adequate { "true" } else { "false" },
            &l.asn.map(|a| a.to_string()).unwrap_or_default(),
            l.organisation.as_deref().unwrap_or(""),
            l.cloud.as_ref().map_or("", |c| c.provider),
            l.cloud.as_ref().map_or("", |c| c.region.as_str()),
            r.ai.as_deref().unwrap_or(""),
            &r.first_seen,
            &r.last_seen,
            &r.flows.to_string(),
            &r.bytes_out.to_string(),
            &r.bytes_in.to_string(),
            &r.violations.to_string(),
            &r.rules.join(" "),
            &r.zones.join(" "),
        ];
        // A cell a spreadsheet would run as a formula is quoted (`crate::escape`).
        w.write_record(row.map(|c| crate::escape::csv_cell(c).into_owned()))?;
    }
    w.flush()
}

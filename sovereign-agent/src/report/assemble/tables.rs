//! The inventory grouped for the auditor: by country, by cloud region, outside the allowed
//! places, and the external AI APIs reached.
use std::collections::{BTreeMap, BTreeSet};

use crate::report::{
    locate::{Cloud, Locator},
    model::*,
};

fn place(r: &InventoryRow) -> String {
    match (&r.location.country, r.location.scope) {
        (Some(c), _) => c.clone(),
        (None, "public") => "unknown".to_string(),
        (None, scope) => scope.to_string(),
    }
}

pub(super) fn by_country(rows: &[InventoryRow]) -> Vec<CountryRow> {
    let mut out: BTreeMap<String, Tally<'_, CountryRow>> = BTreeMap::new();
    for r in rows {
        let key = place(r);
        let e = out.entry(key.clone()).or_insert_with(|| {
            (
                CountryRow {
                    country: key,
                    eea: r.eea,
                    adequate: r.adequate,
                    flows: 0,
                    bytes_out: 0,
                    bytes_in: 0,
                    destinations: 0,
                    workloads: 0,
                },
                BTreeSet::new(),
                BTreeSet::new(),
            )
        });
        e.0.flows += r.flows;
        e.0.bytes_out += r.bytes_out;
        e.0.bytes_in += r.bytes_in;
        e.1.insert((&r.address, r.port));
        e.2.insert(&r.workload);
    }
    let mut v: Vec<CountryRow> = out
        .into_values()
        .map(|(mut c, d, w)| {
            c.destinations = d.len() as u64;
            c.workloads = w.len() as u64;
            c
        })
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse((r.bytes_out, r.flows)));
    v
}

pub(super) fn by_region(rows: &[InventoryRow]) -> Vec<RegionRow> {
    let mut out: BTreeMap<(&str, &str), Tally<'_, RegionRow>> = BTreeMap::new();
    for r in rows {
        let Some(c) = &r.location.cloud else { continue };
        let e = out.entry((c.provider, &c.region)).or_insert_with(|| {
            (
                RegionRow {
                    cloud: Cloud {
                        service: String::new(),
                        shared: false,
                        ..c.clone()
                    },
                    flows: 0,
                    bytes_out: 0,
                    bytes_in: 0,
                    destinations: 0,
                },
                BTreeSet::new(),
                BTreeSet::new(),
            )
        });
        e.0.cloud.shared |= c.shared;
        e.0.flows += r.flows;
        e.0.bytes_out += r.bytes_out;
        e.0.bytes_in += r.bytes_in;
        e.1.insert((&r.address, r.port));
        e.2.insert(&c.service);
    }
    let mut v: Vec<RegionRow> = out
        .into_values()
        .map(|(mut row, d, services)| {
            row.destinations = d.len() as u64;
            row.cloud.service = services.into_iter().collect::<Vec<_>>().join(", ");
            row
        })
        .collect();
    v.sort_by_key(|r| std::cmp::Reverse((r.bytes_out, r.flows)));
    v
}

pub(super) fn outside(rows: &[InventoryRow]) -> Vec<OutsideRow> {
    let mut out: BTreeMap<(String, &str, &str), OutsideRow> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.location.scope == "public" && !r.eea && !r.adequate)
    {
        let country = place(r);
        let e = out
            .entry((country.clone(), &r.destination, &r.address))
            .or_insert_with(|| OutsideRow {
                country,
                destination: r.destination.clone(),
                address: r.address.clone(),
                workloads: Vec::new(),
                flows: 0,
                bytes_out: 0,
            });
        if !e.workloads.contains(&r.workload) {
            e.workloads.push(r.workload.clone());
        }
        e.flows += r.flows;
        e.bytes_out += r.bytes_out;
    }
    let mut v: Vec<OutsideRow> = out.into_values().collect();
    v.sort_by_key(|r| std::cmp::Reverse((r.bytes_out, r.flows)));
    v
}

pub(super) fn ai_apis(rows: &[InventoryRow], locator: &Locator) -> Vec<AiRow> {
    let mut out: BTreeMap<(&str, &str, &str), AiRow> = BTreeMap::new();
    for r in rows {
        let Some(e) = r.names.iter().find_map(|n| locator.ai_endpoint(n)) else {
            continue;
        };
        let row = out
            .entry((e.provider, e.host, &r.workload))
            .or_insert_with(|| AiRow {
                provider: e.provider.to_string(),
                provider_name: e.provider_name.to_string(),
                endpoint: e.host.to_string(),
                region: e.region.to_string(),
                workload: r.workload.clone(),
                destinations: Vec::new(),
                name_sources: Vec::new(),
                flows: 0,
                bytes_out: 0,
                bytes_in: 0,
                first_seen: r.first_seen.clone(),
                last_seen: r.last_seen.clone(),
            });
        if !row.destinations.contains(&r.destination) {
            row.destinations.push(r.destination.clone());
        }
        for s in &r.name_sources {
            if !row.name_sources.contains(s) {
                row.name_sources.push(s.clone());
            }
        }
        row.flows += r.flows;
        row.bytes_out += r.bytes_out;
        row.bytes_in += r.bytes_in;
        // RFC 3339 in UTC with the same precision compares as text.
        if r.first_seen < row.first_seen {
            row.first_seen.clone_from(&r.first_seen);
        }
        if r.last_seen > row.last_seen {
            row.last_seen.clone_from(&r.last_seen);
        }
    }
    let mut v: Vec<AiRow> = out.into_values().collect();
    v.sort_by(|a, b| (b.flows, &a.provider).cmp(&(a.flows, &b.provider)));
    v
}

/// A row being summed up, with the distinct destinations (address, port) and names
/// (workloads or services) it has counted so far.
type Tally<'a, R> = (R, BTreeSet<(&'a str, u16)>, BTreeSet<&'a str>);

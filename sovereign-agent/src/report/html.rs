//! The report as one self-contained HTML file (report.html, a minijinja template): no
//! external script, font, style or image, and a Content-Security-Policy that forbids loading
//! any; charts are inline SVG; it prints to PDF from a browser, one section per page.
use std::collections::BTreeMap;

use minijinja::{context, Environment};
use serde::Serialize;

use super::model::Report;

static TEMPLATE: &str = include_str!("report.html");

/// Rows per table in the HTML (all of them are in the JSON and CSV forms).
const ROW_LIMIT: usize = 500;
/// Width in pixels of the longest bar.
const BAR_WIDTH: f64 = 380.0;

#[derive(Serialize)]
struct Bar {
    label: String,
    text: String,
    width: f64,
    colour: &'static str,
}

#[derive(Serialize)]
struct BarChart {
    title: String,
    bars: Vec<Bar>,
}

#[derive(Serialize)]
struct Column {
    start: String,
    count: u64,
    height: f64,
}

#[derive(Serialize, Default)]
struct TimeChart {
    columns: Vec<Column>,
    step: f64,
    bar: f64,
    max: u64,
    first: String,
    last: String,
}

#[derive(Serialize)]
struct Charts {
    top_destinations: BarChart,
    countries: BarChart,
    regions: BarChart,
    over_time: TimeChart,
}

/// Up to 12 bars, the longest `BAR_WIDTH` wide; labels cut to 48 characters.
fn bar_chart(
    title: &str,
    items: Vec<(String, u64, &'static str)>,
    text: fn(u64) -> String,
) -> BarChart {
    let max = items.iter().map(|i| i.1).max().unwrap_or(0).max(1) as f64;
    BarChart {
        title: title.to_string(),
        bars: items
            .into_iter()
            .filter(|i| i.1 > 0)
            .take(12)
            .map(|(label, value, colour)| Bar {
                label: if label.chars().count() > 48 {
                    format!("{}…", label.chars().take(47).collect::<String>())
                } else {
                    label
                },
                text: text(value),
                width: (value as f64 / max * BAR_WIDTH).max(1.0).round(),
                colour,
            })
            .collect(),
    }
}

/// Bytes for people: `1.5 MB` (powers of 1000, as disks and networks count).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// An RFC 3339 time (UTC) as people read it, to the second: `2026-11-28 09:00:00`.
pub fn when(t: &str) -> String {
    match (t.get(..10), t.get(11..19)) {
        (Some(day), Some(time)) if t.as_bytes()[10] == b'T' => format!("{day} {time}"),
        _ => t.to_string(),
    }
}

/// An integer with thousands separators: `1,234,567`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn colour_of(eea: bool, adequate: bool, located: bool) -> &'static str {
    match (eea, adequate, located) {
        (true, _, _) => "#1565c0",
        (_, true, _) => "#00897b",
        (_, _, true) => "#c62828",
        _ => "#9e9e9e",
    }
}

fn charts(r: &Report) -> Charts {
    let mut by_destination: BTreeMap<&str, u64> = BTreeMap::new();
    for i in &r.inventory {
        *by_destination.entry(&i.destination).or_default() += i.bytes_out;
    }
    let mut top: Vec<(String, u64, &str)> = by_destination
        .into_iter()
        .map(|(d, b)| (d.to_string(), b, "#37474f"))
        .collect();
    top.sort_by_key(|t| std::cmp::Reverse(t.1));
    let countries = r
        .by_country
        .iter()
        .map(|c| {
            (
                c.country.clone(),
                c.bytes_out,
                colour_of(c.eea, c.adequate, c.country.len() == 2),
            )
        })
        .collect();
    let mut regions: Vec<(String, u64, &str)> = r
        .by_cloud_region
        .iter()
        .map(|g| {
            (
                format!("{} {}", g.cloud.provider, g.cloud.region),
                g.flows,
                "#6a1b9a",
            )
        })
        .collect();
    regions.sort_by_key(|t| std::cmp::Reverse(t.1));
    let times = &r.verdicts.over_time;
    let max = times.iter().map(|t| t.count).max().unwrap_or(0);
    let step = if times.is_empty() {
        0.0
    } else {
        (720.0 / times.len() as f64).min(40.0)
    };
    Charts {
        top_destinations: bar_chart("Top destinations by bytes sent", top, human_bytes),
        countries: bar_chart("Bytes sent by country", countries, human_bytes),
        regions: bar_chart("Flows by cloud region", regions, grouped),
        over_time: TimeChart {
            columns: times
                .iter()
                .map(|t| Column {
                    start: t.start.clone(),
                    count: t.count,
                    height: (t.count as f64 / max.max(1) as f64 * 150.0).round(),
                })
                .collect(),
            step,
            bar: (step * 0.8).max(1.0),
            max,
            first: times.first().map(|t| t.start.clone()).unwrap_or_default(),
            last: times.last().map(|t| t.start.clone()).unwrap_or_default(),
        },
    }
}

/// Renders the report. The template is part of the binary and checked by tests, so an error
/// here is a bug; it is returned rather than panicking all the same.
pub fn render(r: &Report) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.add_filter("bytes", human_bytes);
    env.add_filter("num", grouped);
    env.add_filter("when", |t: String| when(&t));
    env.add_template("report.html", TEMPLATE)?;
    let agents: Vec<&str> = r.scope.agents.iter().map(|a| a.agent.as_str()).collect();
    let scope_title = match r.scope.agents.as_slice() {
        [] => "no agent".to_string(),
        [one] => one
            .hostnames
            .last()
            .cloned()
            .unwrap_or_else(|| one.agent.clone()),
        many => format!("{} agents", many.len()),
    };
    let bound = |asked: &Option<String>, seen: &Option<String>| {
        asked
            .as_deref()
            .or(seen.as_deref())
            .map_or_else(|| "(no records)".to_string(), when)
    };
    let period_text = format!(
        "{} to {} UTC",
        bound(&r.period.since, &r.period.first_record),
        bound(&r.period.until, &r.period.last_record)
    );
    env.get_template("report.html")?.render(context! {
        r => r,
        charts => charts(r),
        row_limit => ROW_LIMIT,
        multi_agent => agents.len() > 1,
        scope_title => scope_title,
        period_text => period_text,
        outside_count => r.outside.len(),
        has_cloud => r.scope.datasets_used.iter().any(|d| matches!(d.kind.as_str(), "aws" | "azure" | "gcp" | "oracle")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(100), "100");
        assert_eq!(
            when("2026-11-28T09:00:01.123456789Z"),
            "2026-11-28 09:00:01"
        );
        assert_eq!(when("2026-11-28T09:00:01Z"), "2026-11-28 09:00:01");
        assert_eq!(when("soon"), "soon");
    }
}

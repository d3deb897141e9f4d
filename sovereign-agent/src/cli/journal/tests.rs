use super::{
    export::{csv_row, CSV_COLUMNS},
    filter::*,
};
use crate::event::Event;
use crate::journal::{convert, tests::sample_event};

#[test]
fn a_workload_chosen_formula_is_no_formula_in_the_csv_export() {
    // Issue 31, finding 6: an executable called `=HYPERLINK(...)` becomes a clickable
    // link (or worse) when the export is opened in a spreadsheet.
    let mut f = crate::journal::tests::sample_flow(1);
    f.exe = Some("=HYPERLINK(\"https://evil.example/\",\"open\")".into());
    f.comm = "@SUM(1)".into();
    let row = csv_row(7, &Event::Flow(Box::new(f)));
    let cell = |name: &str| &row[CSV_COLUMNS.iter().position(|c| *c == name).unwrap()];
    assert_eq!(
        cell("exe"),
        "'=HYPERLINK(\"https://evil.example/\",\"open\")"
    );
    assert_eq!(cell("comm"), "'@SUM(1)");
    assert_eq!(cell("seq"), "7");
}

fn compile(f: FilterArgs) -> Filter {
    f.compile().unwrap()
}

#[test]
fn times_are_rfc3339_dates_or_unix_seconds() {
    assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
    assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000_000_000);
    assert_eq!(parse_time("90").unwrap(), 90_000_000_000);
    assert_eq!(
        parse_time("2026-11-28T10:00:00+01:00").unwrap(),
        parse_time("2026-11-28T09:00:00Z").unwrap()
    );
    let now = 1_795_824_000_000_000_000;
    assert_eq!(
        parse_time_at("7d", now).unwrap(),
        now - 7 * 86_400 * 1_000_000_000
    );
    assert_eq!(
        parse_time_at("90m", now).unwrap(),
        now - 5_400 * 1_000_000_000
    );
    assert!(parse_time_at("-3d", now).is_err());
    assert!(parse_time_at("d", now).is_err());
    let e = parse_time("yesterday").unwrap_err();
    assert!(e.contains("\"yesterday\" is not a time"), "{e}");
}

#[test]
fn bad_arguments_name_their_flag() {
    let err = |f: FilterArgs| f.compile().unwrap_err();
    assert!(err(FilterArgs {
        since: Some("soon".into()),
        ..Default::default()
    })
    .starts_with("--since: "));
    assert!(err(FilterArgs {
        verdict: Some("deny".into()),
        ..Default::default()
    })
    .starts_with("--verdict \"deny\""));
    assert!(err(FilterArgs {
        exe: Some("[".into()),
        ..Default::default()
    })
    .starts_with("--exe \"[\""));
}

/// Export filters events, replay filters borrowed views of the same records: for every
/// record and every filter, both must say the same.
#[test]
fn events_and_views_of_the_same_records_match_the_same_filters() {
    let filters = [
        FilterArgs::default(),
        FilterArgs {
            pids: vec![1003],
            ..Default::default()
        },
        FilterArgs {
            exe: Some("/usr/bin/python*".into()),
            ..Default::default()
        },
        FilterArgs {
            dst: Some("203.0.113.0/24".into()),
            ..Default::default()
        },
        FilterArgs {
            dst: Some("2001:db8::17".into()),
            ..Default::default()
        },
        FilterArgs {
            dst: Some("*.openai.com".into()),
            ..Default::default()
        },
        FilterArgs {
            verdict: Some("violation".into()),
            ..Default::default()
        },
        FilterArgs {
            verdict: Some("none".into()),
            ..Default::default()
        },
        // The sample's flows are 1 ms apart from 2026-11-28T00:00:00Z.
        FilterArgs {
            since: Some("1795824000".into()),
            until: Some("2026-11-28T00:00:00.05Z".into()),
            ..Default::default()
        },
    ];
    let mut matched = vec![0; filters.len()];
    for i in 0..200 {
        let event = sample_event(i);
        let mut bytes = Vec::new();
        convert::encode(&event, &mut bytes);
        let view = convert::flow_view(&bytes).unwrap();
        for (n, args) in filters.iter().enumerate() {
            let filter = args.compile().unwrap();
            let by_event = filter.matches(&event);
            if let Some(v) = &view {
                assert_eq!(by_event, filter.matches_view(v), "record {i}, filter {n}");
            }
            matched[n] += usize::from(by_event);
        }
    }
    // Each filter keeps some records and drops others (the sample has both kinds).
    for (n, count) in matched.iter().enumerate().skip(1) {
        assert!(
            *count > 0 && *count < 200,
            "filter {n} matched {count} of 200"
        );
    }
    assert_eq!(matched[0], 200, "no filter keeps everything");
}

#[test]
fn flow_filters_drop_records_that_are_not_flows_time_bounds_do_not() {
    let loss = sample_event(7);
    assert!(loss.as_flow().is_none());
    let ts = loss.ts_unix_ns();
    assert!(compile(FilterArgs::default()).matches(&loss));
    assert!(!compile(FilterArgs {
        pids: vec![1000],
        ..Default::default()
    })
    .matches(&loss));
    let mut around = compile(FilterArgs::default());
    around.since_ns = Some(ts);
    around.until_ns = Some(ts + 1);
    assert!(around.matches(&loss), "since is inclusive");
    around.until_ns = Some(ts);
    assert!(!around.matches(&loss), "until is exclusive");
}

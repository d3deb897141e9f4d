//! The naming stage's figures: DNS queries and answers, refused answers, the name map.
use super::exposition::Exposition;

/// Naming: DNS queries and answers (verified, untrusted, refused by reason), the tables'
/// sizes and per-cgroup evictions, ClientHellos.
pub(super) fn render(out: &mut Exposition, n: &crate::names::NamesSnapshot) {
    let st = &n.stats;
    out.counter(
        "sovereign_agent_dns_queries_total",
        "DNS queries sent by watched sockets.",
        &[(vec![], st.dns_queries as f64)],
    );
    out.counter(
        "sovereign_agent_dns_answers_total",
        "DNS answers received by watched sockets: verified (own query, trusted resolver), \
         untrusted (own query, other resolver: names kept as claims), refused (not used).",
        &[
            (vec![("result", "verified")], st.dns_verified as f64),
            (vec![("result", "untrusted")], st.dns_untrusted as f64),
            (vec![("result", "refused")], st.dns_refused as f64),
        ],
    );
    out.counter(
        "sovereign_agent_dns_foreign_netns_answers_total",
        "Answers from a trusted loopback resolver address to a query asked in another network \
         namespace than the trusted one (that namespace's own resolver): names kept as claims.",
        &[(vec![], st.dns_foreign_netns as f64)],
    );
    let reasons: Vec<(Vec<(&str, &str)>, f64)> = st
        .refused_by_reason
        .iter()
        .map(|(r, c)| (vec![("reason", *r)], *c as f64))
        .collect();
    out.counter(
        "sovereign_agent_dns_refused_total",
        "DNS answers refused for naming, by reason (an attack signal; see dns_refused events).",
        &reasons,
    );
    out.counter(
        "sovereign_agent_dns_malformed_total",
        "DNS messages that could not be parsed (skipped).",
        &[(vec![], st.dns_malformed as f64)],
    );
    out.counter(
        "sovereign_agent_dns_served_total",
        "DNS answers sent by processes of the watched cgroup.",
        &[(vec![], st.dns_served as f64)],
    );
    out.gauge(
        "sovereign_agent_dns_queries_outstanding",
        "DNS queries waiting for their answer.",
        &[(vec![], n.queries_outstanding as f64)],
    );
    out.counter(
        "sovereign_agent_dns_queries_not_recorded_total",
        "DNS queries not recorded because the query table or the cgroup's share was full \
         (their answers verify nothing).",
        &[(vec![], n.queries_not_recorded as f64)],
    );
    out.gauge(
        "sovereign_agent_named_addresses",
        "(cgroup, address) entries with names.",
        &[(vec![], n.named_addresses as f64)],
    );
    let ids: Vec<String> = n.evictions.iter().map(|(c, _)| c.to_string()).collect();
    let evictions: Vec<(Vec<(&str, &str)>, f64)> = n
        .evictions
        .iter()
        .zip(&ids)
        .map(|((_, count), id)| (vec![("cgroup_id", id.as_str())], *count as f64))
        .collect();
    out.counter(
        "sovereign_agent_name_evictions_total",
        "Named addresses forgotten for lack of room, by the cgroup that lost them.",
        &evictions,
    );
    out.counter(
        "sovereign_agent_tls_client_hellos_total",
        "ClientHellos read: named (a server name), unreadable (malformed, cut, or split into \
         more segments than are copied).",
        &[
            (vec![("result", "named")], st.sni_names as f64),
            (vec![("result", "unreadable")], st.tls_unreadable as f64),
        ],
    );
}

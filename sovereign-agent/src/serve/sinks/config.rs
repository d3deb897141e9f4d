//! `[[sink]]` entries: where events go besides the journal, each with its own filter and
//! durable cursor (docs/sinks.md).
use serde::{Deserialize, Serialize};
use sovereign_agent_proto::agent::v1 as pb;

use super::registry::SinkKind;

/// One `[[sink]]`. (No `deny_unknown_fields` here: serde cannot combine it with `flatten`;
/// the type's own struct denies unknown keys, and it gets every key this one does not take.)
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct SinkConfig {
    /// Names the sink in metrics, status and logs, and its cursor file; unique.
    pub name: String,
    #[serde(flatten)]
    pub kind: SinkKind,
    /// Which events go to this sink: the API's filter (docs/api.md). Default: alerts only.
    #[serde(default)]
    pub filter: SinkFilter,
    /// Events per batch at most (a batch is acknowledged as a whole before the cursor moves).
    #[serde(default = "default_batch")]
    pub batch: usize,
}

fn default_batch() -> usize {
    500
}

impl SinkConfig {
    /// Whether this entry can run: its batch, its filter and its type's own settings. (Its
    /// name, unique among the others, and the journal it needs are the configuration's.)
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("batch: must be at least 1".into());
        }
        self.filter
            .to_proto()
            .and_then(|f| crate::journal::feed::filter::EventFilter::compile(&f).map(|_| ()))?;
        self.kind.validate()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SinkFilter {
    /// Event kinds (alert, connect, send, established, close, flood, dns_refused, ...).
    pub kinds: Vec<String>,
    /// `allow` or `violation`: flows (and alerts) with this decision.
    pub verdict: Option<String>,
    /// info, low, medium, high or critical: flows at least this severe.
    pub min_severity: Option<String>,
    /// Glob on the workload (unit, container, exe, comm).
    pub workload: Option<String>,
    /// Address, CIDR or name glob of the destination.
    pub destination: Option<String>,
}

impl Default for SinkFilter {
    fn default() -> Self {
        SinkFilter {
            kinds: vec!["alert".into()],
            verdict: None,
            min_severity: None,
            workload: None,
            destination: None,
        }
    }
}

impl SinkFilter {
    /// As the API's filter message (compiled and checked by `EventFilter::compile`).
    pub fn to_proto(&self) -> Result<pb::EventFilter, String> {
        let min_severity = match self.min_severity.as_deref() {
            None => pb::Severity::Unspecified,
            Some("info") => pb::Severity::Info,
            Some("low") => pb::Severity::Low,
            Some("medium") => pb::Severity::Medium,
            Some("high") => pb::Severity::High,
            Some("critical") => pb::Severity::Critical,
            Some(other) => {
                return Err(format!(
                    "filter.min_severity {other:?}: expected info, low, medium, high or critical"
                ))
            }
        };
        Ok(pb::EventFilter {
            kinds: self.kinds.clone(),
            verdict: self.verdict.clone().unwrap_or_default(),
            min_severity: min_severity as i32,
            workload: self.workload.clone().unwrap_or_default(),
            destination: self.destination.clone().unwrap_or_default(),
        })
    }
}

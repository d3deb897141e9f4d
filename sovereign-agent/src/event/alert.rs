//! The alert event: violations of one workload, destination and rule, folded.
use serde::Serialize;

use super::flow::*;

/// An alert (JSON `kind: "alert"`): violations of one (workload, destination, rule), folded
/// by [`crate::alerts::AlertFolder`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertEvent {
    pub ts: String,
    #[serde(skip)]
    pub ts_unix_ns: i64,
    pub kind: &'static str,
    pub severity: Option<crate::policy::Severity>,
    pub rule: String,
    pub workload: String,
    pub destination: String,
    /// Violations this alert stands for.
    pub count: u64,
    pub first: String,
    pub last: String,
    #[serde(skip)]
    pub first_unix_ns: i64,
    #[serde(skip)]
    pub last_unix_ns: i64,
    /// The flow that raised it (the first, or the last of the folded repeats).
    pub flow: Box<FlowEvent>,
}

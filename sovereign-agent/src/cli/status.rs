//! `sovereign-agent status`: the agent's (or collector's) `GetStatus`, as text or JSON.
use clap::Args;
use sovereign_agent_proto::agent::v1 as pb;

use super::{
    client::{client_runtime, connect_to, Target, TargetFlags},
    complain,
};
use crate::exit;

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetFlags,
    #[arg(long)]
    json: bool,
}

pub fn execute_status(args: &StatusArgs) -> u8 {
    client_runtime().block_on(status(&args.target.target(), args.json))
}

/// `sovereign-agent status`: the agent's `GetStatus`, as text or JSON.
pub async fn status(target: &Target, json: bool) -> u8 {
    let mut client = match connect_to(target).await {
        Ok(c) => c,
        Err(e) => {
            complain(e);
            return exit::UNAVAILABLE;
        }
    };
    let s = match client.get_status(pb::GetStatusRequest {}).await {
        Ok(r) => r.into_inner(),
        Err(e) => {
            eprintln!("sovereign-agent: GetStatus failed: {}", e.message());
            return exit::FAILURE;
        }
    };
    if json {
        let policy = s
            .policy
            .as_ref()
            .map(|p| serde_json::json!({"name": p.name, "version": p.version, "hash": p.hash}));
        let v = serde_json::json!({
            "version": s.version, "hostname": s.hostname, "cgroup": s.cgroup,
            "hooks": s.hooks, "hooks_failed": s.hooks_failed, "policy": policy,
            "started": crate::clock::rfc3339_from_unix_ns(i128::from(s.started_unix_ns)),
            "events": s.events, "kernel_losses": s.kernel_losses,
            "decode_errors": s.decode_errors, "subscribers": s.subscribers,
            "journal_dir": s.journal_dir, "journal_next_seq": s.journal_next_seq,
            "not_journaled": s.not_journaled,
            "sinks": s.sinks.iter().map(|k| serde_json::json!({
                "name": k.name, "type": k.r#type, "delivered": k.delivered,
                "backlog": k.backlog, "lag_seconds": k.lag_seconds, "errors": k.errors,
                "connected": k.connected, "last_error": k.last_error,
            })).collect::<Vec<_>>(),
            "agents": s.agents.iter().map(|a| serde_json::json!({
                "agent_id": a.agent_id, "journal_id": a.journal_id, "last_seq": a.last_seq,
                "last_seen": (a.last_seen_unix_ns != 0)
                    .then(|| crate::clock::rfc3339_from_unix_ns(i128::from(a.last_seen_unix_ns))),
                "journal_next_seq": a.journal_next_seq, "backlog": a.backlog,
                "connected": a.connected,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    } else {
        println!("sovereign-agent {} on {}", s.version, s.hostname);
        println!("  watching      {}", s.cgroup);
        println!("  hooks         {}", s.hooks.join(", "));
        if !s.hooks_failed.is_empty() {
            println!("  NOT attached  {}", s.hooks_failed.join(", "));
        }
        match &s.policy {
            Some(p) => println!(
                "  policy        {} version {} ({})",
                p.name, p.version, p.hash
            ),
            None => println!("  policy        none"),
        }
        println!(
            "  events        {} (kernel losses {}, decode errors {})",
            s.events, s.kernel_losses, s.decode_errors
        );
        println!(
            "  journal       {} next seq {} (not journaled {})",
            s.journal_dir, s.journal_next_seq, s.not_journaled
        );
        println!("  subscribers   {}", s.subscribers);
        for k in &s.sinks {
            let state = if k.connected {
                "connected".to_string()
            } else if k.last_error.is_empty() {
                "not connected".to_string()
            } else {
                format!("NOT connected: {}", k.last_error)
            };
            println!(
                "  sink          {} ({}) delivered {} backlog {} lag {:.3}s errors {}, {state}",
                k.name, k.r#type, k.delivered, k.backlog, k.lag_seconds, k.errors
            );
        }
        for a in &s.agents {
            let seen = if a.last_seen_unix_ns == 0 {
                "not since start".to_string()
            } else {
                crate::clock::rfc3339_from_unix_ns(i128::from(a.last_seen_unix_ns))
            };
            println!(
                "  agent         {} journal {} last seq {} head {} backlog {} seen {seen}{}",
                a.agent_id,
                a.journal_id,
                a.last_seq,
                a.journal_next_seq,
                a.backlog,
                if a.connected { ", connected" } else { "" }
            );
        }
    }
    exit::OK
}

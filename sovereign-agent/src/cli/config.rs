//! `sovereign-agent config check`: everything `run` checks before it loads a program.
use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::complain;
use crate::{config::Config, exit, policy::Policy};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Check FILE with the SOVEREIGN_* environment applied, as `run` would see it: keys,
    /// types, values, and the files it names (policy compiled, TLS files, signing key).
    /// Prints the effective configuration; exit 64 on the first problem.
    Check { file: Option<PathBuf> },
}

impl ConfigCommand {
    pub fn execute(self) -> u8 {
        let ConfigCommand::Check { file } = self;
        match check(file.as_deref()) {
            Ok(config) => {
                let origin = file.as_deref().map_or_else(
                    || "built-in defaults".to_string(),
                    |f| f.display().to_string(),
                );
                println!("# {origin}: valid; the effective configuration:");
                print!("{}", toml::to_string(&config).unwrap_or_default());
                exit::OK
            }
            Err(e) => {
                complain(e);
                exit::USAGE
            }
        }
    }
}

fn check(file: Option<&Path>) -> Result<Config, String> {
    let (config, unknown) =
        Config::load_layered(file, std::env::vars()).map_err(|e| e.to_string())?;
    warn_unknown_variables(&unknown);
    config.check_files().map_err(|e| e.to_string())?;
    if let Some(policy) = &config.policy {
        Policy::load(policy, config.datasets.as_deref()).map_err(|e| e.to_string())?;
    }
    Ok(config)
}

/// Logging is not set up yet when the configuration is read: straight to stderr.
pub(super) fn warn_unknown_variables(unknown: &[String]) {
    for name in unknown {
        eprintln!(
            "sovereign-agent: warning: environment variable {name} is not a setting \
             (docs/configuration.md lists them); ignored"
        );
    }
}

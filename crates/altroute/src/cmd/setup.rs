//! `altroute setup --config FILE [--dry-run]`: make the kernel silent on the router's ports,
//! printing each command, then verify with the start-up kernel check.

use std::path::PathBuf;
use std::process::ExitCode;

use altroute::config::Config;
use altroute::{kernel, setup};

/// Arguments of `setup`.
#[derive(clap::Args)]
pub struct Args {
    /// The YAML configuration file.
    #[arg(long)]
    config: PathBuf,
    /// Print the commands without running them.
    #[arg(long)]
    dry_run: bool,
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let cfg = Config::load(&self.config).map_err(|e| anyhow::anyhow!("{e}"))?;
        for step in setup::plan(&cfg) {
            println!("{step}");
            if self.dry_run {
                continue;
            }
            if let Some(warning) = setup::execute(&step)? {
                eprintln!("warning: {warning}");
            }
        }
        if self.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        match kernel::kernel_check_path(&cfg, &self.config) {
            Ok(()) => {
                println!("ok: the kernel is silent on every port");
                Ok(ExitCode::SUCCESS)
            }
            Err(problems) => {
                for p in problems {
                    eprintln!("{p}");
                }
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

//! `altroute check-config --config FILE` (`check-config FILE` still works): parse and validate, print a summary or every error with its key
//! path and line; with `--kernel` also the start-up kernel check.

use std::path::PathBuf;
use std::process::ExitCode;

use altroute::config::Config;
use altroute::kernel;

/// Arguments of `check-config`.
#[derive(clap::Args)]
pub struct Args {
    /// The YAML configuration file.
    #[arg(long, required_unless_present = "file")]
    config: Option<PathBuf>,
    /// The file as a positional argument (the older spelling of `--config`).
    #[arg(hide = true, conflicts_with = "config")]
    file: Option<PathBuf>,
    /// Also check that the kernel is silent on the ports (what `run` checks at start-up).
    #[arg(long)]
    kernel: bool,
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Some(file) = self.config.or(self.file) else {
            anyhow::bail!("check-config: --config FILE is required");
        };
        match Config::load(&file) {
            Ok(c) => {
                println!("ok: {}", c.summary());
                if self.kernel {
                    if let Err(problems) = kernel::kernel_check_path(&c, &file) {
                        for p in &problems {
                            eprintln!("{p}");
                        }
                        eprintln!("kernel: {} problem(s)", problems.len());
                        return Ok(ExitCode::FAILURE);
                    }
                    println!("ok: the kernel is silent on every port");
                }
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{}: {} error(s)", file.display(), e.diagnostics.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

//! `altroute replay`: run the packet pipeline over pcap/pcapng captures and write what leaves
//! each port as `<out-dir>/<port>.pcap`, then print a summary (see [`altroute::replay`]).

use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `replay`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    args: altroute::replay::ReplayArgs,
}

impl Args {
    /// Runs the command.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (cfg, opts) = self.args.resolve()?;
        let report = altroute::replay::replay(&cfg, &opts)?;
        let files = report
            .write(&self.args.out_dir)
            .with_context(|| format!("writing to {}", self.args.out_dir.display()))?;
        print!("{}", report.summary());
        for f in files {
            println!("wrote {}", f.display());
        }
        Ok(ExitCode::SUCCESS)
    }
}

//! `altroute`: the multi-WAN NAT router's command line. Each subcommand lives in `cmd/`; adding one
//! is one line in the `commands!` list below (its args type has `fn run(self) -> Result<ExitCode>`).

mod cmd;

use std::process::ExitCode;

use clap::Parser;

/// Declares the subcommand enum and its dispatch from one list.
macro_rules! commands {
    ($( $(#[$meta:meta])* $variant:ident($args:ty), )*) => {
        #[derive(clap::Subcommand)]
        enum Command {
            $( $(#[$meta])* $variant($args), )*
        }

        impl Command {
            fn run(self) -> anyhow::Result<ExitCode> {
                match self {
                    $( Command::$variant(args) => args.run(), )*
                }
            }
        }
    };
}

commands! {
    /// Show the router at work in a throw-away netns lab: traffic, split, failover, failback.
    Demo(cmd::demo::Args),
    /// Parse and validate a configuration file.
    CheckConfig(cmd::check_config::Args),
    /// Make the kernel silent on the router's ports (addresses, IPv6, forwarding, offloads).
    Setup(cmd::setup::Args),
    /// Build, break (fault injection) or remove the network-namespace lab.
    Lab(cmd::lab::Args),
    /// Run the router.
    Run(cmd::run::Args),
    /// Replay pcap/pcapng captures through the packet pipeline (no root): one pcap out per port.
    Replay(cmd::replay::Args),
    /// Print the shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Args),
    /// Print the manual page (roff), or write every page into a directory.
    Man(cmd::man::Args),
    /// Lab traffic tools (whoami server and client), run inside lab namespaces.
    #[command(hide = true)]
    LabTool(cmd::lab_tool::Args),
}

/// altroute: a userspace multi-WAN NAT router.
#[derive(Parser)]
#[command(name = "altroute", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> ExitCode {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    altroute::logging::format(&mut logger);
    logger.init();
    match Cli::parse().command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

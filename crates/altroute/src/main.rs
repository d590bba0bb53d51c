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
    /// Show the running router: version, uptime, mode, flows, drops, latest transitions.
    Status(cmd::client::Status),
    /// Show each gateway: state and why, RTT, loss, flows, traffic.
    Gateways(cmd::client::Gateways),
    /// List the flows (paged), by client or gateway.
    Flows(cmd::client::Flows),
    /// Explain which gateway a 5-tuple's flow takes, and why.
    Explain(cmd::client::Explain),
    /// Send new connections to this gateway while it is usable.
    Force(cmd::client::Force),
    /// Stop forcing this gateway.
    Release(cmd::client::Release),
    /// Use this gateway again.
    Enable(cmd::client::Enable),
    /// Stop using this gateway (its flows are treated as on a dead gateway).
    Disable(cmd::client::Disable),
    /// Pin a LAN host to a gateway.
    Pin(cmd::client::Pin),
    /// Remove a LAN host's pin.
    Unpin(cmd::client::Unpin),
    /// Switch the mode: load-balance, failover or manual.
    Mode(cmd::client::Mode),
    /// Re-read the configuration file (as SIGHUP).
    Reload(cmd::client::Reload),
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
    altroute::logging::init();
    match Cli::parse().command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

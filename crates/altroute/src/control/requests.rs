//! What the API asks of the control thread, and how the control thread answers: a snapshot of
//! the router, the operator's commands (force, release, enable, disable, mode, pin, unpin) and
//! reloads.
//!
//! Every command edits a copy of the configuration in force, which is then validated as a file
//! would be and applied as a reload is (`Control::apply`): the operator's changes and the
//! file's go through one path. They last until the next reload, which applies the file as it is
//! (like the runtime changes of most daemons): to keep one, write it into the file.

use std::net::IpAddr;

use log::{error, info};
use tokio::sync::oneshot;

use super::Control;
use super::reload;
use crate::api::model;
use crate::config::{self, Cidr, Config};
use crate::worker::{Inspect, ToWorker};

/// A request from the API thread, with where to send the answer.
#[derive(Debug)]
pub enum Request {
    /// The router as it is now.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Do something.
    Command(Command, oneshot::Sender<Result<Applied, CommandError>>),
}

/// A command carried out: what was done, and one receiver per worker that fires once the worker
/// has applied it (it takes control messages between batches): a caller that waits for them
/// knows that the next new connection sees the change.
#[derive(Debug)]
pub struct Applied {
    /// What was done.
    pub message: String,
    /// Each worker's acknowledgement.
    pub workers: Vec<oneshot::Receiver<()>>,
}

/// An operator command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Send new connections to this gateway (`policy.force`).
    Force(String),
    /// Stop forcing this gateway.
    Release(String),
    /// Use this gateway again (`enabled: true`).
    Enable(String),
    /// Stop using this gateway (`enabled: false`): its flows are treated as on a dead gateway.
    Disable(String),
    /// Switch `policy.mode`.
    Mode(config::Mode),
    /// Pin one client to a gateway.
    Pin {
        /// The client.
        client: IpAddr,
        /// The gateway.
        gateway: String,
    },
    /// Remove a client's pin.
    Unpin(IpAddr),
    /// Re-read the configuration file.
    Reload,
}

/// Why a command was not carried out.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CommandError {
    /// No such gateway or pin.
    #[error("{0}")]
    NotFound(String),
    /// Not possible in the state the router is in (the message says what to do first).
    #[error("{0}")]
    Conflict(String),
    /// The configuration file is bad: nothing changed.
    #[error("{message}")]
    BadConfig {
        /// What happened.
        message: String,
        /// Each problem, with key path and line.
        problems: Vec<model::Problem>,
    },
}

/// Everything the API serves about the router, taken at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The summary.
    pub status: model::Status,
    /// The gateways.
    pub gateways: Vec<model::Gateway>,
    /// Drops by reason, every reason (zero included), in [`altroute_packet::DropReason::ALL`]
    /// order.
    pub drops: Vec<(&'static str, u64)>,
}

impl Control {
    /// Answers every request waiting. Returns whether something changed that the status file
    /// should show now.
    pub(super) fn requests(&mut self) -> bool {
        let mut changed = false;
        while let Ok(r) = self.requests.try_recv() {
            match r {
                Request::Snapshot(reply) => {
                    let _ = reply.send(self.snapshot());
                }
                Request::Command(c, reply) => {
                    let r = self.command(c).map(|message| Applied {
                        message,
                        workers: self.acknowledgements(),
                    });
                    changed |= r.is_ok();
                    let _ = reply.send(r);
                }
            }
        }
        changed
    }

    /// Asks every worker to acknowledge the messages sent so far.
    fn acknowledgements(&self) -> Vec<oneshot::Receiver<()>> {
        self.workers
            .to
            .iter()
            .map(|to| {
                let (tx, rx) = oneshot::channel();
                let _ = to.send(ToWorker::Inspect(Inspect(Box::new(move |_, _, _| {
                    let _ = tx.send(());
                }))));
                rx
            })
            .collect()
    }

    fn gateway_index(&self, name: &str) -> Result<usize, CommandError> {
        self.cfg.gateway_index(name).ok_or_else(|| {
            let known: Vec<&str> = self.cfg.gateways.iter().map(|g| g.name.as_str()).collect();
            CommandError::NotFound(format!(
                "no gateway named {name:?} (known: {})",
                known.join(", ")
            ))
        })
    }

    /// Carries out one command.
    pub(super) fn command(&mut self, c: Command) -> Result<String, CommandError> {
        if c == Command::Reload {
            return self.reload();
        }
        let mut new = self.cfg.clone();
        let message = match &c {
            Command::Force(g) => {
                self.gateway_index(g)?;
                new.policy.force = Some(g.clone());
                format!("new connections go to {g} while it is usable")
            }
            Command::Release(g) => {
                self.gateway_index(g)?;
                if new.policy.force.as_deref() != Some(g) {
                    return Err(CommandError::Conflict(format!("{g} is not forced")));
                }
                new.policy.force = None;
                format!("{g} released: new connections follow the policy")
            }
            Command::Enable(g) | Command::Disable(g) => {
                let i = self.gateway_index(g)?;
                let on = matches!(c, Command::Enable(_));
                if let Some(gw) = new.gateways.get_mut(i) {
                    gw.enabled = on;
                }
                format!("{g} {}", if on { "enabled" } else { "disabled" })
            }
            Command::Mode(m) => {
                new.policy.mode = *m;
                format!("mode {}", m.name())
            }
            Command::Pin { client, gateway } => {
                self.gateway_index(gateway)?;
                let host = Cidr::host(*client);
                new.pins.retain(|p| p.client != host);
                new.pins.push(config::Pin {
                    client: host,
                    gateway: gateway.clone(),
                });
                format!("{client} pinned to {gateway}")
            }
            Command::Unpin(client) => {
                let host = Cidr::host(*client);
                let before = new.pins.len();
                new.pins.retain(|p| p.client != host);
                if new.pins.len() == before {
                    return Err(CommandError::NotFound(format!("{client} is not pinned")));
                }
                format!("{client} unpinned")
            }
            Command::Reload => String::new(),
        };
        if let Err(issues) = new.validate() {
            let why: Vec<String> = issues
                .iter()
                .map(|i| format!("{}: {}", i.path, i.message))
                .collect();
            return Err(CommandError::Conflict(format!(
                "refused: {}",
                why.join("; ")
            )));
        }
        info!("operator: {message}");
        self.apply(new);
        Ok(message)
    }

    /// Re-reads the configuration file: applied when it is valid and changes only what a
    /// running router can take, refused (nothing changes) otherwise.
    pub(super) fn reload(&mut self) -> Result<String, CommandError> {
        let r = self.try_reload();
        let t = super::now_of(self.epoch).millis();
        match &r {
            Ok(m) => {
                info!("reload: {m}");
                self.last_reload = Some(format!("at {t} ms: {m}"));
            }
            Err(e) => {
                error!("reload refused, the configuration in force stays: {e}");
                if let CommandError::BadConfig { problems, .. } = e {
                    for p in problems {
                        error!(
                            "  {}{}: {}",
                            p.line.map_or(String::new(), |l| format!("line {l}: ")),
                            p.path,
                            p.message
                        );
                    }
                }
                self.last_reload = Some(format!("at {t} ms: refused: {e}"));
            }
        }
        r
    }

    fn try_reload(&mut self) -> Result<String, CommandError> {
        let new = Config::load(&self.config_path).map_err(|e| CommandError::BadConfig {
            message: format!("{} is not valid", e.file),
            problems: e
                .diagnostics
                .iter()
                .map(|d| model::Problem {
                    path: d.path.clone(),
                    line: d.pos.map(|p| p.line),
                    column: d.pos.map(|p| p.column),
                    message: d.message.clone(),
                })
                .collect(),
        })?;
        let restart = reload::restart_keys(&self.file, &new);
        if !restart.is_empty() {
            return Err(CommandError::Conflict(format!(
                "{} changes what a running router cannot: {} (restart the router to apply them)",
                self.config_path.display(),
                restart.join(", ")
            )));
        }
        let token = super::read_token(&new).map_err(CommandError::Conflict)?;
        let changed = reload::changed_keys(&self.cfg, &new);
        self.file = new.clone();
        if let Ok(mut t) = self.token.write() {
            *t = token;
        }
        self.apply(new);
        Ok(if changed.is_empty() {
            format!("{}: nothing changed", self.config_path.display())
        } else {
            format!(
                "{}: applied {}",
                self.config_path.display(),
                changed.join(", ")
            )
        })
    }
}

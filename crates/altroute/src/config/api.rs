//! The `api:` section: where the daemon's HTTP API (and its web page and metrics) listens, and
//! the bearer token that guards it on a TCP address.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The default Unix socket of the API (the CLI's default too).
pub const DEFAULT_SOCKET: &str = "/run/altroute/altroute.sock";

/// The HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The Unix socket (created mode 0600, its directory created if missing).
    #[serde(default = "d_socket")]
    pub socket: PathBuf,
    /// A TCP address as well (`IP:PORT`), if any.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// A file holding the bearer token that TCP clients must send (required when `listen` is
    /// not a loopback address).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl Default for Api {
    fn default() -> Self {
        Self {
            socket: d_socket(),
            listen: None,
            token_file: None,
        }
    }
}

fn d_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

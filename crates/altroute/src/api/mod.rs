//! The daemon's HTTP API, its web page and its Prometheus metrics.
//!
//! # Why axum on a current-thread tokio runtime in its own thread
//!
//! The API is a handful of small JSON requests a minute, and it must never slow the packet
//! path: so one thread of its own, with tokio's single-threaded runtime (no worker pool, no
//! work stealing) and axum (tokio's own HTTP framework, on hyper: the most used and reviewed
//! HTTP stack in Rust, Unix sockets and TCP alike, routing and JSON extraction included). The
//! datapath threads never see it: the API reaches the control thread and the workers only
//! through their channels ([`crate::control::Request`], [`crate::worker::ToWorker`]), and a
//! worker answers a question between two batches.
//!
//! # Where it listens, and who may talk
//!
//! A Unix socket (`api.socket`, default `/run/altroute/altroute.sock`; its directory is
//! created, the socket is mode 0600: root only; the CLI's default), and optionally a TCP
//! address (`api.listen`). Over TCP, with `api.token_file` set, every `/api/` request and
//! `/metrics` needs `Authorization: Bearer TOKEN`; the configuration refuses a non-loopback
//! `listen` without a token. The web page itself (`/`, `/ui/...`: static files built into the
//! binary, nothing of the router in them) is served to anyone who can reach the address; it asks
//! for the token the first time the API answers 401 and keeps it in the tab's `sessionStorage`.
//!
//! # Endpoints (JSON; see [`model`])
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/status` | [`model::Status`]: version, uptime, workers, mode, table totals, drops by reason, offload, pins, transitions |
//! | `GET /api/gateways` | a list of [`model::Gateway`]: state and why, RTT, loss, probes, flows, connections opened and failed over the last minute, bytes and packets each way |
//! | `GET /api/flows?client=IP&gateway=NAME&page=N&per_page=M` | [`model::FlowPage`] (page from 0; `per_page` 100 by default, at most 1000) |
//! | `GET /api/clients` | [`model::Clients`]: the LAN hosts with flows, their pins |
//! | `GET /api/explain?src=IP&dst=IP&proto=tcp&sport=P&dport=P` | [`model::Explain`]: the flow of that 5-tuple (either direction) and the gateway a new one would take, and why |
//! | `POST /api/gateways/{name}/force` | new connections go to that gateway (before rules and pins) while it is usable (in `manual` mode, whatever its probes say) |
//! | `POST /api/gateways/{name}/release` | stop forcing it |
//! | `POST /api/gateways/{name}/enable`, `.../disable` | use it again, or stop using it (its flows are treated as on a dead gateway) |
//! | `POST /api/mode` `{"mode": "load-balance"\|"failover"\|"manual"}` | switch the mode (manual needs a forced gateway) |
//! | `PUT /api/clients/{ip}` `{"gateway": NAME}`, `DELETE /api/clients/{ip}` | pin one LAN host to a gateway, or unpin it |
//! | `POST /api/reload` | re-read the configuration file (as SIGHUP): refused with the problems (key path and line) when it does not validate or needs a restart |
//! | `GET /metrics` | Prometheus text ([`metrics`]) |
//!
//! Commands answer [`model::Done`]; errors [`model::Error`] with 400 (bad input), 401 (token),
//! 404 (no such gateway or pin), 409 (not possible now: the message says why), 422 (the
//! configuration file is bad) or 503 (the router is stopping). The operator's commands last
//! until the next reload (see [`crate::control`]).

mod auth;
pub mod client;
mod flows;
pub mod metrics;
pub mod model;
mod routes;
mod ui;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context as _, bail};
use crossbeam_channel::Sender;
use log::{info, warn};

use crate::control::Request;
use crate::worker::ToWorker;

/// What the API thread is built from.
pub struct ApiSetup {
    /// The Unix socket.
    pub socket: PathBuf,
    /// A TCP address as well, if any.
    pub listen: Option<SocketAddr>,
    /// The bearer token TCP clients must send (none: no token asked).
    pub token: Arc<RwLock<Option<String>>>,
    /// The control thread's requests.
    pub control: Sender<Request>,
    /// Each worker's control channel (for flow listings and explanations).
    pub workers: Vec<Sender<ToWorker>>,
}

/// The running API: stopped (and its socket removed) when dropped.
pub struct Api {
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    socket: PathBuf,
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct State {
    pub control: Sender<Request>,
    pub workers: Arc<Vec<Sender<ToWorker>>>,
    pub token: Arc<RwLock<Option<String>>>,
}

/// Binds `path` as a Unix socket only root can use: its directory created if missing, a stale
/// socket of a router that is gone replaced, one that answers refused. The socket is bound
/// under a temporary name, made mode 0600, then renamed into place, so it is never open wider.
fn bind_unix(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "{} is in use: another router answers there (give this one another api.socket or --api-socket)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale socket {}", path.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp)
        .with_context(|| format!("binding {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("binding {}", path.display()))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The API's listeners, bound but not served yet: binding may need privileges (a TCP port below
/// 1024) that the daemon drops before it starts any thread that lives on, the API's included
/// (capabilities are per thread and a thread keeps those it was started with).
pub struct BoundApi {
    setup: ApiSetup,
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
}

impl Api {
    /// Binds the socket (and the TCP address). Fails when an address cannot be bound.
    pub fn bind(s: ApiSetup) -> anyhow::Result<BoundApi> {
        let unix = bind_unix(&s.socket)?;
        let tcp = match s.listen {
            Some(a) => {
                let l = std::net::TcpListener::bind(a)
                    .with_context(|| format!("api.listen: binding {a}"))?;
                l.set_nonblocking(true)?;
                Some(l)
            }
            None => None,
        };
        Ok(BoundApi {
            setup: s,
            unix,
            tcp,
        })
    }

    /// Binds and starts serving at once (tests, and callers that keep their privileges).
    pub fn start(s: ApiSetup) -> anyhow::Result<Api> {
        Api::bind(s)?.serve()
    }
}

impl BoundApi {
    /// Starts the API thread on the bound listeners.
    pub fn serve(self) -> anyhow::Result<Api> {
        let BoundApi {
            setup: s,
            unix,
            tcp,
        } = self;
        let state = State {
            control: s.control,
            workers: Arc::new(s.workers),
            token: s.token,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let socket = s.socket.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the API's runtime")?;
        info!(
            "API on {}{}",
            s.socket.display(),
            s.listen
                .map_or(String::new(), |a| format!(" and http://{a}"))
        );
        let thread = std::thread::Builder::new()
            .name("api".into())
            .spawn(move || rt.block_on(serve(state, unix, tcp, stop_rx)))
            .context("starting the API thread")?;
        Ok(Api {
            shutdown: Some(stop_tx),
            thread: Some(thread),
            socket,
        })
    }
}

/// Serves both listeners until told to stop (then lets requests in flight finish, one second
/// at most).
async fn serve(
    state: State,
    unix: std::os::unix::net::UnixListener,
    tcp: Option<std::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let unix_srv = async {
        match tokio::net::UnixListener::from_std(unix) {
            Ok(l) => {
                let app = routes::router(state.clone(), false);
                if let Err(e) = axum::serve(l, app)
                    .with_graceful_shutdown(stopped(stop.clone()))
                    .await
                {
                    warn!("API (Unix socket) stopped: {e}");
                }
            }
            Err(e) => warn!("API (Unix socket): {e}"),
        }
    };
    let tcp_srv = async {
        let Some(tcp) = tcp else {
            return;
        };
        match tokio::net::TcpListener::from_std(tcp) {
            Ok(l) => {
                let app = routes::router(state.clone(), true);
                if let Err(e) = axum::serve(l, app)
                    .with_graceful_shutdown(stopped(stop.clone()))
                    .await
                {
                    warn!("API (TCP) stopped: {e}");
                }
            }
            Err(e) => warn!("API (TCP): {e}"),
        }
    };
    let linger = async {
        stopped(stop.clone()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    tokio::select! {
        _ = async { tokio::join!(unix_srv, tcp_srv) } => {}
        () = linger => {}
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

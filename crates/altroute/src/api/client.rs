//! The CLI's side of the API: one HTTP/1.1 request over the Unix socket (the default) or a TCP
//! address with a bearer token, on hyper (the library axum serves with), and its JSON answer.

use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

use super::model;

/// Where the API is.
#[derive(Clone, Debug)]
pub enum Endpoint {
    /// A Unix socket.
    Unix(PathBuf),
    /// `http://HOST:PORT`, with the token to send, if any.
    Tcp {
        /// `HOST:PORT`.
        authority: String,
        /// The bearer token.
        token: Option<String>,
    },
}

impl Endpoint {
    /// From a URL `http://HOST:PORT` (a path after it is ignored) and a token.
    pub fn url(url: &str, token: Option<String>) -> anyhow::Result<Endpoint> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("--url {url}: expected http://HOST:PORT"))?;
        let authority = rest.split('/').next().unwrap_or("").to_string();
        if authority.is_empty() {
            bail!("--url {url}: expected http://HOST:PORT");
        }
        Ok(Endpoint::Tcp { authority, token })
    }

    fn describe(&self) -> String {
        match self {
            Endpoint::Unix(p) => p.display().to_string(),
            Endpoint::Tcp { authority, .. } => format!("http://{authority}"),
        }
    }
}

/// An answer: the status and the body.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// The body (JSON for the API).
    pub body: Bytes,
}

impl Answer {
    /// The body as `T`, or the API's error message as an error.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        if !self.status.is_success() {
            bail!("{}", self.error_text());
        }
        serde_json::from_slice(&self.body).context("reading the API's answer")
    }

    /// The error of a failed answer, with the configuration problems one per line.
    pub fn error_text(&self) -> String {
        match serde_json::from_slice::<model::Error>(&self.body) {
            Ok(e) => {
                let mut s = e.error;
                for p in e.problems {
                    s.push_str(&format!(
                        "\n  {}{}: {}",
                        p.line.map_or(String::new(), |l| format!("line {l}: ")),
                        p.path,
                        p.message
                    ));
                }
                s
            }
            Err(_) => format!(
                "{}: {}",
                self.status,
                String::from_utf8_lossy(&self.body).trim()
            ),
        }
    }
}

/// Sends one request and reads the whole answer.
pub fn call(
    at: &Endpoint,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Answer> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(30),
            request(at, method, path, body),
        )
        .await
        .map_err(|_| anyhow!("{}: no answer within 30 s", at.describe()))?
    })
}

async fn request(
    at: &Endpoint,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<Answer> {
    let mut req = Request::builder().method(method).uri(path);
    let host = match at {
        Endpoint::Unix(_) => "localhost".to_string(),
        Endpoint::Tcp { authority, token } => {
            if let Some(t) = token {
                req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            authority.clone()
        }
    };
    req = req.header(hyper::header::HOST, host);
    let bytes = match body {
        Some(v) => {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
            Bytes::from(serde_json::to_vec(&v)?)
        }
        None => Bytes::new(),
    };
    let req = req.body(Full::new(bytes))?;
    let where_ = at.describe();
    let resp = match at {
        Endpoint::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await.with_context(|| {
                format!("connecting to {where_} (is the router running? as root?)")
            })?;
            send(s, req).await?
        }
        Endpoint::Tcp { authority, .. } => {
            let s = tokio::net::TcpStream::connect(authority.as_str())
                .await
                .with_context(|| format!("connecting to {where_}"))?;
            send(s, req).await?
        }
    };
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading the answer of {where_}"))?
        .to_bytes();
    Ok(Answer { status, body })
}

async fn send<S>(
    stream: S,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<hyper::Response<hyper::body::Incoming>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender.send_request(req).await?)
}

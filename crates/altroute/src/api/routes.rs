//! The routes and their handlers: each asks the control thread (snapshots, commands) or the
//! workers ([`super::flows`]) and answers JSON.

use std::net::IpAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio::sync::oneshot;

use super::{State, auth, flows, metrics, model, ui};
use crate::config;
use crate::control::{Command, CommandError, Request, Snapshot};

/// How long a request waits for the control thread or a worker.
pub(super) const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// An error answer: a status code and [`model::Error`].
#[derive(Debug)]
pub(crate) struct ApiError(pub StatusCode, pub model::Error);

impl ApiError {
    pub fn new(code: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError(
            code,
            model::Error {
                error: error.into(),
                problems: Vec::new(),
            },
        )
    }

    pub fn gone() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the router is stopping")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> ApiError {
        match e {
            CommandError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            CommandError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            CommandError::BadConfig { message, problems } => ApiError(
                StatusCode::UNPROCESSABLE_ENTITY,
                model::Error {
                    error: message,
                    problems,
                },
            ),
        }
    }
}

/// Every route; `tcp`: the token is checked (when one is set) on the API and the metrics.
pub(super) fn router(state: State, tcp: bool) -> Router {
    let api = Router::new()
        .route("/api/status", get(status))
        .route("/api/gateways", get(gateways))
        .route("/api/gateways/{name}/{action}", post(gateway_action))
        .route("/api/flows", get(flows::flows))
        .route("/api/clients", get(flows::clients))
        .route("/api/clients/{ip}", put(pin).delete(unpin))
        .route("/api/explain", get(flows::explain))
        .route("/api/mode", post(mode))
        .route("/api/reload", post(reload))
        .route("/metrics", get(prometheus))
        .fallback(not_found);
    let api = if tcp {
        api.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
    } else {
        api
    };
    api.merge(ui::router()).with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint (see GET /api/status)",
    )
}

/// Asks the control thread for a snapshot.
pub(super) async fn snapshot(state: &State) -> Result<Snapshot, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .control
        .send(Request::Snapshot(tx))
        .map_err(|_| ApiError::gone())?;
    tokio::time::timeout(ANSWER_WITHIN, rx)
        .await
        .map_err(|_| ApiError::gone())?
        .map_err(|_| ApiError::gone())
}

/// Has the control thread carry out a command.
async fn command(state: &State, c: Command) -> Result<Json<model::Done>, ApiError> {
    let (tx, rx) = oneshot::channel();
    state
        .control
        .send(Request::Command(c, tx))
        .map_err(|_| ApiError::gone())?;
    let applied = tokio::time::timeout(ANSWER_WITHIN, rx)
        .await
        .map_err(|_| ApiError::gone())?
        .map_err(|_| ApiError::gone())??;
    // Done once every worker has it: the next new connection sees the change.
    for w in applied.workers {
        let _ = tokio::time::timeout(ANSWER_WITHIN, w).await;
    }
    Ok(Json(model::Done {
        message: applied.message,
    }))
}

async fn status(Extract(state): Extract<State>) -> Result<Json<model::Status>, ApiError> {
    Ok(Json(snapshot(&state).await?.status))
}

async fn gateways(Extract(state): Extract<State>) -> Result<Json<Vec<model::Gateway>>, ApiError> {
    Ok(Json(snapshot(&state).await?.gateways))
}

async fn gateway_action(
    Extract(state): Extract<State>,
    Path((name, action)): Path<(String, String)>,
) -> Result<Json<model::Done>, ApiError> {
    let c = match action.as_str() {
        "force" => Command::Force(name),
        "release" => Command::Release(name),
        "enable" => Command::Enable(name),
        "disable" => Command::Disable(name),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("unknown action {action:?}: force, release, enable or disable"),
            ));
        }
    };
    command(&state, c).await
}

async fn mode(
    Extract(state): Extract<State>,
    body: Result<Json<model::ModeBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<model::Done>, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let m: config::Mode = body
        .mode
        .parse()
        .map_err(|e: String| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    command(&state, Command::Mode(m)).await
}

fn client_ip(ip: &str) -> Result<IpAddr, ApiError> {
    ip.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{ip:?} is not an IP address"),
        )
    })
}

async fn pin(
    Extract(state): Extract<State>,
    Path(ip): Path<String>,
    body: Result<Json<model::PinBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<model::Done>, ApiError> {
    let client = client_ip(&ip)?;
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    command(
        &state,
        Command::Pin {
            client,
            gateway: body.gateway,
        },
    )
    .await
}

async fn unpin(
    Extract(state): Extract<State>,
    Path(ip): Path<String>,
) -> Result<Json<model::Done>, ApiError> {
    command(&state, Command::Unpin(client_ip(&ip)?)).await
}

async fn reload(Extract(state): Extract<State>) -> Result<Json<model::Done>, ApiError> {
    command(&state, Command::Reload).await
}

async fn prometheus(Extract(state): Extract<State>) -> Result<Response, ApiError> {
    let s = snapshot(&state).await?;
    let text = metrics::render(&s)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response())
}

/// Query parameters are parsed by the handlers; a bad one is a 400 with this message.
pub(super) fn bad_query(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

/// The query as a string map (the handlers parse each value with a message of their own).
pub(super) type Params = Query<std::collections::HashMap<String, String>>;

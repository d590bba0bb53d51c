//! The web page: plain HTML, JavaScript and CSS built into the binary (`include_str!`), no
//! build step. `GET /` is the page; `GET /ui/{file}` its script and style sheet. It polls
//! `/api/gateways` every second and draws, per gateway, a card (state, RTT, loss, flows,
//! force/release) with a live traffic plot on a canvas; the mode switch; and the clients of
//! `/api/clients`, each with a gateway choice (`PUT` / `DELETE /api/clients/{ip}`). Over TCP
//! with a token, the page asks for it on the first 401 and keeps it in `sessionStorage`.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::State;

const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

/// The page's routes (never behind the token: they hold nothing of the router).
pub(super) fn router() -> Router<State> {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(file))
}

async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "app.js" => page(APP, "text/javascript; charset=utf-8"),
        "style.css" => page(STYLE, "text/css; charset=utf-8"),
        "" | "index.html" => page(INDEX, "text/html; charset=utf-8"),
        _ => (StatusCode::NOT_FOUND, "no such file").into_response(),
    }
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

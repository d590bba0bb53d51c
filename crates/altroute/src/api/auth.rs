//! The bearer token of the TCP listener: with `api.token_file` set, a request to the API or
//! the metrics must carry `Authorization: Bearer TOKEN`. Compared in constant time.

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::State;
use super::routes::ApiError;

/// Whether `a` and `b` are equal, in time that depends only on their lengths.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `headers` carry `token` as a bearer token.
pub(crate) fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

/// The middleware: passes the request on when no token is set or it carries the token; 401
/// otherwise.
pub(super) async fn require_token(
    Extract(state): Extract<State>,
    req: Request,
    next: Next,
) -> Response {
    let token = state.token.read().ok().and_then(|t| t.clone());
    match token {
        Some(t) if !authorized(req.headers(), &t) => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this address needs the API token: Authorization: Bearer TOKEN",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            r
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "s3cret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        assert!(authorized(&h, "s3cret"));
        assert!(!authorized(&h, "s3cre"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic s3cret"),
        );
        assert!(!authorized(&h, "s3cret"));
    }
}

//! Small response builders shared by both hubs.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

/// Sets a header from a string, skipping values that are not valid header text.
pub fn set(h: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let body = value.to_string();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

pub fn plain(status: StatusCode, text: &str) -> Response {
    let mut resp = Response::new(Body::from(text.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// 429 in the real hub's style: Retry-After plus the IETF RateLimit header.
pub fn rate_limited(retry_after_secs: u64) -> Response {
    let mut resp = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "error": "Too Many Requests (hubsim)",
            "Code": 429,
            "Message": "Too Many Requests (hubsim)",
            "Success": false,
        }),
    );
    let h = resp.headers_mut();
    set(h, header::RETRY_AFTER, &retry_after_secs.to_string());
    set(
        h,
        HeaderName::from_static("ratelimit"),
        &format!("\"resolvers\";r=0;t={retry_after_secs}"),
    );
    set(
        h,
        HeaderName::from_static("ratelimit-policy"),
        "\"fixed window\";\"resolvers\";q=3000;w=300",
    );
    resp
}

/// An injected error status, readable by both clients.
pub fn injected_status(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(
        code,
        &serde_json::json!({
            "error": format!("hubsim injected {status}"),
            "Code": status,
            "Message": format!("hubsim injected {status}"),
            "Success": false,
        }),
    )
}

/// 429 for an HF API call in the hub's style: the `"api"` window is used up for `secs`.
pub fn api_rate_limited(secs: u64) -> Response {
    let mut resp = json(
        StatusCode::TOO_MANY_REQUESTS,
        &serde_json::json!({
            "error": "You have exceeded our hourly quotas for action: api. We invite you to retry later.",
        }),
    );
    let h = resp.headers_mut();
    set(h, header::RETRY_AFTER, &secs.to_string());
    set(
        h,
        HeaderName::from_static("ratelimit"),
        &format!("\"api\";r=0;t={secs}"),
    );
    set(
        h,
        HeaderName::from_static("ratelimit-policy"),
        "\"fixed window\";\"api\";q=500;w=300",
    );
    set(h, HeaderName::from_static("x-error-code"), "RateLimited");
    resp
}

/// The headers the real hub puts on every answer: informational, not a limit (`r` > 0).
pub fn informational_ratelimit(h: &mut HeaderMap) {
    if h.contains_key("ratelimit") {
        return;
    }
    set(
        h,
        HeaderName::from_static("ratelimit"),
        "\"resolvers\";r=2999;t=172",
    );
    set(
        h,
        HeaderName::from_static("ratelimit-policy"),
        "\"fixed window\";\"resolvers\";q=3000;w=300",
    );
}

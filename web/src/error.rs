//! The one error type of the web layer and its JSON shape.
//!
//! Handlers return [`Result`] and use `?`; each variant maps onto one status code and a
//! stable machine-readable `code`. Internal failures are logged with their cause and
//! shown to the client only as `internal`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The result type of every handler.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No valid session or API token (401).
    #[error("sign in first")]
    Unauthorized,
    /// Signed in, but this is not yours (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Not yet: the chain has not confirmed what the request reports; the same request
    /// later succeeds (409, code `pending`).
    #[error("{0}")]
    Pending(String),
    /// A field broke a rule (422).
    #[error("{field}: {message}")]
    Invalid {
        /// The field at fault.
        field: String,
        /// What rule it broke, with the limit.
        message: String,
    },
    /// The balance does not cover the amount (409, code `insufficient_funds`).
    #[error("{0}")]
    InsufficientFunds(String),
    /// The request body is over the configured limit (413).
    #[error("request body is too large")]
    TooLarge,
    /// Too many writes; try again later (429).
    #[error("too many requests, slow down")]
    RateLimited,
    /// The cross-site request forgery check failed (403, code `csrf`).
    #[error("missing or wrong CSRF token")]
    Csrf,
    /// The request names a host this server does not serve (421, code `host`): a
    /// DNS-rebinding page, or a client that mistyped the address.
    #[error("this server does not answer for host {0:?}")]
    UnknownHost(String),
    /// Something broke on our side (500); the cause is logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A 422 naming `field` and the rule it broke.
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) | Error::Csrf => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::InsufficientFunds(_) | Error::Pending(_) => {
                StatusCode::CONFLICT
            }
            Error::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Error::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients match on.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::Pending(_) => "pending",
            Error::Invalid { .. } => "invalid",
            Error::InsufficientFunds(_) => "insufficient_funds",
            Error::RateLimited => "rate_limited",
            Error::TooLarge => "too_large",
            Error::Csrf => "csrf",
            Error::UnknownHost(_) => "host",
            Error::Internal(_) => "internal",
        }
    }

    /// The JSON body of this error.
    pub(crate) fn body(&self) -> ErrorBody {
        let (message, field) = match self {
            Error::Invalid { field, message } => (message.clone(), Some(field.clone())),
            Error::Internal(_) => ("internal error".to_string(), None),
            other => (other.to_string(), None),
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message,
                field,
            },
        }
    }
}

/// `{ "error": { "code", "message", "field" } }`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `unauthorized`, `forbidden`, `not_found`, `conflict`, `pending`, `invalid`,
    /// `insufficient_funds`, `too_large`, `rate_limited`, `csrf`, `host` or `internal`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault (validation errors only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Internal(cause) = &self {
            tracing::error!(%cause, "request failed");
        }
        (self.status(), Json(self.body())).into_response()
    }
}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Error {
        match e {
            store::Error::NotFound { what, id } => {
                Error::NotFound(format!("{what} {id} not found"))
            }
            store::Error::Duplicate { what } => Error::Conflict(format!("{what} already exists")),
            store::Error::AlreadySettled { .. } => Error::Conflict(e.to_string()),
            store::Error::InsufficientBalance { have, need, .. } => Error::InsufficientFunds(
                format!("insufficient balance: have {have} wei, need {need} wei"),
            ),
            store::Error::Invalid { field, reason } => Error::invalid(field, reason),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<tera::Error> for Error {
    fn from(e: tera::Error) -> Error {
        Error::Internal(format!("template: {e}"))
    }
}

/// Path and query extraction failures as 422 with our JSON shape, not axum's text.
impl From<axum::extract::rejection::PathRejection> for Error {
    fn from(e: axum::extract::rejection::PathRejection) -> Error {
        Error::invalid("path", e.body_text())
    }
}

impl From<axum::extract::rejection::QueryRejection> for Error {
    fn from(e: axum::extract::rejection::QueryRejection) -> Error {
        Error::invalid("query", e.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for Error {
    fn from(e: axum::extract::rejection::JsonRejection) -> Error {
        use axum::extract::rejection::JsonRejection as J;
        match e {
            J::JsonDataError(d) => {
                let (field, message) = json_error_field(&d.body_text());
                Error::invalid(field, message)
            }
            J::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => Error::TooLarge,
            other => Error::invalid("body", other.body_text()),
        }
    }
}

/// The field and message of a JSON data error, from axum's text
/// `"…target type: <path>: <serde message> at line L column C"`: the path, extended by
/// the field serde names for unknown and missing fields.
fn json_error_field(text: &str) -> (String, String) {
    let detail = text.split_once("target type: ").map_or(text, |(_, d)| d);
    let (path, message) = match detail.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (p, m),
        _ => (".", detail),
    };
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(m, _)| m)
        .to_string();
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (path, named) {
        (".", Some(name)) => name.to_string(),
        // serde_path_to_error already ends the path with an unknown field's name.
        (p, Some(name)) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (p, Some(name)) => format!("{p}.{name}"),
        (".", None) => "body".to_string(),
        (p, None) => p.to_string(),
    };
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::json_error_field;

    #[test]
    fn json_errors_name_their_field() {
        let t = "Failed to deserialize the JSON body into the target type: sampling.temprature: unknown field `temprature`, expected one of `a` at line 1 column 9";
        assert_eq!(json_error_field(t).0, "sampling.temprature");
        let t = "Failed to deserialize the JSON body into the target type: sampling: missing field `top_p` at line 1 column 9";
        assert_eq!(json_error_field(t).0, "sampling.top_p");
        let t = "Failed to deserialize the JSON body into the target type: sampling.temperature: invalid type: string \"hot\", expected f32 at line 1 column 9";
        assert_eq!(json_error_field(t).0, "sampling.temperature");
        let t = "Failed to deserialize the JSON body into the target type: missing field `base_model` at line 1 column 9";
        assert_eq!(
            json_error_field(t),
            ("base_model".into(), "missing field `base_model`".into())
        );
    }
}

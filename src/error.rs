//! The domain error: one variant per stable error code of the API contract.
//!
//! Owns the codes and their human messages. It must not know about HTTP: the
//! single mapping to status codes lives in `http::response`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Malformed JSON, a missing or invalid field. The message names the field.
    BadRequest(String),
    /// Missing or bad API key, session or device request signature.
    Unauthorized(String),
    /// A device answer whose signature does not verify.
    BadSignature,
    /// Registration with an unknown contract, unknown user or wrong password.
    BadCredentials,
    Forbidden(String),
    TokenRevoked,
    PasswordLocked,
    AccountStopped,
    ContractCancelled,
    NotFound(String),
    Conflict(String),
    ChallengeClosed,
    AlreadyRegistered,
    TokenAlreadyBound,
    InvalidTransition(String),
    BodyTooLarge(usize),
    UnsupportedMediaType,
    /// A known path with another method; `allow` lists the methods it has.
    MethodNotAllowed {
        allow: String,
    },
    /// The request line, a header line or all headers together are too large.
    HeadersTooLarge,
    /// The headers or the body did not arrive within their timeout.
    RequestTimeout,
    /// `max_connections` are open.
    Overloaded,
    TokenOrOtpMismatch,
    RateLimited {
        retry_after_secs: u64,
    },
    /// Something broke inside (store, I/O). The detail is logged, never sent.
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The stable, snake_case code of API.md's error table.
    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest(_) => "bad_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::BadSignature => "bad_signature",
            Error::BadCredentials => "bad_credentials",
            Error::Forbidden(_) => "forbidden",
            Error::TokenRevoked => "token_revoked",
            Error::PasswordLocked => "password_locked",
            Error::AccountStopped => "account_stopped",
            Error::ContractCancelled => "contract_cancelled",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::ChallengeClosed => "challenge_closed",
            Error::AlreadyRegistered => "already_registered",
            Error::TokenAlreadyBound => "token_already_bound",
            Error::InvalidTransition(_) => "invalid_transition",
            Error::BodyTooLarge(_) => "body_too_large",
            Error::UnsupportedMediaType => "unsupported_media_type",
            Error::MethodNotAllowed { .. } => "method_not_allowed",
            Error::HeadersTooLarge => "headers_too_large",
            Error::RequestTimeout => "request_timeout",
            Error::Overloaded => "overloaded",
            Error::TokenOrOtpMismatch => "token_or_otp_mismatch",
            Error::RateLimited { .. } => "rate_limited",
            Error::Internal(_) => "internal",
        }
    }

    pub fn bad_field(field: &str, why: impl fmt::Display) -> Error {
        Error::BadRequest(format!("{field}: {why}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRequest(m) | Error::Unauthorized(m) | Error::Forbidden(m) => f.write_str(m),
            Error::NotFound(m) | Error::Conflict(m) | Error::InvalidTransition(m) => f.write_str(m),
            Error::BadSignature => f.write_str("the response signature does not verify"),
            Error::BadCredentials => f.write_str("contract number, user ID or password is wrong"),
            Error::TokenRevoked => f.write_str("this token has been revoked; provision the app again"),
            Error::PasswordLocked => f.write_str("the account is locked after too many wrong passwords; ask the bank to unlock it"),
            Error::AccountStopped => f.write_str("the account is stopped"),
            Error::ContractCancelled => f.write_str("the contract is cancelled"),
            Error::ChallengeClosed => f.write_str("the challenge is no longer pending"),
            Error::AlreadyRegistered => f.write_str("this user already has a registered phone"),
            Error::TokenAlreadyBound => f.write_str("this token is already registered to a user"),
            Error::BodyTooLarge(limit) => write!(f, "request body is larger than {limit} bytes"),
            Error::UnsupportedMediaType => f.write_str("Content-Type must be application/json"),
            Error::MethodNotAllowed { allow } => write!(f, "this path accepts only {allow}"),
            Error::HeadersTooLarge => f.write_str("request line or headers too large (at most 8 KiB a line, 100 headers, 64 KiB in all)"),
            Error::RequestTimeout => f.write_str("the request was not received in time"),
            Error::Overloaded => f.write_str("too many open connections; retry shortly"),
            Error::TokenOrOtpMismatch => f.write_str("token ID or one-time passwords do not match; enter two consecutive codes"),
            Error::RateLimited { retry_after_secs } => {
                write!(f, "too many requests; retry after {retry_after_secs} s")
            }
            Error::Internal(_) => f.write_str("internal error"),
        }
    }
}

impl std::error::Error for Error {}

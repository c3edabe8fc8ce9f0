//! Errors of rmcp, the MCP client library, told once.
//!
//! rmcp's errors repeat their cause in their own message and also return it as their
//! source, put the transport's Rust type name in the message (`Transport [rmcp::...] error`),
//! and do not chain the HTTP client's error. Rendered with
//! [`sandbox_core::error_chain`] they would tell the same cause two or three times.
//! [`McpClientError`] keeps rmcp's error and tells it once instead: its message is rmcp's
//! error with each cause once, without the type name, down to the HTTP client's root cause.
//! Its only [`source`](Error::source) is ours: how the server's process ended, when that is
//! what broke the connection.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpError;

/// An rmcp error during the MCP handshake or a request, told once (see the module docs).
#[derive(Debug)]
pub struct McpClientError {
    error: Rmcp,
    ended: Option<ServerEnded>,
}

/// Boxed: rmcp's errors are large, and ours travel in `Result`s.
#[derive(Debug)]
enum Rmcp {
    Init(Box<ClientInitializeError>),
    Service(Box<ServiceError>),
}

/// How a server's process ended, as its watcher told it (exit status, last lines of
/// stderr): the cause of an error its connection ran into.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ServerEnded(Arc<str>);

impl McpClientError {
    /// The same error, explained by how the server's process ended.
    pub(super) fn ended(mut self, how: Arc<str>) -> Self {
        self.ended = Some(ServerEnded(how));
        self
    }
}

impl From<ClientInitializeError> for McpClientError {
    fn from(error: ClientInitializeError) -> Self {
        Self {
            error: Rmcp::Init(Box::new(error)),
            ended: None,
        }
    }
}

impl From<ServiceError> for McpClientError {
    fn from(error: ServiceError) -> Self {
        Self {
            error: Rmcp::Service(Box::new(error)),
            ended: None,
        }
    }
}

impl fmt::Display for McpClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            Rmcp::Init(init) => match init.as_ref() {
                ClientInitializeError::TransportError { error, context } => write!(
                    f,
                    "{} (when {context})",
                    describe_transport(error.error.as_ref())
                ),
                other => f.write_str(&chain(other)),
            },
            Rmcp::Service(service) => match service.as_ref() {
                ServiceError::TransportSend(error) => {
                    f.write_str(&describe_transport(error.error.as_ref()))
                }
                other => f.write_str(&chain(other)),
            },
        }
    }
}

impl Error for McpClientError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.ended
            .as_ref()
            .map(|ended| ended as &(dyn Error + 'static))
    }
}

/// `error: cause: cause`, leaving out a cause whose text the message already holds.
fn chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A transport error, down to its root cause (rmcp does not chain the HTTP client's error).
fn describe_transport(error: &(dyn Error + Send + Sync + 'static)) -> String {
    match error.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
        Some(StreamableHttpError::Client(client)) => chain(client),
        _ => chain(error),
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use rmcp::transport::DynamicTransportError;
    use sandbox_core::error_chain;

    use super::*;

    fn transport_error(cause: io::Error) -> DynamicTransportError {
        DynamicTransportError::from_parts(
            "rmcp::transport::SomeTransport",
            std::any::TypeId::of::<()>(),
            Box::new(StreamableHttpError::<reqwest::Error>::Io(cause)),
        )
    }

    #[test]
    fn a_transport_error_is_told_once_without_the_type_name() {
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let error = McpClientError::from(ServiceError::TransportSend(transport_error(refused)));
        let text = error_chain(&error);
        assert_eq!(text, "Io error: connection refused");
        assert!(!text.contains("rmcp::"), "{text}");
    }

    #[test]
    fn how_the_server_ended_comes_last_as_the_cause() {
        let error = McpClientError::from(ClientInitializeError::ConnectionClosed(
            "initialize response".into(),
        ))
        .ended("the process exited with status 2; last stderr: no config".into());
        assert_eq!(
            error_chain(&error),
            "connection closed: initialize response: the process exited with status 2; last \
             stderr: no config"
        );
    }
}

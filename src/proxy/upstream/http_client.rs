//! The HTTP client of streamable-HTTP upstreams: rmcp's reqwest client, plus one repair.
//!
//! Some servers answer a request they reject at the HTTP level (an unknown session after the
//! server restarted, a body they cannot parse) with a JSON-RPC error that carries no `id`:
//! the reference TypeScript servers send `400 {"error": {"message": "Bad Request: No valid
//! session ID provided"}}`. rmcp forwards that error as is; with no id it cannot be matched to
//! the request, which then waits for its timeout, and so does every later request on the
//! dead session. This client gives such an error the id of the request it answers, so the
//! caller gets it at once, and records the rejection so that the connection is dropped and
//! the next call opens a new session. (A failed call is not retried: the server may have
//! acted on it.)

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_core::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::Sse;

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 10;

type PostResult = Result<StreamableHttpPostResponse, StreamableHttpError<reqwest::Error>>;

/// What the server said when it rejected our session, once it did.
pub(super) type Rejection = Arc<Mutex<Option<String>>>;

/// rmcp's reqwest client, repairing id-less error answers (see the module docs).
#[derive(Clone)]
pub(super) struct SessionAwareClient {
    inner: reqwest::Client,
    rejection: Rejection,
}

impl SessionAwareClient {
    /// A client like rmcp's default one: no idle connection pool (it stalls on delayed ACKs),
    /// and only same-origin 307/308 redirects (they keep the POST body, and the session id and
    /// headers are not sent to another host).
    pub(super) fn new(rejection: Rejection) -> Result<Self, reqwest::Error> {
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            let keeps_body = matches!(
                attempt.status(),
                reqwest::StatusCode::TEMPORARY_REDIRECT | reqwest::StatusCode::PERMANENT_REDIRECT
            );
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if !keeps_body || !same_origin {
                attempt.stop()
            } else if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        });
        let inner = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .redirect(redirects)
            .build()?;
        Ok(Self { inner, rejection })
    }

    fn repair(
        &self,
        result: PostResult,
        request: Option<&rmcp::model::RequestId>,
        in_session: bool,
    ) -> PostResult {
        let Some(request) = request else {
            return result;
        };
        match result {
            Ok(StreamableHttpPostResponse::Json(JsonRpcMessage::Error(mut error), session))
                if error.id.is_none() =>
            {
                let message = error.error.message.to_string();
                tracing::debug!(%message, "HTTP upstream rejected a request without naming it");
                if in_session {
                    *self.rejection.lock().expect("rejection lock") = Some(message);
                }
                error.id = Some(request.clone());
                Ok(StreamableHttpPostResponse::Json(
                    JsonRpcMessage::Error(error),
                    session,
                ))
            }
            other => other,
        }
    }
}

fn request_id(message: &ClientJsonRpcMessage) -> Option<rmcp::model::RequestId> {
    match message {
        JsonRpcMessage::Request(request) => Some(request.id.clone()),
        _ => None,
    }
}

impl StreamableHttpClient for SessionAwareClient {
    type Error = reqwest::Error;

    fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let id = request_id(&message);
        let in_session = session_id.is_some();
        async move {
            let result = self
                .inner
                .post_message(uri, message, session_id, auth_header, custom_headers)
                .await;
            self.repair(result, id.as_ref(), in_session)
        }
    }

    fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let id = request_id(&message);
        let in_session = session_id.is_some();
        async move {
            let result = self
                .inner
                .post_message_with_max_sse_event_size(
                    uri,
                    message,
                    session_id,
                    auth_header,
                    custom_headers,
                    max_sse_event_size,
                )
                .await;
            self.repair(result, id.as_ref(), in_session)
        }
    }

    fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> impl Future<Output = PostResult> + Send + '_ {
        let id = request_id(&message);
        let in_session = session_id.is_some();
        async move {
            let result = self
                .inner
                .post_message_with_response_limits(
                    uri,
                    message,
                    session_id,
                    auth_header,
                    custom_headers,
                    limits,
                )
                .await;
            self.repair(result, id.as_ref(), in_session)
        }
    }

    fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<Output = Result<(), StreamableHttpError<Self::Error>>> + Send + '_ {
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
    }

    fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> impl Future<
        Output = Result<
            BoxStream<'static, Result<Sse, SseError>>,
            StreamableHttpError<Self::Error>,
        >,
    > + Send
    + '_ {
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
    }

    fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> impl Future<
        Output = Result<
            BoxStream<'static, Result<Sse, SseError>>,
            StreamableHttpError<Self::Error>,
        >,
    > + Send
    + '_ {
        self.inner.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_header,
            custom_headers,
            max_sse_event_size,
        )
    }
}

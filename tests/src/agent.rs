//! A local HTTP agent for tests: what an `http` action posts to.
//!
//! [`Agent`] listens on 127.0.0.1, records every request it gets ([`Call`]), checks each
//! one's signature with the test's verifier, and answers genuine requests from a script
//! ("500, 500, then 200"), one [`Answer`] per request in arrival order, then a default. A
//! request whose signature does not hold is answered 401, as a real agent would, without
//! using up the script.
//!
//! ```ignore
//! let agent = Agent::builder()
//!     .verify_with(verifier)
//!     .answers([Answer::status(500), Answer::status(500)])
//!     .otherwise(Answer::ok())
//!     .start()
//!     .await?;
//! // point an http action at agent.url("/hooks"), run the processor …
//! let calls = agent.wait_for_calls(3, Duration::from_secs(10)).await;
//! ```
//!
//! The server stops, its connections with it, when the [`Agent`] is dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// Checks a request's signature from its headers and exact body bytes; `Err` says why it
/// does not hold.
pub type Verifier = Arc<dyn Fn(&HeaderMap, &[u8]) -> Result<(), String> + Send + Sync>;

/// The replay window an agent allows, as the Standard Webhooks libraries do by default.
pub const VERIFIER_WINDOW: Duration = Duration::from_secs(300);

/// An agent's check of hookgate's signature, made with the library's own Standard Webhooks
/// verifier and `secret` (a `whsec_…` secret).
pub fn standard_webhooks_verifier(secret: &str) -> Verifier {
    use hookgate::request::InboundRequest;
    use hookgate::secret::{KeyEncoding, KeyRing};
    use hookgate::verify::standard::StandardWebhooks;
    use hookgate::verify::SignatureScheme;

    let keys = KeyRing::from_secrets(secret, None, KeyEncoding::StandardWebhooks)
        .expect("a Standard Webhooks secret");
    Arc::new(move |headers, body| {
        let mut request = InboundRequest::post(Bytes::copy_from_slice(body));
        request.headers = headers.clone();
        StandardWebhooks
            .check_signature(
                &request,
                &keys,
                time::OffsetDateTime::now_utc(),
                VERIFIER_WINDOW,
            )
            .map_err(|failure| failure.to_string())
    })
}

/// What the agent answers one request with.
#[derive(Debug, Clone)]
pub struct Answer {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
    delay: Duration,
}

impl Answer {
    /// An answer with this status and an empty body. Panics on a code HTTP does not have:
    /// that is a mistake in the test.
    pub fn status(code: u16) -> Self {
        Self {
            status: StatusCode::from_u16(code).expect("an HTTP status code"),
            headers: Vec::new(),
            body: Bytes::new(),
            delay: Duration::ZERO,
        }
    }

    /// `200 OK`.
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// Adds a header. Panics on a name or value HTTP does not allow.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((
            HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            HeaderValue::from_str(value).expect("a header value"),
        ));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Answers only after `delay`, like an agent that is slow or hung. The call is recorded
    /// as soon as it arrives.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request the agent received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// The path and query.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The client's address: the same one on two calls means a reused connection.
    pub peer: SocketAddr,
    /// The verifier's verdict; `Ok` when the agent has no verifier.
    pub verified: Result<(), String>,
}

impl Call {
    /// A header's value as text, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The body as JSON; `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sets up an [`Agent`]: its verifier, its script and its default answer.
#[derive(Default)]
pub struct AgentBuilder {
    verifier: Option<Verifier>,
    script: VecDeque<Answer>,
    otherwise: Option<Answer>,
    gate: Option<Gate>,
}

/// Holds the agent's answers back until it is opened: requests are received and recorded
/// at once, but answered only then. For tests that must act while actions are in flight.
#[derive(Debug, Clone)]
pub struct Gate(tokio::sync::watch::Sender<bool>);

impl Gate {
    pub fn closed() -> Self {
        Self(tokio::sync::watch::Sender::new(false))
    }

    /// Lets every held answer, and every later one, go.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn passed(&self) {
        let mut opened = self.0.subscribe();
        let _ = opened.wait_for(|open| *open).await;
    }
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("verifies", &self.verifier.is_some())
            .field("script", &self.script)
            .field("otherwise", &self.otherwise)
            .field("gated", &self.gate.is_some())
            .finish()
    }
}

impl AgentBuilder {
    /// Checks every request with `verifier`; one that fails is answered 401.
    pub fn verify_with(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// Answers the next genuine request with `answer`.
    pub fn answer(mut self, answer: Answer) -> Self {
        self.script.push_back(answer);
        self
    }

    /// Answers the next genuine requests with `answers`, in order.
    pub fn answers(mut self, answers: impl IntoIterator<Item = Answer>) -> Self {
        self.script.extend(answers);
        self
    }

    /// The answer once the script is used up (default: `200 OK`).
    pub fn otherwise(mut self, answer: Answer) -> Self {
        self.otherwise = Some(answer);
        self
    }

    /// Answers nothing until `gate` is opened.
    pub fn hold_answers_until(mut self, gate: Gate) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Starts listening on 127.0.0.1, on a port of the system's choosing.
    pub async fn start(self) -> std::io::Result<Agent> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            verifier: self.verifier,
            script: Mutex::new(self.script),
            otherwise: self.otherwise.unwrap_or_else(Answer::ok),
            calls: Mutex::new(Vec::new()),
            called: Notify::new(),
            gate: self.gate,
        });
        let server = tokio::spawn(serve(listener, state.clone()));
        Ok(Agent {
            address,
            state,
            server,
        })
    }
}

/// A running agent. See the module's documentation.
pub struct Agent {
    address: SocketAddr,
    state: Arc<State>,
    server: JoinHandle<()>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("address", &self.address)
            .field("calls", &lock(&self.state.calls).len())
            .finish_non_exhaustive()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // The server task owns every connection task: aborting it closes them all.
        self.server.abort();
    }
}

struct State {
    verifier: Option<Verifier>,
    script: Mutex<VecDeque<Answer>>,
    otherwise: Answer,
    calls: Mutex<Vec<Call>>,
    called: Notify,
    gate: Option<Gate>,
}

impl Agent {
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// An agent that answers every request 200 and checks no signature.
    pub async fn start() -> std::io::Result<Self> {
        Self::builder().start().await
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:<port><path>`; `path` starts with `/`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state.calls).clone()
    }

    /// Waits until at least `count` calls have arrived, or `timeout` passes, and returns the
    /// calls so far either way: the test's assertions say what was expected.
    pub async fn wait_for_calls(&self, count: usize, timeout: Duration) -> Vec<Call> {
        let wait = async {
            loop {
                // Registered before the check, so a call arriving in between still wakes us.
                let called = self.state.called.notified();
                if lock(&self.state.calls).len() >= count {
                    return;
                }
                called.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
        self.calls()
    }
}

/// Accepts connections until the task is aborted; the connections go with it.
async fn serve(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(state.clone(), peer, request));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            // Reaps finished connections so the set does not grow for the test's lifetime.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn answer(
    state: Arc<State>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(respond(&Answer::status(400))),
    };
    let verified = match &state.verifier {
        Some(verify) => verify(&parts.headers, &body),
        None => Ok(()),
    };
    let answer = match &verified {
        Ok(()) => lock(&state.script)
            .pop_front()
            .unwrap_or_else(|| state.otherwise.clone()),
        Err(reason) => Answer::status(401).with_body(reason.clone()),
    };
    lock(&state.calls).push(Call {
        method: parts.method,
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
        headers: parts.headers,
        body,
        peer,
        verified,
    });
    state.called.notify_waiters();
    if let Some(gate) = &state.gate {
        gate.passed().await;
    }
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    Ok(respond(&answer))
}

fn respond(answer: &Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(answer.body.clone()));
    *response.status_mut() = answer.status;
    for (name, value) in &answer.headers {
        response.headers_mut().append(name.clone(), value.clone());
    }
    response
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

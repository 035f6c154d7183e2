//! A stand-in for GitHub's webhook deliveries API on 127.0.0.1, for the reconciler's tests.
//!
//! It follows GitHub's documented requests and answers
//! (<https://docs.github.com/rest/repos/webhooks#list-deliveries-for-a-repository-webhook>):
//!
//! - `GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries` and
//!   `GET /orgs/{org}/hooks/{hook_id}/deliveries`, newest first, `per_page` (at most 100) to a
//!   page, the next page's URL in a `Link` header (`rel="next"`) whose `cursor` is opaque;
//! - `POST …/deliveries/{delivery_id}/attempts`: `202 Accepted`; `404` for a delivery the
//!   hook does not have;
//! - every answer carries the `x-ratelimit-*` headers; a request without the token gets
//!   `401 Bad credentials`, one without a `User-Agent` `403`, one with another
//!   `X-GitHub-Api-Version` `400`.
//!
//! A test scripts failures ahead (a rate limit, a 5xx) and reads back every request made.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One delivery attempt as GitHub lists it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub id: u64,
    pub guid: String,
    pub delivered_at: OffsetDateTime,
    pub status_code: u16,
    pub redelivery: bool,
}

impl Attempt {
    fn json(&self) -> Value {
        let status = match self.status_code {
            200..=299 => "OK".to_owned(),
            0 => "timed out".to_owned(),
            code => format!("Invalid HTTP Response: {code}"),
        };
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at
                .format(&time::format_description::well_known::Rfc3339)
                .expect("a time formats"),
            "redelivery": self.redelivery,
            "duration": 0.27,
            "status": status,
            "status_code": self.status_code,
            "event": "push",
            "action": null,
            "installation_id": null,
            "repository_id": 456,
            "throttled_at": null,
        })
    }
}

/// An answer scripted ahead of the normal ones.
#[derive(Debug, Clone)]
pub struct Scripted {
    /// Answers the first request whose method is this and whose path contains `path`.
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Scripted {
    /// An exhausted primary rate limit, lifting at `reset`.
    pub fn rate_limited(method: Method, path: &str, reset: OffsetDateTime) -> Self {
        Self {
            method,
            path: path.to_owned(),
            status: 403,
            headers: vec![
                ("x-ratelimit-limit".into(), "5000".into()),
                ("x-ratelimit-remaining".into(), "0".into()),
                ("x-ratelimit-reset".into(), reset.unix_timestamp().to_string()),
                ("x-ratelimit-resource".into(), "core".into()),
            ],
            body: json!({
                "message": "API rate limit exceeded for installation.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
            })
            .to_string(),
        }
    }

    /// A server error.
    pub fn status(method: Method, path: &str, status: u16) -> Self {
        Self {
            method,
            path: path.to_owned(),
            status,
            headers: Vec::new(),
            body: "<html><body>Unicorn!</body></html>".into(),
        }
    }
}

/// A request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: String,
}

#[derive(Debug)]
struct State {
    token: String,
    /// Hook path (`/repos/o/r/hooks/1`) → attempts, newest first.
    hooks: BTreeMap<String, Vec<Attempt>>,
    page_size: usize,
    scripted: VecDeque<Scripted>,
    received: Vec<Received>,
    /// Whether a redelivery, once asked for, is listed as a new successful attempt, as it
    /// is when the receiver takes it.
    redeliveries_succeed: bool,
    next_id: u64,
}

/// The fake API, serving until dropped.
#[derive(Debug)]
pub struct FakeGithub {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    server: JoinHandle<()>,
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeGithub {
    /// Serves on 127.0.0.1, accepting `token`, `page_size` deliveries to a page.
    pub async fn start(token: &str, page_size: usize) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            hooks: BTreeMap::new(),
            page_size,
            scripted: VecDeque::new(),
            received: Vec::new(),
            redeliveries_succeed: true,
            next_id: 1_000_000,
        }));
        let server = tokio::spawn(serve(listener, Arc::clone(&state)));
        Ok(Self {
            address,
            state,
            server,
        })
    }

    /// The API's base URL, as `GITHUB_API_URL` takes it.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Makes the hook at `hook_path` (`/repos/o/r/hooks/1`) exist, with no deliveries yet.
    pub fn add_hook(&self, hook_path: &str) {
        lock(&self.state)
            .hooks
            .entry(hook_path.to_owned())
            .or_default();
    }

    /// Adds an attempt to the hook at `hook_path` (`/repos/o/r/hooks/1`), the newest so far.
    pub fn add(&self, hook_path: &str, attempt: Attempt) {
        lock(&self.state)
            .hooks
            .entry(hook_path.to_owned())
            .or_default()
            .insert(0, attempt);
    }

    pub fn script(&self, answer: Scripted) {
        lock(&self.state).scripted.push_back(answer);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.state).received.clone()
    }

    /// The delivery ids redelivery was asked for, in order, whatever the answer was.
    pub fn redelivered(&self) -> Vec<u64> {
        self.received()
            .iter()
            .filter(|request| request.method == Method::POST)
            .filter_map(|request| {
                request
                    .path
                    .strip_suffix("/attempts")?
                    .rsplit('/')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// The pages of deliveries listed: each list request's query.
    pub fn listings(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|request| request.method == Method::GET)
            .collect()
    }

    pub fn forget_requests(&self) {
        lock(&self.state).received.clear();
    }
}

async fn serve(listener: TcpListener, state: Arc<Mutex<State>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(&state, request)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: u16, headers: &[(String, String)], body: String) -> Response<Full<Bytes>> {
    let mut response = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json; charset=utf-8")
        .header("x-github-api-version-selected", "2022-11-28");
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn message(status: u16, text: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        &[],
        json!({"message": text, "documentation_url": "https://docs.github.com/rest"}).to_string(),
    )
}

fn rate_headers() -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit".into(), "5000".into()),
        ("x-ratelimit-remaining".into(), "4990".into()),
        ("x-ratelimit-used".into(), "10".into()),
        ("x-ratelimit-resource".into(), "core".into()),
    ]
}

fn answer(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let mut state = lock(state);
    state.received.push(Received {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
    });
    if header("authorization") != Some(format!("Bearer {}", state.token)) {
        return message(401, "Bad credentials");
    }
    if header("user-agent").is_none_or(|agent| agent.is_empty()) {
        return message(403, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header");
    }
    if header("accept").as_deref() != Some("application/vnd.github+json")
        || header("x-github-api-version").as_deref() != Some("2022-11-28")
    {
        return message(400, "Unsupported API version or media type");
    }
    let scripted = state
        .scripted
        .iter()
        .position(|answer| answer.method == method && path.contains(&answer.path));
    if let Some(position) = scripted {
        let answer = state
            .scripted
            .remove(position)
            .expect("the position exists");
        return respond(answer.status, &answer.headers, answer.body);
    }

    if method == Method::GET {
        let Some(hook) = path.strip_suffix("/deliveries") else {
            return message(404, "Not Found");
        };
        let Some(attempts) = state.hooks.get(hook) else {
            return message(404, "Not Found");
        };
        let params: BTreeMap<String, String> = form_pairs(&query);
        let per_page = params
            .get("per_page")
            .and_then(|value| value.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 100)
            .min(state.page_size);
        let offset = match params.get("cursor") {
            None => 0,
            Some(cursor) => match decode_cursor(cursor) {
                Some(offset) => offset,
                None => return message(422, "Invalid cursor"),
            },
        };
        let end = (offset + per_page).min(attempts.len());
        let page: Vec<Value> = attempts[offset.min(end)..end]
            .iter()
            .map(Attempt::json)
            .collect();
        let mut headers = rate_headers();
        if end < attempts.len() {
            headers.push((
                "link".into(),
                format!(
                    "<http://{host}{hook}/deliveries?per_page={per_page}&cursor={}>; rel=\"next\"",
                    encode_cursor(end),
                    host = header("host").unwrap_or_default(),
                ),
            ));
        }
        return respond(200, &headers, Value::Array(page).to_string());
    }

    if method == Method::POST {
        let Some(rest) = path.strip_suffix("/attempts") else {
            return message(404, "Not Found");
        };
        let Some((hook, id)) = rest.rsplit_once("/deliveries/") else {
            return message(404, "Not Found");
        };
        let Ok(id) = id.parse::<u64>() else {
            return message(404, "Not Found");
        };
        let guid = state
            .hooks
            .get(hook)
            .and_then(|attempts| attempts.iter().find(|attempt| attempt.id == id))
            .map(|attempt| attempt.guid.clone());
        let Some(guid) = guid else {
            return message(404, "Not Found");
        };
        if state.redeliveries_succeed {
            state.next_id += 1;
            let attempt = Attempt {
                id: state.next_id,
                guid,
                delivered_at: OffsetDateTime::now_utc(),
                status_code: 202,
                redelivery: true,
            };
            state
                .hooks
                .get_mut(hook)
                .expect("the hook exists")
                .insert(0, attempt);
        }
        return respond(202, &rate_headers(), "{}".into());
    }
    message(404, "Not Found")
}

fn form_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.replace("%3D", "=")))
        .collect()
}

/// Opaque to the client, as GitHub's are: `v1_` and a number in base 36, padded with `=`.
fn encode_cursor(offset: usize) -> String {
    let mut digits = Vec::new();
    let mut rest = offset;
    loop {
        digits.push(char::from_digit((rest % 36) as u32, 36).expect("a digit"));
        rest /= 36;
        if rest == 0 {
            break;
        }
    }
    let digits: String = digits.into_iter().rev().collect();
    format!("v1_{digits}%3D")
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let digits = cursor.strip_prefix("v1_")?.strip_suffix('=')?;
    usize::from_str_radix(digits, 36).ok()
}

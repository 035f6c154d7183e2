//! A counting proxy in front of the emulator: the binaries under test get its URL as
//! `AWS_ENDPOINT_URL`, and it counts every AWS call they make by its `X-Amz-Target`
//! (`AmazonSQS.SendMessage`, `DynamoDB_20120810.PutItem`, ...), on the wire, whatever the
//! code that made it.
//!
//! It also keeps the binaries' connections alive: moto answers `Connection: close`, which
//! would make an SDK open a TCP connection per call, as SQS and DynamoDB never make it do.
//! The proxy serves HTTP/1.1 with keep-alive and leaves the reconnecting to its own side.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// AWS calls by `X-Amz-Target`; calls without one (S3's REST calls) by method and path's
/// first segment, e.g. `GET /bucket`.
#[derive(Debug, Clone, Default)]
pub struct Calls(BTreeMap<String, u64>);

/// The DynamoDB operations that write.
const DYNAMODB_WRITES: [&str; 5] = [
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "TransactWriteItems",
    "BatchWriteItem",
];

/// The SQS operations that queue a message.
const SQS_SENDS: [&str; 2] = ["SendMessage", "SendMessageBatch"];

impl Calls {
    /// The calls made between `earlier` and these.
    pub fn since(&self, earlier: &Calls) -> Calls {
        Calls(
            self.0
                .iter()
                .map(|(target, count)| {
                    let before = earlier.0.get(target).copied().unwrap_or(0);
                    (target.clone(), count - before.min(*count))
                })
                .filter(|(_, count)| *count > 0)
                .collect(),
        )
    }

    fn counted(&self, service_prefix: &str, operations: &[&str]) -> u64 {
        self.0
            .iter()
            .filter(|(target, _)| {
                target.split_once('.').is_some_and(|(service, operation)| {
                    service.starts_with(service_prefix) && operations.contains(&operation)
                })
            })
            .map(|(_, count)| count)
            .sum()
    }

    /// `PutItem`, `UpdateItem`, `DeleteItem`, `TransactWriteItems` and `BatchWriteItem`
    /// requests (a transaction or batch counts once: one request on the wire).
    pub fn dynamodb_writes(&self) -> u64 {
        self.counted("DynamoDB", &DYNAMODB_WRITES)
    }

    /// Every SQS call.
    pub fn sqs_calls(&self) -> u64 {
        self.0
            .iter()
            .filter(|(target, _)| target.starts_with("AmazonSQS."))
            .map(|(_, count)| count)
            .sum()
    }

    /// S3 `PUT`s into `bucket`: the archive's objects, for the processor.
    pub fn s3_puts(&self, bucket: &str) -> u64 {
        self.0.get(&format!("PUT /{bucket}")).copied().unwrap_or(0)
    }

    /// `SendMessage` and `SendMessageBatch` requests.
    pub fn sqs_sends(&self) -> u64 {
        self.counted("AmazonSQS", &SQS_SENDS)
    }
}

impl std::fmt::Display for Calls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let listed: Vec<String> = self
            .0
            .iter()
            .map(|(target, count)| format!("{target} x{count}"))
            .collect();
        f.write_str(&listed.join(", "))
    }
}

/// The proxy, listening on 127.0.0.1 until dropped.
#[derive(Debug)]
pub struct CountingProxy {
    url: String,
    calls: Arc<Mutex<Calls>>,
    server: JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl CountingProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        // No proxy from the environment: the emulator is on 127.0.0.1.
        let client = hookgate_tests::http_client().no_proxy().build()?;
        let calls = Arc::new(Mutex::new(Calls::default()));
        let forwarding = Arc::new(Forwarding {
            client,
            upstream: upstream.trim_end_matches('/').to_owned(),
            calls: calls.clone(),
        });
        let server = tokio::spawn(serve(listener, forwarding));
        Ok(Self { url, calls, server })
    }

    /// What the binaries are given as `AWS_ENDPOINT_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every call so far.
    pub fn calls(&self) -> Calls {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[derive(Debug)]
struct Forwarding {
    client: reqwest::Client,
    upstream: String,
    calls: Arc<Mutex<Calls>>,
}

async fn serve(listener: TcpListener, forwarding: Arc<Forwarding>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                // An SDK writes a request's head and body apart: with Nagle on, the second
                // part would wait for a delayed ACK.
                let _ = stream.set_nodelay(true);
                let forwarding = forwarding.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| {
                        let forwarding = forwarding.clone();
                        async move { Ok::<_, Infallible>(forwarding.forward(request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Headers that describe one connection, not the message: never forwarded either way.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TRANSFER_ENCODING
        || name == HOST
        || name == CONTENT_LENGTH
        || name.as_str() == "keep-alive"
}

impl Forwarding {
    async fn forward(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let target = match request.headers().get("x-amz-target") {
            Some(target) => String::from_utf8_lossy(target.as_bytes()).into_owned(),
            None => {
                let first = request.uri().path().split('/').nth(1).unwrap_or_default();
                format!("{} /{first}", request.method())
            }
        };
        *self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .entry(target)
            .or_default() += 1;
        match self.relay(request).await {
            Ok(response) => response,
            Err(error) => {
                let mut response = Response::new(Full::new(Bytes::from(format!(
                    "the bench's proxy could not reach the emulator: {error}"
                ))));
                *response.status_mut() = StatusCode::BAD_GATEWAY;
                response
            }
        }
    }

    async fn relay(&self, request: Request<Incoming>) -> anyhow::Result<Response<Full<Bytes>>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let path = parts.uri.path_and_query().map_or("/", |path| path.as_str());
        let mut outgoing = self
            .client
            .request(parts.method, format!("{}{path}", self.upstream))
            .body(body);
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        let answer = outgoing.send().await?;
        let mut response = Response::builder().status(answer.status());
        for (name, value) in answer.headers() {
            if !is_hop_by_hop(name) {
                response = response.header(name, value);
            }
        }
        let body = answer.bytes().await?;
        Ok(response.body(Full::new(body))?)
    }
}

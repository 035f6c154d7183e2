//! Running a built function binary the way Lambda runs it, for end-to-end tests.
//!
//! Lambda starts a function's binary with `AWS_LAMBDA_RUNTIME_API` naming an HTTP endpoint;
//! the binary's runtime loop (`lambda_runtime`) polls it for the next event and posts back
//! the answer or an error. [`LambdaFunction`] is that endpoint, the 2018-06-01 Runtime API
//! (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>), served on 127.0.0.1
//! together with the spawned binary. A test therefore exercises exactly what Lambda would
//! run, `main`, its init and the runtime loop included, without Docker or cargo-lambda.
//!
//! Everything is bounded in time, and the binary is killed when the [`LambdaFunction`] is
//! dropped, so a failing test never leaves a process or a hung poll behind.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// How long [`LambdaFunction::invoke`] waits for an answer: more than a receiver's own SDK
/// timeouts (a cold start included), less than a test runner's patience.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`LambdaFunction::ready`] waits for the first poll, which comes after init.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(20);

const API_VERSION: &str = "/2018-06-01/runtime";

/// The most output kept per function; a runaway log must not exhaust the test's memory.
const OUTPUT_LIMIT: usize = 1 << 20;

/// Variables passed through from the test's environment. Nothing else is: a developer's
/// AWS profile or credentials must not reach a binary that is meant to talk to the emulator.
const PASSED_THROUGH: [&str; 3] = ["PATH", "RUST_LOG", "RUST_BACKTRACE"];

/// A command for one of the built binaries with a clean environment: only
/// [`PASSED_THROUGH`] comes from the test's; the test gives everything else explicitly.
pub fn clean_command(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    command.env_clear();
    for name in PASSED_THROUGH {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
}

/// A function did not answer an invocation (or did not get ready) with a response.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error(
        "{function}: {binary} does not exist; build the functions first with \
         `cargo build --workspace --bins`"
    )]
    MissingBinary { function: String, binary: PathBuf },
    #[error("{function}: cannot start {binary}: {source}")]
    Spawn {
        function: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("{function}: the Runtime API cannot listen on 127.0.0.1: {source}")]
    Listen {
        function: String,
        source: std::io::Error,
    },
    #[error("{function} reported an invocation error: {body}")]
    Function { function: String, body: String },
    #[error("{function} reported an init error: {body}\n--- its output ---\n{output}")]
    Init {
        function: String,
        body: String,
        output: String,
    },
    #[error(
        "{function} exited ({}) before answering\n--- its output ---\n{output}",
        describe_exit(.status)
    )]
    Exited {
        function: String,
        /// `None` when waiting for the process failed.
        status: Option<ExitStatus>,
        output: String,
    },
    #[error("{function} did not answer within {timeout:?}\n--- its output ---\n{output}")]
    TimedOut {
        function: String,
        timeout: Duration,
        output: String,
    },
    #[error("{function} answered with something that is not JSON ({error}): {body}")]
    NotJson {
        function: String,
        error: serde_json::Error,
        body: String,
    },
}

fn describe_exit(status: &Option<ExitStatus>) -> String {
    status.map_or_else(|| "status unknown".to_owned(), |status| status.to_string())
}

/// How an invocation ended, as the binary posted it.
#[derive(Debug)]
enum Outcome {
    Response(Bytes),
    Error(Bytes),
}

/// An event waiting for the binary's next poll.
#[derive(Debug)]
struct Invocation {
    request_id: String,
    deadline_ms: u128,
    event: Bytes,
}

/// What the Runtime API's handlers share with [`LambdaFunction`].
#[derive(Debug)]
struct Api {
    function: String,
    invocations: tokio::sync::Mutex<mpsc::UnboundedReceiver<Invocation>>,
    pending: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: watch::Sender<Option<String>>,
    polled: watch::Sender<bool>,
}

/// A function binary running against a Runtime API of ours.
#[derive(Debug)]
pub struct LambdaFunction {
    api: Arc<Api>,
    invocations: mpsc::UnboundedSender<Invocation>,
    /// `None` while the binary runs; then its exit status, if waiting for it worked.
    exit: watch::Receiver<Option<Option<ExitStatus>>>,
    output: Arc<Mutex<String>>,
    /// The request id of each invocation handed to the binary, in order.
    request_ids: Mutex<Vec<String>>,
    /// The binary's process id; `None` only if it had exited before it could be read.
    pid: Option<u32>,
    address: SocketAddr,
    server: JoinHandle<()>,
    supervisor: JoinHandle<()>,
}

impl Drop for LambdaFunction {
    fn drop(&mut self) {
        // The supervisor owns the child, spawned with `kill_on_drop`: aborting it kills the
        // binary, and aborting the server drops every connection it serves.
        self.supervisor.abort();
        self.server.abort();
    }
}

/// Where `cargo build --workspace --bins` puts the function binaries.
pub fn binary_directory() -> PathBuf {
    target_directory().join("debug")
}

/// The workspace's target directory: `CARGO_TARGET_DIR`, or `target/`.
pub fn target_directory() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => {
            let target = PathBuf::from(target);
            // A relative target directory is relative to where cargo ran: the workspace.
            if target.is_relative() {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("..")
                    .join(target)
            } else {
                target
            }
        }
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

impl LambdaFunction {
    /// Starts `target/debug/<function>` with the variables Lambda sets, then `env`. The
    /// binary inherits nothing else from the test but `PATH`, `RUST_LOG` and
    /// `RUST_BACKTRACE`.
    ///
    /// The binary is not rebuilt here: it is the one the last `cargo build` left.
    pub async fn start<K, V>(
        function: &str,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, InvocationError>
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        Self::start_binary(function, binary_directory().join(function), env).await
    }

    /// [`LambdaFunction::start`] for the binary at `binary` (a release build, say), run as
    /// the function named `function`.
    pub async fn start_binary<K, V>(
        function: &str,
        binary: PathBuf,
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, InvocationError>
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        if !binary.is_file() {
            return Err(InvocationError::MissingBinary {
                function: function.to_owned(),
                binary,
            });
        }

        let listener =
            TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| InvocationError::Listen {
                    function: function.to_owned(),
                    source,
                })?;
        let address = listener
            .local_addr()
            .map_err(|source| InvocationError::Listen {
                function: function.to_owned(),
                source,
            })?;
        let (invocations, queued) = mpsc::unbounded_channel();
        let api = Arc::new(Api {
            function: function.to_owned(),
            invocations: tokio::sync::Mutex::new(queued),
            pending: Mutex::new(HashMap::new()),
            init_error: watch::Sender::new(None),
            polled: watch::Sender::new(false),
        });
        let server = tokio::spawn(serve(listener, api.clone()));

        let mut command = clean_command(&binary);
        command
            .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "e2e")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                server.abort();
                return Err(InvocationError::Spawn {
                    function: function.to_owned(),
                    binary,
                    source,
                });
            }
        };

        let pid = child.id();
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = JoinSet::new();
        if let Some(stdout) = child.stdout.take() {
            readers.spawn(capture(stdout, output.clone()));
        }
        if let Some(stderr) = child.stderr.take() {
            readers.spawn(capture(stderr, output.clone()));
        }
        let (exited, exit) = watch::channel(None);
        let supervisor = tokio::spawn(async move {
            let status = child.wait().await.ok();
            // The exit is only reported once its last words are captured. Bounded, in case
            // something the binary started still holds its pipes open.
            let _ = tokio::time::timeout(Duration::from_secs(2), readers.join_all()).await;
            exited.send_replace(Some(status));
        });

        Ok(Self {
            api,
            invocations,
            exit,
            output,
            request_ids: Mutex::default(),
            pid,
            address,
            server,
            supervisor,
        })
    }

    /// [`LambdaFunction::start`], then [`LambdaFunction::ready`]: the function, its init
    /// done. A function that cannot start fails the test, saying why.
    pub async fn start_ready<K, V>(function: &str, env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let started = Self::start(function, env)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        started
            .ready()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        started
    }

    /// The Runtime API's address, as given to the binary in `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api(&self) -> SocketAddr {
        self.address
    }

    /// The binary's process id, for reading what it uses from `/proc`; `None` only if it
    /// exited as soon as it started.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Everything the binary has printed so far, stdout and stderr interleaved by line.
    pub fn output(&self) -> String {
        lock(&self.output).clone()
    }

    /// The request id of each invocation so far, in order: what Lambda's logs call
    /// `requestId`. [`trace_id`] gives the X-Ray trace id each was sent with.
    pub fn request_ids(&self) -> Vec<String> {
        lock(&self.request_ids).clone()
    }

    /// Waits until the binary has finished its init and polls for an event; an init that
    /// fails, exits or takes longer than [`INIT_TIMEOUT`] is the error.
    pub async fn ready(&self) -> Result<(), InvocationError> {
        let mut polled = self.api.polled.subscribe();
        self.settle(
            async move {
                let _ = polled.wait_for(|polled| *polled).await;
            },
            INIT_TIMEOUT,
        )
        .await
    }

    /// Hands `event` to the binary's next poll and returns its response, waiting at most
    /// [`INVOKE_TIMEOUT`].
    pub async fn invoke(
        &self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, InvocationError> {
        self.invoke_within(event, INVOKE_TIMEOUT).await
    }

    /// [`LambdaFunction::invoke`] with its own timeout, which is also the deadline the
    /// binary is told.
    pub async fn invoke_within(
        &self,
        event: &serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, InvocationError> {
        let request_id = request_id();
        lock(&self.request_ids).push(request_id.clone());
        let (answer, answered) = oneshot::channel();
        lock(&self.api.pending).insert(request_id.clone(), answer);
        let invocation = Invocation {
            request_id: request_id.clone(),
            deadline_ms: epoch_millis() + timeout.as_millis(),
            event: Bytes::from(event.to_string()),
        };
        // The receiving half lives as long as `self.api`, so this cannot fail.
        let _ = self.invocations.send(invocation);

        let outcome = self.settle(answered, timeout).await;
        lock(&self.api.pending).remove(&request_id);
        let body = match outcome? {
            Ok(Outcome::Response(body)) => body,
            Ok(Outcome::Error(body)) => {
                return Err(InvocationError::Function {
                    function: self.api.function.clone(),
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            }
            // The sender is only dropped with the API, which `self` holds.
            Err(_) => {
                return Err(self.timed_out(timeout));
            }
        };
        serde_json::from_slice(&body).map_err(|error| InvocationError::NotJson {
            function: self.api.function.clone(),
            error,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// Waits for `outcome`, unless the binary reports an init error, exits, or `timeout`
    /// passes first.
    async fn settle<T>(
        &self,
        outcome: impl std::future::Future<Output = T>,
        timeout: Duration,
    ) -> Result<T, InvocationError> {
        let mut init_error = self.api.init_error.subscribe();
        let mut exit = self.exit.clone();
        tokio::select! {
            // An answer posted just before the binary exited still counts.
            biased;
            value = outcome => Ok(value),
            body = async {
                match init_error.wait_for(Option::is_some).await {
                    Ok(body) => body.clone().unwrap_or_default(),
                    Err(_) => std::future::pending().await,
                }
            } => {
                // The runtime exits after reporting; give it a moment so the output is whole.
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    exit.wait_for(Option::is_some),
                )
                .await;
                Err(InvocationError::Init {
                    function: self.api.function.clone(),
                    body,
                    output: self.output(),
                })
            }
            status = async {
                match exit.wait_for(Option::is_some).await {
                    Ok(status) => status.flatten(),
                    Err(_) => std::future::pending().await,
                }
            } => Err(InvocationError::Exited {
                function: self.api.function.clone(),
                status,
                output: self.output(),
            }),
            () = tokio::time::sleep(timeout) => Err(self.timed_out(timeout)),
        }
    }

    fn timed_out(&self, timeout: Duration) -> InvocationError {
        InvocationError::TimedOut {
            function: self.api.function.clone(),
            timeout,
            output: self.output(),
        }
    }
}

/// Accepts connections until the task is aborted; the connections go with it.
async fn serve(listener: TcpListener, api: Arc<Api>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Lambda's Runtime API answers at once: with Nagle's algorithm on, a
                // response written in two parts waits for the binary's delayed ACK (about
                // 40 ms) on a kept-alive connection.
                let _ = stream.set_nodelay(true);
                let api = api.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| route(api.clone(), request));
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

async fn route(
    api: Arc<Api>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let Some(path) = request.uri().path().strip_prefix(API_VERSION) else {
        return Ok(status(StatusCode::NOT_FOUND));
    };
    let path = path.to_owned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    Ok(match (method, path.as_str()) {
        (Method::GET, "/invocation/next") => next(&api).await,
        (Method::POST, "/init/error") => {
            api.init_error
                .send_replace(Some(String::from_utf8_lossy(&body).into_owned()));
            accepted()
        }
        (Method::POST, path) => {
            let outcome = path.strip_prefix("/invocation/").and_then(|rest| {
                if let Some(id) = rest.strip_suffix("/response") {
                    Some((id, Outcome::Response(body)))
                } else {
                    rest.strip_suffix("/error")
                        .map(|id| (id, Outcome::Error(body)))
                }
            });
            match outcome {
                Some((id, outcome)) => match lock(&api.pending).remove(id) {
                    Some(waiting) => {
                        let _ = waiting.send(outcome);
                        accepted()
                    }
                    // What the Runtime API answers for an id it did not hand out, or one
                    // already answered.
                    None => status(StatusCode::BAD_REQUEST),
                },
                None => status(StatusCode::NOT_FOUND),
            }
        }
        _ => status(StatusCode::NOT_FOUND),
    })
}

/// Answers a poll with the next event, holding the poll open until there is one, as Lambda
/// does.
async fn next(api: &Api) -> Response<Full<Bytes>> {
    api.polled.send_replace(true);
    let invocation = api.invocations.lock().await.recv().await;
    let Some(invocation) = invocation else {
        return status(StatusCode::GONE);
    };
    let arn = format!(
        "arn:aws:lambda:us-east-1:123456789012:function:{}",
        api.function
    );
    let trace_id = trace_id(&invocation.request_id);
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", &invocation.request_id)
        .header(
            "Lambda-Runtime-Deadline-Ms",
            invocation.deadline_ms.to_string(),
        )
        .header("Lambda-Runtime-Invoked-Function-Arn", arn)
        .header("Lambda-Runtime-Trace-Id", trace_id)
        .body(Full::new(invocation.event))
        .unwrap_or_else(|_| status(StatusCode::INTERNAL_SERVER_ERROR))
}

fn accepted() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(br#"{"status":"OK"}"#)));
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = code;
    response
}

/// Copies a pipe into `output` line by line, up to [`OUTPUT_LIMIT`].
async fn capture(pipe: impl AsyncRead + Unpin, output: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut output = lock(&output);
        if output.len() + line.len() < OUTPUT_LIMIT {
            output.push_str(&line);
            output.push('\n');
        }
    }
}

/// A request id shaped like Lambda's (a UUID), unique within the test run.
/// The X-Ray trace id (`Lambda-Runtime-Trace-Id`) the invocation `request_id` is sent with.
pub fn trace_id(request_id: &str) -> String {
    let digits = request_id.replace('-', "");
    format!(
        "Root=1-{}-{};Parent={};Sampled=1",
        &digits[..8],
        &digits[8..32],
        &digits[16..32]
    )
}

fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (nanos >> 32) as u32,
        (nanos >> 16) as u16,
        std::process::id() & 0xfff,
        (count >> 48) & 0xfff,
        count & 0xffff_ffff_ffff,
    )
}

fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis())
        .unwrap_or_default()
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

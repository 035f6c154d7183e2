//! Running the `hookgate` binary in end-to-end tests: `hookgate dev` as a child process
//! that can be killed with SIGKILL and started again on the same data, and one-shot
//! commands (`send`, `dlq`, `routes`) with their output.
//!
//! The binary is the one the last `cargo build --workspace --bins` left in `target/debug`;
//! it is not rebuilt here.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;

use crate::lambda_runtime_api::{binary_directory, clean_command};

/// The test agents' Standard Webhooks secret, which `http` actions get from the variable
/// `AGENT_SECRET` (see [`routes_to_agent`]).
pub const AGENT_SECRET: &str = "whsec_aG9va2dhdGUtZTJlLWFnZW50LXNlY3JldA==";

/// Writes `DIRECTORY/routes.toml`: every event of `provider` (`"*"` for all) to one `http`
/// action, `agent`, posting to `agent_url`, signed with `AGENT_SECRET`, with a timeout of
/// `timeout_secs`.
pub fn routes_to_agent(
    directory: &Path,
    provider: &str,
    agent_url: &str,
    timeout_secs: u64,
) -> PathBuf {
    let path = directory.join("routes.toml");
    let routes = format!(
        "[[route]]\nname = \"to the agent\"\nprovider = \"{provider}\"\nevents = [\"*\"]\nactions = [\"agent\"]\n\n\
         [action.agent]\ntype = \"http\"\nurl = \"{agent_url}\"\nsecret_env = \"AGENT_SECRET\"\ntimeout_secs = {timeout_secs}\n"
    );
    std::fs::write(&path, routes).expect("the routes file is written");
    path
}

/// `hookgate dev` on its embedded backends in `directory/data`, every event routed to one
/// `http` action posting to `agent_url` (signed with `AGENT_SECRET`), with `RUST_LOG=info`
/// and `env` besides. Returns the server and its data directory.
pub async fn dev_routing_to(
    directory: &Path,
    agent_url: &str,
    env: &[(&str, &str)],
) -> (DevServer, PathBuf) {
    let routes = routes_to_agent(directory, "*", agent_url, 5);
    let data_dir = directory.join("data");
    let mut variables: Vec<(String, String)> = vec![
        ("AGENT_SECRET".to_owned(), AGENT_SECRET.to_owned()),
        ("RUST_LOG".to_owned(), "info".to_owned()),
    ];
    variables.extend(
        env.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    let dev = DevServer::start(
        &data_dir,
        &["--routes", routes.to_str().expect("a UTF-8 path")],
        variables,
    )
    .await;
    (dev, data_dir)
}

/// What `hookgate dev` prints first once it serves.
const SERVING: &str = "hookgate dev: serving on http://";

/// How long `hookgate dev` may take to open its database and start serving.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub fn binary() -> PathBuf {
    binary_directory().join("hookgate")
}

/// A fresh, empty directory under the system's temporary directory, removed (with
/// everything in it) when dropped. It dereferences to its path.
#[derive(Debug)]
pub struct ScratchDirectory(PathBuf);

impl std::ops::Deref for ScratchDirectory {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A [`ScratchDirectory`] whose name starts with `hookgate-{label}`.
pub fn scratch_directory(label: &str) -> ScratchDirectory {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let directory = std::env::temp_dir().join(format!(
        "hookgate-{label}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("a scratch directory can be made");
    ScratchDirectory(directory)
}

/// A running `hookgate dev`. Dropping it kills the process.
#[derive(Debug)]
pub struct DevServer {
    child: Child,
    base_url: String,
    /// Its log (stderr) so far is collected by a task; read with [`DevServer::log`].
    log: std::sync::Arc<std::sync::Mutex<String>>,
    /// What it printed after its first line; read with [`DevServer::banner`].
    banner: std::sync::Arc<std::sync::Mutex<String>>,
}

impl DevServer {
    /// Starts `hookgate dev --port 0 --data-dir DATA_DIR` plus `args`, with `env`, and waits
    /// for its banner.
    pub async fn start<K, V>(
        data_dir: &Path,
        args: &[&str],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let binary = binary();
        assert!(
            binary.is_file(),
            "{} is missing: run `cargo build --workspace --bins` first",
            binary.display()
        );
        let mut command = clean_command(&binary);
        command
            .arg("dev")
            .arg("--port")
            .arg("0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("hookgate dev starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        collect(child.stderr.take().expect("stderr is piped"), log.clone());
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(START_TIMEOUT, lines.next_line()).await;
        let base_url = match first {
            Ok(Ok(Some(line))) if line.starts_with(SERVING) => {
                format!("http://{}", &line[SERVING.len()..])
            }
            other => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "hookgate dev did not start ({other:?}); its log:\n{}",
                    log.lock().map(|log| log.clone()).unwrap_or_default()
                );
            }
        };
        // The rest of the banner, kept; and the pipe drained.
        let banner = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let kept = banner.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(mut banner) = kept.lock() {
                    banner.push_str(&line);
                    banner.push('\n');
                }
            }
        });
        Self {
            child,
            base_url,
            log,
            banner,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The receiver's URL for a provider.
    pub fn webhook_url(&self, provider: &str) -> String {
        format!("{}/webhooks/{provider}", self.base_url)
    }

    /// Kills the process with SIGKILL, as a crash or an OOM kill would, and reaps it.
    pub async fn kill_hard(mut self) {
        self.child.start_kill().expect("hookgate dev can be killed");
        let _ = self.child.wait().await;
    }

    /// Asks the process to stop (SIGTERM) and waits for it, bounded.
    pub async fn stop(mut self) -> Option<std::process::ExitStatus> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Waits until its log contains `needle` (the log is read from a pipe, so a line
    /// written a moment ago may not be in yet), and panics with the log after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.log().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "`{needle}` was not logged within {timeout:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The banner's lines after the first, as printed so far.
    /// Waits until the banner has a line containing `needle`, and panics after `timeout`:
    /// the banner after its first line is read as the process writes it.
    pub async fn wait_for_banner(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.banner().contains(needle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the banner has no `{needle}` after {timeout:?}:\n{}",
                self.banner()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn banner(&self) -> String {
        self.banner
            .lock()
            .map(|banner| banner.clone())
            .unwrap_or_default()
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }
}

fn collect(
    stream: impl AsyncRead + Unpin + Send + 'static,
    into: std::sync::Arc<std::sync::Mutex<String>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut log) = into.lock() {
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
}

/// Runs `hookgate ARGS` to completion (bounded) with `env` and returns its output.
pub async fn hookgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = clean_command(&binary());
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .unwrap_or_else(|_| panic!("hookgate {args:?} did not finish within 60 s"))
        .expect("hookgate runs")
}

/// Runs `hookgate ARGS` with its stdout a pipe whose reader has already gone, as in
/// `hookgate ARGS | head -0`, and returns its exit status and stderr.
pub async fn hookgate_into_a_closed_pipe(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut command = clean_command(&binary());
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("hookgate runs");
    // The reader goes before the tool can have written anything (spawn returns once the
    // new process has started, well before it has parsed its command line).
    drop(child.stdout.take());
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("hookgate {args:?} did not finish within 60 s"))
        .expect("hookgate runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs `hookgate send PROVIDER --url URL` with the provider's default sample, checks that
/// it succeeded (the gateway answered 2xx), and returns its output.
pub async fn send_accepted(provider: &str, url: &str) -> Output {
    let sent = hookgate(&["send", provider, "--url", url], &[]).await;
    assert!(sent.status.success(), "{}", printed(&sent));
    sent
}

/// Its stdout and stderr, for assertion messages.
pub fn printed(output: &Output) -> String {
    format!(
        "status {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Waits until the embedded queue in `data_dir` holds nothing visible or in flight (a
/// message put off for a retry counts as in flight), and panics after `timeout`.
pub async fn wait_until_drained(data_dir: &Path, timeout: Duration) {
    let queue = hookgate::sqlite::SqliteQueue::open(
        &data_dir.join("hookgate.sqlite"),
        hookgate::sqlite::SqliteQueueSettings::default(),
    )
    .expect("the test opens the queue beside hookgate dev");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let depth = queue.depth().expect("the queue answers");
        if depth.visible == 0 && depth.in_flight == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue did not drain within {timeout:?}: {depth:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

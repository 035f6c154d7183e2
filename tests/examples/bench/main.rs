//! The one-command benchmark, run by `scripts/bench`: hookgate's release binaries, and the
//! two floors the bench builds itself (`bench/`), each run as Lambda runs it (the Runtime
//! API harness of `hookgate_tests::lambda_runtime_api`) against the emulator, side by side
//! in one interleaved run: in each round every binary in turn, so that whatever else the
//! machine is doing weighs on all of them alike. It prints markdown tables of min-max
//! ranges over the rounds.
//!
//! Per binary and round, a fresh process:
//!
//! - cold: exec to the harness receiving the first invocation's answer (wall), and the CPU
//!   time of all the process's threads at that moment;
//! - warm: CPU time and context switches per invocation over a fixed number of invocations,
//!   after a few unmeasured ones. The receivers and floors of a round all keep running and
//!   take these in turns of a tenth each, so that a slow minute of this machine or of the
//!   emulator weighs on every one of them alike (measured one after the other, a receiver's
//!   ratio to the floor swung from 0.61x to 1.0x between rounds; in turns, within 0.1x);
//! - peak RSS (`VmHWM`) at the end, and the binary zipped as `bootstrap`, as Lambda takes it;
//! - AWS calls counted on the wire by a proxy in front of the emulator ([`proxy`]).
//!
//! Receivers (and the floors) get a correctly signed 16 KB delivery of their provider; the
//! processor gets SQS batches of 10 real envelopes (GitHub's, whose id is unsigned, and
//! Stripe's, whose id is signed), each event routed to one HTTP action on a local agent, and
//! then the same batches again as duplicates.
//!
//! Only the child processes are measured; the harness, the proxy and the agent run in this
//! process. Usage: `bench [--rounds N] [--quick] [--only NAME,...] [--release-dir DIR]`
//! (`target/release` by default), with `HOOKGATE_TEST_AWS_ENDPOINT` naming the emulator.

mod events;
mod proxy;
mod report;
mod usage;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hookgate::provider::Provider;
use hookgate_samples::{receiver_environment, GITHUB_TEST_SECRET};
use hookgate_tests::agent::{Agent, Answer};
use hookgate_tests::emulator;
use hookgate_tests::lambda_runtime_api::{self, LambdaFunction};
use serde_json::Value;

use proxy::{Calls, CountingProxy};
use report::{Measured, PhaseFigures, ProcessorFigures, Report};
use usage::{ThreadUsage, Usage};

/// The size of every delivery's body.
const BODY_BYTES: usize = 16 * 1024;

/// Records per SQS batch: the event source's default `BatchSize`, as the template sets it.
const PROCESSOR_BATCH: usize = 10;

/// The Standard Webhooks secret the processor's HTTP action signs with (the agent does not
/// check it: its work is not what is measured).
const AGENT_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// How long one invocation may take before the bench gives up: far more than any should.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(20);

/// A binary the bench measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Receiver(Provider),
    Processor,
    /// The least `lambda_runtime` function (`bench/hello-world`).
    HelloWorld,
    /// A GitHub receiver as anyone would write it (`bench/floor-receiver`).
    FloorReceiver,
}

impl Subject {
    /// Every subject, in the order of the tables and of each round.
    pub fn all() -> Vec<Subject> {
        let mut all: Vec<Subject> = Provider::ALL.into_iter().map(Subject::Receiver).collect();
        all.extend([
            Subject::Processor,
            Subject::HelloWorld,
            Subject::FloorReceiver,
        ]);
        all
    }

    /// The binary's (and crate's) name.
    pub fn name(self) -> String {
        match self {
            Subject::Receiver(provider) => format!("receiver-{provider}"),
            Subject::Processor => "processor".to_owned(),
            Subject::HelloWorld => "hello-world".to_owned(),
            Subject::FloorReceiver => "floor-receiver".to_owned(),
        }
    }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rounds: usize,
    /// Unmeasured warm invocations before the measured ones.
    pub warm_up: usize,
    /// Measured warm invocations of a receiver or floor.
    pub webhooks: usize,
    /// Batches per processor phase (new and duplicate, GitHub and Stripe).
    pub batches: usize,
    pub subjects: Vec<Subject>,
    /// Where the release binaries are: `target/release` unless told.
    pub release_dir: PathBuf,
    /// The run stops starting measurements after this long, and reports what it has.
    pub budget: Duration,
}

fn usage_error(message: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{message}\nusage: bench [--rounds N] [--quick] [--only NAME,...] [--release-dir DIR]"
    )
}

impl Plan {
    fn from_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut rounds = None;
        let mut quick = false;
        let mut only: Option<Vec<String>> = None;
        let mut release_dir = None;
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .ok_or_else(|| usage_error(&format!("{name} needs a value")))
            };
            match arg.as_str() {
                "--rounds" => {
                    let count: usize = value("--rounds")?
                        .parse()
                        .map_err(|_| usage_error("--rounds takes a whole number"))?;
                    if !(1..=100).contains(&count) {
                        bail!(usage_error("--rounds takes 1 to 100"));
                    }
                    rounds = Some(count);
                }
                "--quick" => quick = true,
                "--only" => {
                    only = Some(
                        value("--only")?
                            .split(',')
                            .map(|name| name.trim().to_owned())
                            .filter(|name| !name.is_empty())
                            .collect(),
                    )
                }
                "--release-dir" => release_dir = Some(PathBuf::from(value("--release-dir")?)),
                other => bail!(usage_error(&format!("unknown argument {other}"))),
            }
        }
        let mut subjects = Subject::all();
        if let Some(only) = only {
            let known: Vec<String> = subjects.iter().map(|subject| subject.name()).collect();
            if let Some(unknown) = only.iter().find(|name| !known.contains(name)) {
                bail!(usage_error(&format!(
                    "--only: no binary named {unknown} (known: {})",
                    known.join(", ")
                )));
            }
            subjects.retain(|subject| only.contains(&subject.name()));
        }
        let release_dir =
            release_dir.unwrap_or_else(|| lambda_runtime_api::target_directory().join("release"));
        Ok(if quick {
            Plan {
                rounds: rounds.unwrap_or(2),
                warm_up: 3,
                webhooks: 20,
                batches: 2,
                subjects,
                release_dir,
                budget: Duration::from_secs(10 * 60),
            }
        } else {
            Plan {
                rounds: rounds.unwrap_or(5),
                warm_up: 10,
                webhooks: 200,
                batches: 10,
                subjects,
                release_dir,
                budget: Duration::from_secs(45 * 60),
            }
        })
    }
}

/// The proxy and the emulator, shared by every measurement.
struct Bench {
    plan: Plan,
    proxy: CountingProxy,
    /// Straight to the emulator, for making and removing queues and tables; not counted.
    sdk: aws_config::SdkConfig,
}

impl Bench {
    /// The AWS variables every binary gets: the proxy as the endpoint, dummy credentials.
    fn aws_environment(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.proxy.url().to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ]
    }

    /// A receiver or a floor, started on a queue of its own (moto slows as a queue fills)
    /// and answered its first and unmeasured invocations; measured warm by [`Self::take_turn`]
    /// and ended by [`Self::finish`].
    async fn start_receiver(&self, subject: Subject, round: usize) -> anyhow::Result<Running> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let queue_url = emulator::create_queue(&sqs, "bench").await?;
        let (provider, mut env, answer_status) = match subject {
            Subject::Receiver(provider) => (provider, receiver_environment(provider), 202),
            Subject::FloorReceiver => (
                Provider::Github,
                vec![("WEBHOOK_SECRET", GITHUB_TEST_SECRET.to_owned())],
                202,
            ),
            _ => (Provider::Github, Vec::new(), 200),
        };
        env.extend(self.aws_environment());
        env.push(("QUEUE_URL", queue_url.clone()));
        let event = events::api_gateway_event(provider, &format!("round-{round}"), BODY_BYTES);
        let (function, pid, cold) = self.cold_start(subject, env, &event).await?;
        let running = Running {
            subject,
            function,
            pid,
            event,
            answer_status,
            queue_url,
            figures: cold.figures,
            warm: ThreadUsage::default(),
            sqs_calls: 0,
            sqs_sends: 0,
        };
        running.check(&cold.first_answer)?;
        for _ in 0..self.plan.warm_up {
            running.invoke().await?;
        }
        Ok(running)
    }

    /// `webhooks` measured invocations of `running`, added to its warm figures.
    async fn take_turn(&self, running: &mut Running, webhooks: usize) -> anyhow::Result<()> {
        let calls = self.proxy.calls();
        let before = Usage::read(running.pid)?;
        for _ in 0..webhooks {
            running.invoke().await?;
        }
        let used = Usage::read(running.pid)?.since(&before);
        let calls = self.proxy.calls().since(&calls);
        running.warm.cpu_ns += used.cpu_ns;
        running.warm.switches += used.switches;
        running.sqs_calls += calls.sqs_calls();
        running.sqs_sends += calls.sqs_sends();
        Ok(())
    }

    /// The figures of `running` after its turns, its peak memory read before it ends.
    async fn finish(&self, running: Running) -> anyhow::Result<Measured> {
        let Running {
            function,
            pid,
            queue_url,
            mut figures,
            warm,
            sqs_calls,
            sqs_sends,
            ..
        } = running;
        let count = self.plan.webhooks as f64;
        figures.warm_cpu_us = warm.cpu_ns as f64 / 1e3 / count;
        figures.switches = warm.switches as f64 / count;
        figures.sqs_calls = Some(sqs_calls as f64 / count);
        figures.sqs_sends = Some(sqs_sends as f64 / count);
        figures.peak_rss_bytes = usage::peak_rss_bytes(pid)? as f64;
        drop(function);
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        let _ = sqs.delete_queue().queue_url(&queue_url).send().await;
        Ok(figures)
    }

    /// One round of the receivers and floors among `subjects`: each started in turn (the
    /// cold figures), then all kept running while they take turns of a few webhooks each,
    /// so that a slow minute on this machine (or in the emulator) weighs on every one of
    /// them alike, not on whichever was measured then.
    async fn receivers_round(
        &self,
        subjects: &[Subject],
        round: usize,
    ) -> anyhow::Result<Vec<(Subject, Measured)>> {
        let mut running = Vec::new();
        for subject in subjects {
            eprintln!(
                "bench: round {round}/{}: {} cold",
                self.plan.rounds,
                subject.name()
            );
            running.push(
                self.start_receiver(*subject, round)
                    .await
                    .with_context(|| format!("round {round}: {}", subject.name()))?,
            );
        }
        let turns = TURNS.min(self.plan.webhooks);
        eprintln!(
            "bench: round {round}/{}: {} webhooks each, in {turns} turns",
            self.plan.rounds, self.plan.webhooks
        );
        for turn in 0..turns {
            // The webhooks spread over the turns, the first turns taking any remainder.
            let webhooks =
                self.plan.webhooks / turns + usize::from(turn < self.plan.webhooks % turns);
            for running in &mut running {
                let name = running.subject.name();
                self.take_turn(running, webhooks)
                    .await
                    .with_context(|| format!("round {round}: {name}"))?;
            }
        }
        let mut measured = Vec::new();
        for running in running {
            let subject = running.subject;
            measured.push((subject, self.finish(running).await?));
        }
        Ok(measured)
    }

    /// Starts the subject's binary and hands it `first`; returns once it has answered, with
    /// the cold figures.
    async fn cold_start(
        &self,
        subject: Subject,
        env: Vec<(&'static str, String)>,
        first: &Value,
    ) -> anyhow::Result<(LambdaFunction, u32, ColdStart)> {
        let name = subject.name();
        let binary = self.plan.release_dir.join(&name);
        let calls = self.proxy.calls();
        let started = Instant::now();
        let function = LambdaFunction::start_binary(&name, binary, env).await?;
        let pid = function
            .pid()
            .with_context(|| format!("{name} exited as it started"))?;
        let first_answer = function.invoke_within(first, INVOKE_TIMEOUT).await?;
        let wall = started.elapsed();
        let cpu = Usage::read(pid)?.total().cpu_ns;
        let figures = Measured {
            cold_wall_ms: wall.as_secs_f64() * 1e3,
            cold_cpu_ms: cpu as f64 / 1e6,
            cold_calls: self.proxy.calls().since(&calls).to_string(),
            ..Measured::default()
        };
        Ok((
            function,
            pid,
            ColdStart {
                first_answer,
                figures,
            },
        ))
    }

    /// The processor on a fresh table, queues and archive bucket (deleted afterwards), as the
    /// stack runs it, its routes sending every event to one HTTP action on a local agent
    /// answering 200.
    async fn measure_processor(&self, round: usize) -> anyhow::Result<Measured> {
        let mut env = emulator::processor_environment("bench").await;
        let s3 = hookgate::aws::s3_client(&self.sdk);
        let bucket = emulator::create_bucket(&s3, "bench-archive")
            .await
            .context("the emulator creates the archive's bucket")?;
        env.push(("ARCHIVE_BUCKET", bucket.clone()));
        let setting = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let (queue_url, dlq_url, table) = (
            setting("QUEUE_URL"),
            setting("DLQ_URL"),
            setting("TABLE_NAME"),
        );
        let agent = Agent::builder()
            .otherwise(Answer::ok())
            .start()
            .await
            .context("the agent listens on 127.0.0.1")?;
        let routes = std::env::temp_dir().join(format!(
            "hookgate-bench-routes-{}-{round}.toml",
            std::process::id()
        ));
        std::fs::write(
            &routes,
            format!(
                "[[route]]\nname = \"every event to the agent\"\nprovider = \"*\"\n\
                 events = [\"*\"]\nactions = [\"agent\"]\n\n[action.agent]\ntype = \"http\"\n\
                 url = \"{}\"\nsecret_env = \"AGENT_SECRET\"\ntimeout_secs = 5\n",
                agent.url("/hooks")
            ),
        )?;
        env.retain(|(name, _)| !name.starts_with("AWS_"));
        env.extend(self.aws_environment());
        env.push(("ROUTES_FILE", routes.display().to_string()));
        env.push(("AGENT_SECRET", AGENT_SECRET.to_owned()));

        let queue_name = queue_url.rsplit('/').next().unwrap_or_default();
        let queue_arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue_name}");
        let measured = self
            .run_batches(env, &queue_arn, &agent, round, &bucket)
            .await;

        let _ = std::fs::remove_file(&routes);
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        for url in [&queue_url, &dlq_url] {
            let _ = sqs.delete_queue().queue_url(url).send().await;
        }
        let _ = aws_sdk_dynamodb::Client::new(&self.sdk)
            .delete_table()
            .table_name(&table)
            .send()
            .await;
        let _ = emulator::delete_bucket(&s3, &bucket).await;
        measured
    }

    async fn run_batches(
        &self,
        env: Vec<(&'static str, String)>,
        queue_arn: &str,
        agent: &Agent,
        round: usize,
        archive_bucket: &str,
    ) -> anyhow::Result<Measured> {
        let batch = |provider: Provider, name: &str, size: usize| -> Value {
            let messages: Vec<_> = (0..size)
                .map(|index| {
                    let unique = format!("{}-round-{round}-{name}-{index}", std::process::id());
                    (
                        format!("bench-{unique}"),
                        events::queue_message(provider, &unique, BODY_BYTES),
                    )
                })
                .collect();
            events::sqs_event(&messages, queue_arn)
        };
        let check = |answer: &Value| -> anyhow::Result<()> {
            if answer["batchItemFailures"] != serde_json::json!([]) {
                bail!("the processor reported failures: {answer}");
            }
            Ok(())
        };

        let first = batch(Provider::Github, "cold", 1);
        let (function, pid, mut measured) =
            self.cold_start(Subject::Processor, env, &first).await?;
        check(&measured.first_answer)?;
        let mut actions = 1;
        for warm_up in 0..self.plan.warm_up.div_ceil(PROCESSOR_BATCH) {
            let event = batch(
                Provider::Github,
                &format!("warm-up-{warm_up}"),
                PROCESSOR_BATCH,
            );
            check(&function.invoke_within(&event, INVOKE_TIMEOUT).await?)?;
            actions += PROCESSOR_BATCH;
        }

        let mut phases = Vec::new();
        for provider in [Provider::Github, Provider::Stripe] {
            let batches: Vec<Value> = (0..self.plan.batches)
                .map(|index| batch(provider, &format!("{provider}-{index}"), PROCESSOR_BATCH))
                .collect();
            // The same batches twice: new events, then every one of them a duplicate.
            for _ in ["new", "duplicate"] {
                let calls = self.proxy.calls();
                let before = Usage::read(pid)?;
                for event in &batches {
                    check(&function.invoke_within(event, INVOKE_TIMEOUT).await?)?;
                }
                let used = Usage::read(pid)?.since(&before);
                let calls: Calls = self.proxy.calls().since(&calls);
                let events = (batches.len() * PROCESSOR_BATCH) as f64;
                phases.push(PhaseFigures {
                    cpu_us: used.cpu_ns as f64 / 1e3 / events,
                    switches: used.switches as f64 / events,
                    dynamodb_writes: calls.dynamodb_writes() as f64 / events,
                    sqs_calls: calls.sqs_calls() as f64 / events,
                    archive_puts: calls.s3_puts(archive_bucket) as f64 / events,
                    calls: calls.to_string(),
                });
            }
            actions += batches.len() * PROCESSOR_BATCH;
        }
        measured.figures.peak_rss_bytes = usage::peak_rss_bytes(pid)? as f64;

        // Every new event's action ran, once: otherwise the figures are of something else.
        let called = agent.calls().len();
        if called != actions {
            bail!(
                "the agent was called {called} times for {actions} new events\n{}",
                function.output()
            );
        }
        let [github_new, github_duplicate, stripe_new, stripe_duplicate] =
            <[PhaseFigures; 4]>::try_from(phases)
                .map_err(|_| anyhow::anyhow!("four phases are measured"))?;
        measured.figures.warm_cpu_us = github_new.cpu_us;
        measured.figures.switches = github_new.switches;
        measured.figures.processor = Some(ProcessorFigures {
            github_new,
            github_duplicate,
            stripe_new,
            stripe_duplicate,
        });
        Ok(measured.figures)
    }
}

/// A receiver or floor kept running through a round, and what its turns have used.
struct Running {
    subject: Subject,
    function: LambdaFunction,
    pid: u32,
    /// The delivery it is handed at every invocation.
    event: Value,
    answer_status: u64,
    queue_url: String,
    /// The cold figures, then the rest once finished.
    figures: Measured,
    warm: ThreadUsage,
    sqs_calls: u64,
    sqs_sends: u64,
}

impl Running {
    /// Hands it its delivery once, and checks the answer.
    async fn invoke(&self) -> anyhow::Result<()> {
        let answer = self
            .function
            .invoke_within(&self.event, INVOKE_TIMEOUT)
            .await?;
        self.check(&answer)
    }

    fn check(&self, answer: &Value) -> anyhow::Result<()> {
        if answer["statusCode"].as_u64() != Some(self.answer_status) {
            bail!(
                "{} answered {answer} instead of {}",
                self.subject.name(),
                self.answer_status
            );
        }
        Ok(())
    }
}

/// Turns per round in which the running receivers and floors take their measured webhooks.
const TURNS: usize = 10;

/// A binary's first answer, and the cold figures taken with it.
struct ColdStart {
    first_answer: Value,
    figures: Measured,
}

/// The binary zipped as `bootstrap` with deflate, as a Lambda deployment package is, in
/// bytes. Python's zipfile makes the zip: what `sam build` and most tools produce.
fn zipped_size(binary: &std::path::Path) -> anyhow::Result<u64> {
    let zip = std::env::temp_dir().join(format!("hookgate-bench-{}.zip", std::process::id()));
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import os, sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as z:\n\
             \x20   z.write(sys.argv[1], 'bootstrap')\n\
             print(os.path.getsize(sys.argv[2]))",
        ])
        .arg(binary)
        .arg(&zip)
        .output()
        .context("python3 zips the binary")?;
    let _ = std::fs::remove_file(&zip);
    if !output.status.success() {
        bail!(
            "zipping {}: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let plan = Plan::from_args(std::env::args().skip(1))?;
    let proxy = CountingProxy::start(&emulator::endpoint()).await?;
    let bench = Bench {
        plan: plan.clone(),
        proxy,
        sdk: emulator::sdk_config().await,
    };
    let mut report = Report::new(plan.clone());
    for subject in &plan.subjects {
        let binary = plan.release_dir.join(subject.name());
        if !binary.is_file() {
            bail!("{} is missing: scripts/bench builds it", binary.display());
        }
        report.zipped(*subject, zipped_size(&binary)?);
    }
    let (processors, receivers): (Vec<Subject>, Vec<Subject>) = plan
        .subjects
        .iter()
        .partition(|subject| **subject == Subject::Processor);
    for round in 1..=plan.rounds {
        if started.elapsed() > plan.budget {
            eprintln!(
                "bench: over the budget of {:?}; reporting the rounds done",
                plan.budget
            );
            break;
        }
        if !receivers.is_empty() {
            for (subject, measured) in bench.receivers_round(&receivers, round).await? {
                report.add(subject, measured);
            }
        }
        for subject in &processors {
            eprintln!("bench: round {round}/{}: {}", plan.rounds, subject.name());
            let measured = bench
                .measure_processor(round)
                .await
                .with_context(|| format!("round {round}: {}", subject.name()))?;
            report.add(*subject, measured);
        }
    }
    report.finish(started.elapsed());
    print!("{report}");
    Ok(())
}

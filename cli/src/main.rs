//! `hookgate`: the command-line companion to the Lambda functions. Each subcommand lives in
//! its own module; this file only parses the command line and reports errors.

#[macro_use]
mod output;

mod dev;
mod dlq;
mod events;
mod gateway;
mod mcp;
mod replay;
mod routes;
mod samples;
mod send;
mod stack;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hookgate",
    version,
    about = "A webhook gateway for AI agents, on AWS Lambda"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: receivers on 127.0.0.1, a durable embedded
    /// queue and idempotency store, and the processor with your routes.
    Dev(dev::DevArgs),
    /// Post a correctly signed sample delivery and print the answer.
    Send(send::SendArgs),
    /// List, show or redrive the dead-letter queue (embedded, or SQS with --aws).
    Dlq(dlq::DlqArgs),
    /// List archived events, or show one with its idempotency record.
    Events(events::EventsArgs),
    /// Follow events and their outcomes as they happen.
    Tail(events::TailArgs),
    /// Send archived events through the queue again.
    Replay(replay::ReplayArgs),
    /// Serve the Model Context Protocol on stdio, for agents that operate the gateway
    /// (read-only unless --allow-write).
    Mcp(mcp::McpArgs),
    /// Validate a routes file, or publish one to a deployed stack.
    #[command(subcommand)]
    Routes(routes::RoutesCommand),
    /// Regenerate the signed sample events in `events/` (API Gateway and SQS), or check them.
    Samples(samples::SamplesArgs),
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let result = match command {
        Command::Samples(args) => samples::run(&args).map_err(|error| error.to_string()),
        Command::Routes(routes::RoutesCommand::Check { file, json }) => {
            routes::check(&file, json).map_err(|error| error.to_string())
        }
        Command::Routes(routes::RoutesCommand::Push(args)) => {
            async_command(async move { routes::push(&args).await })
        }
        Command::Dev(args) => async_command(async move {
            hookgate::telemetry::init_terminal_logging();
            dev::run(args).await
        }),
        Command::Send(args) => async_command(async move { send::run(&args).await }),
        Command::Dlq(args) => async_command(async move { dlq::run(&args).await }),
        Command::Events(args) => async_command(async move { events::run(&args).await }),
        Command::Tail(args) => async_command(async move { events::tail(&args).await }),
        Command::Replay(args) => async_command(async move { replay::run(&args).await }),
        Command::Mcp(args) => async_command(async move { mcp::run(args).await }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookgate: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS trust of every client the tool builds: the machine's own roots (where a
/// developer's proxy or company CA is installed) and `HOOKGATE_CA_FILE`'s certificates.
/// [`async_command`] checks it before any command that connects anywhere runs.
pub(crate) fn trust() -> &'static hookgate::tls::Trust {
    hookgate::tls::process_trust().expect("async_command checked the TLS trust")
}

/// Runs an async command on a multi-threaded runtime, once the TLS trust is known good.
fn async_command<E: std::fmt::Display>(
    command: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    hookgate::tls::use_platform_roots();
    hookgate::tls::process_trust().map_err(|error| error.to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    runtime.block_on(command).map_err(|error| error.to_string())
}

//! `hookgate`: the command-line companion to the receivers.

mod events;

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
    /// Regenerate the signed sample events in `events/` (API Gateway and SQS), or check them.
    Events(events::EventsArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Events(args) => events::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hookgate: {error}");
            ExitCode::FAILURE
        }
    }
}

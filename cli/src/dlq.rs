//! `hookgate dlq list | show | redrive`: the dead-letter queue, on the embedded queue of
//! `hookgate dev` or on SQS (redriven with SQS's message move task): a deployed stack's with
//! `--stack NAME`, or the queues `DLQ_URL` and `QUEUE_URL` name with `--aws`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::aws::SqsDeadLetterQueue;
use hookgate::config::{required, ConfigError, ProcessEnv};
use hookgate::dead_letters::{DeadLetter, DeadLetterQueue, Redrive};
use hookgate::envelope::Envelope;
use hookgate::queue::QueueError;
use hookgate::sqlite::{SqliteQueue, SqliteQueueSettings};
use time::format_description::well_known::Rfc3339;

use crate::dev::DATABASE_FILE;
use crate::gateway::Target;
use crate::stack::{Stack, StackError};

/// How long `redrive --wait` follows an SQS move task before giving up on watching it (the
/// task itself carries on).
const MOVE_TASK_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, clap::Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub command: DlqCommand,

    /// The embedded queue (`--data-dir`), a stack's (`--stack`), or, with `--aws`, the
    /// queues DLQ_URL and QUEUE_URL name.
    #[command(flatten)]
    pub target: Target,

    /// Print the result as JSON (`show` always does).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters: id (as the processor's log prints it), when, idempotency key,
    /// provider, event type and why.
    List {
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        max: usize,
    },
    /// Show one dead letter: its envelope and why it was given up on.
    Show {
        /// The id `list` shows, which is the `message_id` of the processor's log lines (the
        /// dead-letter queue's own id works too).
        id: String,
    },
    /// Move every dead letter back to the main queue, for the processor to try again.
    Redrive {
        /// On SQS, wait for the move task to finish (up to 5 minutes); the embedded queue
        /// always redrives at once.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0} does not exist; `hookgate dev --data-dir` creates it (or pass --aws for SQS)")]
    NoLocalQueue(PathBuf),
    #[error("the dead-letter queue has no message {0}")]
    NotFound(String),
    #[error("the move task ended {status}: {failure}")]
    MoveFailed { status: String, failure: String },
    #[error(transparent)]
    Stack(#[from] StackError),
}

pub async fn run(args: &DlqArgs) -> Result<(), DlqError> {
    let (queue, sqs) = open(&args.target).await?;
    match &args.command {
        DlqCommand::List { max } => {
            let letters = queue.list(*max).await?;
            if args.json {
                let letters: Vec<serde_json::Value> = letters.iter().map(described).collect();
                outln!("{}", serde_json::Value::Array(letters));
            } else {
                out!("{}", list(&letters));
            }
        }
        DlqCommand::Show { id } => {
            let letter = queue
                .show(id)
                .await?
                .ok_or_else(|| DlqError::NotFound(id.clone()))?;
            outln!("{}", show(&letter));
        }
        DlqCommand::Redrive { wait } => match queue.redrive().await? {
            Redrive::Moved { count } if args.json => {
                outln!("{}", serde_json::json!({ "moved": count }));
            }
            Redrive::Moved { count } => outln!("moved {count} message(s) back to the queue"),
            Redrive::Started {
                task,
                approximate_count,
            } if args.json => {
                if let (true, Some(sqs)) = (*wait, sqs) {
                    wait_for_move_task(&sqs, true).await?;
                } else {
                    outln!(
                        "{}",
                        serde_json::json!({ "move_task": task, "approximate_count": approximate_count })
                    );
                }
            }
            Redrive::Started {
                task,
                approximate_count,
            } => {
                let count =
                    approximate_count.map_or("the".to_owned(), |count| format!("about {count}"));
                outln!("started an SQS message move task for {count} message(s): {task}");
                if let (true, Some(sqs)) = (*wait, sqs) {
                    wait_for_move_task(&sqs, false).await?;
                }
            }
        },
    }
    Ok(())
}

/// The embedded queue, or the SQS one (kept concrete too, for its move task's status).
pub async fn open(
    target: &Target,
) -> Result<(Arc<dyn DeadLetterQueue>, Option<SqsDeadLetterQueue>), DlqError> {
    if let Some(name) = &target.stack.stack {
        let config = target.stack.sdk_config().await;
        let stack = Stack::describe(&config, name).await?;
        let queue = SqsDeadLetterQueue::connect(
            aws_sdk_sqs::Client::new(&config),
            stack.output("DeadLetterQueueUrl")?.to_owned(),
            stack.output("QueueUrl")?.to_owned(),
        )
        .await?;
        return Ok((Arc::new(queue.clone()), Some(queue)));
    }
    if target.aws {
        let dlq_url = required(&ProcessEnv, "DLQ_URL")?;
        let queue_url = required(&ProcessEnv, "QUEUE_URL")?;
        let config = target.stack.sdk_config().await;
        let queue =
            SqsDeadLetterQueue::connect(aws_sdk_sqs::Client::new(&config), dlq_url, queue_url)
                .await?;
        return Ok((Arc::new(queue.clone()), Some(queue)));
    }
    let path = target.data_dir.join(DATABASE_FILE);
    // Opening creates a database: an operator's typo must not make an empty one and report
    // "no dead letters".
    if !path.is_file() {
        return Err(DlqError::NoLocalQueue(path));
    }
    let queue = SqliteQueue::open(&path, SqliteQueueSettings::default())?;
    Ok((Arc::new(queue), None))
}

async fn wait_for_move_task(queue: &SqsDeadLetterQueue, as_json: bool) -> Result<(), DlqError> {
    let started = Instant::now();
    while started.elapsed() < MOVE_TASK_WAIT {
        if let Some(status) = queue.move_task_status().await? {
            match status.status.as_str() {
                "COMPLETED" if as_json => {
                    outln!(
                        "{}",
                        serde_json::json!({ "move_task": "completed", "moved": status.moved })
                    );
                    return Ok(());
                }
                "COMPLETED" => {
                    outln!("the move task completed: {} message(s) moved", status.moved);
                    return Ok(());
                }
                "FAILED" | "CANCELLED" => {
                    return Err(DlqError::MoveFailed {
                        status: status.status,
                        failure: status.failure.unwrap_or_default(),
                    })
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    if as_json {
        outln!("{}", serde_json::json!({ "move_task": "running" }));
    } else {
        outln!("the move task is still running; `hookgate dlq list --aws` shows what is left");
    }
    Ok(())
}

/// One line a dead letter: id, when, provider, event type, reason.
fn list(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "the dead-letter queue is empty\n".to_owned();
    }
    let mut out = String::new();
    for letter in letters {
        let (key, provider, event_type) = match envelope_of(letter) {
            Some(envelope) => (
                envelope.v1().idempotency_key.to_string(),
                envelope.v1().provider.as_str().to_owned(),
                envelope.v1().event_type.clone(),
            ),
            None => (
                "-".to_owned(),
                "?".to_owned(),
                "(unreadable envelope)".to_owned(),
            ),
        };
        out.push_str(&format!(
            "{}  {}  {key}  {provider} {event_type}  {}\n",
            letter.id(),
            when(letter),
            letter
                .reason
                .as_deref()
                .unwrap_or("(moved after too many receives)")
        ));
    }
    out
}

/// The dead letter's envelope, when it is one.
fn envelope_of(letter: &DeadLetter) -> Option<Envelope> {
    Envelope::from_json(&letter.body).ok()
}

/// The dead letter as JSON: its envelope parsed when it parses, else as the text it is.
fn show(letter: &DeadLetter) -> String {
    let json = described(letter);
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

/// A dead letter as a JSON object: what `show` prints, and each item `list --json` prints.
pub fn described(letter: &DeadLetter) -> serde_json::Value {
    let envelope = serde_json::from_str::<serde_json::Value>(&letter.body)
        .unwrap_or_else(|_| serde_json::Value::String(letter.body.clone()));
    let idempotency_key =
        envelope_of(letter).map(|envelope| envelope.v1().idempotency_key.to_string());
    serde_json::json!({
        "message_id": letter.id(),
        "dead_letter_message_id": letter.message_id,
        "idempotency_key": idempotency_key,
        "dead_lettered_at": letter.dead_lettered_at.and_then(|at| at.format(&Rfc3339).ok()),
        "reason": letter.reason,
        "envelope": envelope,
    })
}

fn when(letter: &DeadLetter) -> String {
    letter
        .dead_lettered_at
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(body: &str, reason: Option<&str>) -> DeadLetter {
        DeadLetter {
            message_id: "m-1".into(),
            source_message_id: None,
            body: body.into(),
            reason: reason.map(str::to_owned),
            dead_lettered_at: None,
        }
    }

    #[test]
    fn an_unreadable_envelope_is_listed_as_such_with_its_reason() {
        let out = list(&[letter("not json", Some("unreadable envelope: x"))]);
        assert_eq!(
            out,
            "m-1  -  -  ? (unreadable envelope)  unreadable envelope: x\n"
        );
    }

    #[test]
    fn an_empty_queue_says_so() {
        assert_eq!(list(&[]), "the dead-letter queue is empty\n");
    }

    #[test]
    fn show_keeps_a_body_that_is_not_json_as_text() {
        let out: serde_json::Value =
            serde_json::from_str(&show(&letter("not json", None))).unwrap();
        assert_eq!(out["envelope"], "not json");
        assert_eq!(out["reason"], serde_json::Value::Null);
    }
}

//! Port: the dead-letter queue as an operator sees it, for `hookgate dlq`.
//!
//! A dead letter is an envelope the processor gave up on (an unreadable envelope, a
//! permanent action failure, or a message that failed the queue's maximum receive count).
//! Redriving puts every dead letter back on the main queue, where the processor takes it up
//! again; actions already recorded as done for the event are not run twice.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::queue::QueueError;

/// The most bytes of a reason a dead letter carries: a sentence, enough to recognise the
/// failure; the processor's log has the whole of it.
pub const MAX_REASON_BYTES: usize = 1_024;

/// The most a dead letter adds to its envelope's size as SQS counts it: the reason and the
/// original message id, as attributes with their names and types. Receivers keep every
/// envelope this far under the queue's message limit, so that any envelope can be
/// dead-lettered as it is.
pub const DEAD_LETTER_OVERHEAD: usize = 2_048;

/// `reason`, cut to at most [`MAX_REASON_BYTES`] at a character boundary and marked `…`
/// where cut.
pub fn bounded_reason(reason: &str) -> String {
    if reason.len() <= MAX_REASON_BYTES {
        return reason.to_owned();
    }
    let mut end = MAX_REASON_BYTES - '…'.len_utf8();
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

/// One message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The dead-letter queue's id for the message.
    pub message_id: String,
    /// The id the message had in the main queue, which the processor's log lines carry as
    /// `message_id`, when it differs from the dead-letter queue's and the queue kept it.
    pub source_message_id: Option<String>,
    /// The envelope, exactly as it was queued.
    pub body: String,
    /// Why the processor gave up, when it said (the `failure_reason` attribute); a message
    /// moved by the maximum receive count has none.
    pub reason: Option<String>,
    /// When the message entered the dead-letter queue, when the queue says.
    pub dead_lettered_at: Option<OffsetDateTime>,
}

impl DeadLetter {
    /// The id hookgate's logs know the message by: the main queue's, where the dead-letter
    /// queue gave it another.
    pub fn id(&self) -> &str {
        self.source_message_id
            .as_deref()
            .unwrap_or(&self.message_id)
    }
}

/// What a redrive did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    /// Every dead letter was moved back, in one step.
    Moved { count: u64 },
    /// A move task was started and runs on its own (SQS's message move task).
    Started {
        task: String,
        approximate_count: Option<u64>,
    },
}

#[async_trait]
pub trait DeadLetterQueue: Send + Sync + fmt::Debug {
    /// Up to `max` dead letters, oldest first where the queue keeps an order. Looking does not
    /// remove them.
    async fn list(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// The dead letter with this id, if the queue holds it: the dead-letter queue's own id,
    /// or the one it had in the main queue ([`DeadLetter::id`], as the processor logged it).
    async fn show(&self, id: &str) -> Result<Option<DeadLetter>, QueueError>;

    /// Moves every dead letter back to the main queue.
    async fn redrive(&self) -> Result<Redrive, QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary_within_its_bytes() {
        assert_eq!(bounded_reason("short"), "short");
        let long = "é".repeat(MAX_REASON_BYTES);
        let cut = bounded_reason(&long);
        assert!(cut.len() <= MAX_REASON_BYTES, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}

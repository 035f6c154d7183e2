//! The processor's Lambda adapter: SQS batches in, partial batch responses out.
//!
//! The handler never returns `Err`: that would make SQS redeliver the whole batch, while
//! `batchItemFailures` names exactly the messages to retry (the event source mapping must
//! have `FunctionResponseTypes: [ReportBatchItemFailures]`).

use std::convert::Infallible;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;

use super::deadline;
use crate::processor::{Processor, QueuedDelivery};

/// Answers one batch, before the invocation's deadline.
pub async fn handle_batch(
    processor: &Processor,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Infallible> {
    let deadline = deadline(&event.context);
    let deliveries = event.payload.records.into_iter().map(delivery).collect();
    let failed = processor.process_batch(deliveries, deadline).await;
    crate::telemetry::flush_metrics();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|message_id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            failure
        })
        .collect();
    Ok(response)
}

/// The processor's view of an SQS record. A record without a body is read as an empty one,
/// which the processor dead-letters as unreadable rather than losing it.
pub fn delivery(message: SqsMessage) -> QueuedDelivery {
    let receive_count = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    QueuedDelivery {
        message_id: message.message_id.unwrap_or_default(),
        receipt_handle: message.receipt_handle.unwrap_or_default(),
        body: message.body.unwrap_or_default(),
        receive_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqs_record_becomes_a_delivery_with_its_receive_count() {
        let event: SqsEvent = serde_json::from_value(serde_json::json!({
            "Records": [{
                "messageId": "m-1",
                "receiptHandle": "r-1",
                "body": "{}",
                "attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1"},
                "messageAttributes": {},
                "md5OfBody": "99914b932bd37a50b983c5e7c90ae93b",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:hookgate-envelopes",
                "awsRegion": "us-east-1"
            }]
        }))
        .unwrap();
        let delivery = delivery(event.records.into_iter().next().unwrap());
        assert_eq!(
            delivery,
            QueuedDelivery {
                message_id: "m-1".into(),
                receipt_handle: "r-1".into(),
                body: "{}".into(),
                receive_count: 3,
            }
        );
    }
}

//! The `log` action: the event written to the log, for trying routes out before any agent
//! exists.
//!
//! At `info` it logs what identifies the event (key, provider, type, delivery id, when it
//! was received, the body's size); the payload itself is logged at `debug` only, because
//! payloads carry customers' data and the rule everywhere else is that bodies never reach
//! the log at `info`. To see payloads while trying routes out, run with
//! `RUST_LOG=info,hookgate::processor::actions=debug`.

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use tracing::{debug, info};

use super::{ActionError, ActionInvoker, NormalizedEvent};
use crate::routes::ActionSpec;

/// Runs `log` actions. Always succeeds.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogActions;

#[async_trait]
impl ActionInvoker for LogActions {
    async fn invoke(
        &self,
        action: &ActionSpec,
        event: &NormalizedEvent,
    ) -> Result<(), ActionError> {
        let received_at = event
            .received_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| event.received_at.to_string());
        let body_bytes = event.body.to_bytes().map_or(0, |bytes| bytes.len());
        info!(
            action = %action.name,
            idempotency_key = %event.idempotency_key,
            provider = %event.provider,
            event_type = %event.event_type,
            delivery_id = event.delivery_id.as_deref(),
            received_at,
            body_bytes,
            "event"
        );
        if event.payload.is_null() {
            debug!(action = %action.name, idempotency_key = %event.idempotency_key, body = ?event.body, "the event's body, which is not JSON");
        } else {
            debug!(action = %action.name, idempotency_key = %event.idempotency_key, payload = %event.payload, "the event's payload");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::envelope::RawBody;
    use crate::idempotency::IdempotencyKey;
    use crate::provider::Provider;
    use crate::routes::ActionKind;

    /// Collects what the subscriber writes, for reading back in the test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn logged_at(level: tracing::Level) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let action = ActionSpec {
            name: "audit".into(),
            kind: ActionKind::Log,
            timeout: Duration::from_secs(1),
        };
        let body = r#"{"action":"opened","secret_sauce":"customer data"}"#;
        let event = NormalizedEvent {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Github, "d-1").unwrap(),
            provider: Provider::Github,
            event_type: "pull_request.opened".into(),
            delivery_id: Some("d-1".into()),
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            payload: serde_json::from_str(body).unwrap(),
            body: RawBody::Utf8(body.into()),
            replay: None,
        };
        LogActions.invoke(&action, &event).await.unwrap();
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[tokio::test]
    async fn at_info_the_event_is_identified_but_its_payload_stays_out_of_the_log() {
        let text = logged_at(tracing::Level::INFO).await;
        assert!(text.contains("github:d-1"), "{text}");
        assert!(text.contains("pull_request.opened"), "{text}");
        assert!(text.contains("body_bytes=50"), "{text}");
        assert!(!text.contains("customer data"), "{text}");
    }

    #[tokio::test]
    async fn at_debug_the_payload_is_logged_too() {
        let text = logged_at(tracing::Level::DEBUG).await;
        assert!(text.contains("customer data"), "{text}");
    }
}

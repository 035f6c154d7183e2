//! The Lambda adapter of [`ActionInvoker`]: a `lambda` action invokes an agent function with
//! the normalized event as its payload.
//!
//! How an invocation's outcome is read:
//!
//! | outcome | result |
//! |---|---|
//! | `RequestResponse` answered without a function error | done |
//! | `Event` accepted (202) | done: Lambda's own async queue runs it |
//! | a function error (`X-Amz-Function-Error`) | retryable, quoting the error payload |
//! | throttling, Lambda service errors, timeouts, network failures | retryable |
//! | no such function, a payload Lambda refuses, access denied | permanent |
//!
//! Errors about the function's environment (its ENIs, KMS key, EFS mount, SnapStart) are
//! retried: they are the function's state, which its owner can fix while the event waits,
//! and after the queue's `maxReceiveCount` the event reaches the dead-letter queue anyway.

use async_trait::async_trait;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;

use crate::processor::actions::{excerpt, ActionError, ActionInvoker, NormalizedEvent};
use crate::routes::{ActionKind, ActionSpec, InvocationType};

/// Error codes Lambda answers an `Invoke` with when the caller may not invoke the function.
/// They are not among `Invoke`'s modelled errors, so they arrive as unhandled codes.
const ACCESS_DENIED: [&str; 2] = ["AccessDeniedException", "AccessDenied"];

/// The largest payload Lambda takes for each invocation type: 6 MiB for `RequestResponse`,
/// 1 MiB for `Event`. A larger event is refused by Lambda whatever is retried, so it is
/// refused here at once, saying so.
fn payload_limit(invocation: InvocationType) -> usize {
    match invocation {
        InvocationType::RequestResponse => 6_291_456,
        InvocationType::Event => 1_048_576,
    }
}

/// Runs `lambda` actions with one Lambda client.
#[derive(Debug, Clone)]
pub struct LambdaActions {
    client: aws_sdk_lambda::Client,
}

impl LambdaActions {
    pub fn new(client: aws_sdk_lambda::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ActionInvoker for LambdaActions {
    async fn invoke(
        &self,
        action: &ActionSpec,
        event: &NormalizedEvent,
    ) -> Result<(), ActionError> {
        let ActionKind::Lambda {
            function,
            invocation,
        } = &action.kind
        else {
            return Err(ActionError::permanent(format!(
                "`{}` is not a lambda action",
                action.name
            )));
        };
        let payload = event.to_json();
        let limit = payload_limit(*invocation);
        if payload.len() > limit {
            return Err(ActionError::permanent(format!(
                "the event is {} bytes, over the {limit} bytes Lambda takes for an \
                 {invocation:?} invocation (a large body; a RequestResponse invocation or an \
                 http action takes more)",
                payload.len()
            )));
        }
        let request = self
            .client
            .invoke()
            .function_name(function)
            .invocation_type(match invocation {
                InvocationType::RequestResponse => {
                    aws_sdk_lambda::types::InvocationType::RequestResponse
                }
                InvocationType::Event => aws_sdk_lambda::types::InvocationType::Event,
            })
            .payload(Blob::new(payload));
        // The SDK has no per-call deadline of its own by default; a function that runs past
        // the action's timeout is a retryable failure like an HTTP agent's would be.
        let output = match tokio::time::timeout(action.timeout, request.send()).await {
            Err(_) => {
                return Err(ActionError::retryable(format!(
                    "the function did not answer within {} s",
                    action.timeout.as_secs_f64()
                )))
            }
            Ok(Err(error)) => return Err(invoke_failure(&error)),
            Ok(Ok(output)) => output,
        };
        invocation_outcome(
            *invocation,
            output.status_code(),
            output.function_error(),
            output.payload().map(Blob::as_ref),
        )
    }
}

/// Decides an invocation Lambda answered.
fn invocation_outcome(
    invocation: InvocationType,
    status: i32,
    function_error: Option<&str>,
    payload: Option<&[u8]>,
) -> Result<(), ActionError> {
    if let Some(kind) = function_error {
        let payload = payload.map(String::from_utf8_lossy).unwrap_or_default();
        return Err(ActionError::retryable(format!(
            "the function failed ({kind}): {}",
            excerpt(&payload)
        )));
    }
    let accepted = match invocation {
        InvocationType::RequestResponse => (200..300).contains(&status),
        InvocationType::Event => status == 202,
    };
    if accepted {
        Ok(())
    } else {
        Err(ActionError::retryable(format!(
            "Lambda answered an {invocation:?} invocation with status {status}"
        )))
    }
}

/// Decides an invocation that failed before the function answered.
fn invoke_failure<R: std::fmt::Debug>(error: &SdkError<InvokeError, R>) -> ActionError {
    let reason = excerpt(&format!("Invoke failed: {}", DisplayErrorContext(error)));
    let permanent = match error {
        SdkError::ServiceError(context) => is_permanent(context.err()),
        // The request could not even be made (a malformed function name, say).
        SdkError::ConstructionFailure(_) => true,
        _ => false,
    };
    if permanent {
        ActionError::permanent(reason)
    } else {
        ActionError::retryable(reason)
    }
}

/// Service errors that no retry can cure: the function does not exist, Lambda refuses the
/// payload, or the processor may not invoke it.
fn is_permanent(error: &InvokeError) -> bool {
    match error {
        InvokeError::ResourceNotFoundException(_)
        | InvokeError::InvalidRequestContentException(_)
        | InvokeError::InvalidParameterValueException(_)
        | InvokeError::RequestTooLargeException(_)
        | InvokeError::SerializedRequestEntityTooLargeException(_)
        | InvokeError::UnsupportedMediaTypeException(_)
        | InvokeError::RecursiveInvocationException(_) => true,
        other => other
            .code()
            .is_some_and(|code| ACCESS_DENIED.contains(&code)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;

    use aws_sdk_lambda::config::retry::RetryConfig;
    use aws_sdk_lambda::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_lambda::error::ErrorMetadata;
    use aws_sdk_lambda::types::error::{
        ResourceNotFoundException, ServiceException, TooManyRequestsException,
    };

    use super::*;
    use crate::envelope::RawBody;
    use crate::idempotency::IdempotencyKey;
    use crate::provider::Provider;

    fn service_error(error: InvokeError) -> ActionError {
        invoke_failure(&SdkError::service_error(error, ()))
    }

    #[tokio::test]
    async fn an_event_larger_than_lambda_takes_is_refused_permanently_without_a_call() {
        // A client that could reach nothing: the refusal must come before any call.
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
            .region(aws_sdk_lambda::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .build();
        let actions = LambdaActions::new(aws_sdk_lambda::Client::from_conf(config));
        let envelope = crate::envelope::EnvelopeV1 {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Github, "d-1").unwrap(),
            provider: Provider::Github,
            event_type: "push".into(),
            delivery_id: Some("d-1".into()),
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            source_ip: None,
            headers: Default::default(),
            body: RawBody::Utf8(String::new()),
            body_sha256: String::new(),
            id_signed: false,
            replay: None,
        };
        let event = NormalizedEvent::new(&envelope, RawBody::from_bytes(&vec![0xff; 1_000_000]));
        let routes = crate::routes::RouteTable::parse(
            "[action.big]\ntype = \"lambda\"\nfunction = \"agent\"\ninvocation = \"Event\"\n",
            "routes.toml",
        )
        .unwrap();
        let action = routes.actions().next().unwrap().clone();

        let outcome = actions.invoke(&action, &event).await;

        let Err(ActionError::Permanent { reason }) = outcome else {
            panic!("expected a permanent failure, got {outcome:?}");
        };
        assert!(reason.contains("1048576"), "{reason}");
    }

    #[test]
    fn a_function_error_is_retryable_and_quotes_the_error_payload() {
        let payload = br#"{"errorMessage":"agent exploded","errorType":"Error"}"#;
        let result = invocation_outcome(
            InvocationType::RequestResponse,
            200,
            Some("Unhandled"),
            Some(payload),
        );
        let Err(ActionError::Retryable { reason, .. }) = result else {
            panic!("not retryable: {result:?}");
        };
        assert!(reason.contains("(Unhandled)"), "{reason}");
        assert!(reason.contains("agent exploded"), "{reason}");
    }

    #[test]
    fn a_long_error_payload_is_quoted_only_in_part() {
        let payload = format!(r#"{{"errorMessage":"{}"}}"#, "x".repeat(100_000));
        let Err(ActionError::Retryable { reason, .. }) = invocation_outcome(
            InvocationType::RequestResponse,
            200,
            Some("Handled"),
            Some(payload.as_bytes()),
        ) else {
            panic!("not retryable");
        };
        assert!(reason.len() < 300, "{}", reason.len());
    }

    #[test]
    fn a_request_response_answer_is_done_and_an_event_is_done_once_accepted() {
        assert_eq!(
            invocation_outcome(InvocationType::RequestResponse, 200, None, Some(b"null")),
            Ok(())
        );
        assert_eq!(
            invocation_outcome(InvocationType::Event, 202, None, None),
            Ok(())
        );
        assert!(matches!(
            invocation_outcome(InvocationType::Event, 200, None, None),
            Err(ActionError::Retryable { .. })
        ));
    }

    #[test]
    fn a_missing_function_a_refused_payload_or_denied_access_is_permanent() {
        for error in [
            InvokeError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("Function not found")
                    .build(),
            ),
            InvokeError::InvalidRequestContentException(
                aws_sdk_lambda::types::error::InvalidRequestContentException::builder().build(),
            ),
            InvokeError::RequestTooLargeException(
                aws_sdk_lambda::types::error::RequestTooLargeException::builder().build(),
            ),
            InvokeError::generic(
                ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: lambda:InvokeFunction")
                    .build(),
            ),
        ] {
            let described = format!("{error:?}");
            assert!(
                matches!(service_error(error), ActionError::Permanent { .. }),
                "{described}"
            );
        }
    }

    #[test]
    fn throttling_service_errors_timeouts_and_network_failures_are_retryable() {
        let errors: Vec<SdkError<InvokeError, ()>> = vec![
            SdkError::service_error(
                InvokeError::TooManyRequestsException(TooManyRequestsException::builder().build()),
                (),
            ),
            SdkError::service_error(
                InvokeError::ServiceException(ServiceException::builder().build()),
                (),
            ),
            SdkError::service_error(
                InvokeError::generic(ErrorMetadata::builder().code("ThrottlingException").build()),
                (),
            ),
            SdkError::timeout_error("operation timed out"),
            SdkError::dispatch_failure(aws_sdk_lambda::error::ConnectorError::io(
                "connection refused".into(),
            )),
        ];
        for error in errors {
            let described = format!("{error:?}");
            assert!(
                matches!(invoke_failure(&error), ActionError::Retryable { .. }),
                "{described}"
            );
        }
    }

    /// Serves one canned HTTP answer per connection, `answers.len()` times, on a blocking
    /// thread, and sends each request (head and body) it read back to the test. Lambda's
    /// `Invoke` is a REST call, so this is enough to stand in for it.
    fn fake_lambda(answers: Vec<String>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (requests, received) = mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(value) = lower.strip_prefix("content-length:") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let _ = requests.send(format!("{head}\r\n{}", String::from_utf8_lossy(&body)));
                let _ = reader.get_mut().write_all(answer.as_bytes());
            }
        });
        (endpoint, received)
    }

    fn answer(status: &str, headers: &[(&str, &str)], body: &str) -> String {
        let mut text = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("\r\n");
        text.push_str(body);
        text
    }

    fn client(endpoint: &str) -> LambdaActions {
        let config = aws_sdk_lambda::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .http_client(
                crate::tls::process_trust()
                    .expect("no CA file")
                    .aws_http_client(),
            )
            .endpoint_url(endpoint)
            // One answer per attempt is scripted; the processor does the retrying.
            .retry_config(RetryConfig::disabled())
            .build();
        LambdaActions::new(aws_sdk_lambda::Client::from_conf(config))
    }

    fn action(invocation: InvocationType) -> ActionSpec {
        ActionSpec {
            name: "billing".into(),
            kind: ActionKind::Lambda {
                function: "billing-agent".into(),
                invocation,
            },
            timeout: Duration::from_secs(5),
        }
    }

    fn event() -> NormalizedEvent {
        NormalizedEvent {
            idempotency_key: IdempotencyKey::from_stable_id(Provider::Stripe, "evt_1").unwrap(),
            provider: Provider::Stripe,
            event_type: "invoice.paid".into(),
            delivery_id: Some("evt_1".into()),
            received_at: time::OffsetDateTime::UNIX_EPOCH,
            payload: serde_json::json!({"id": "evt_1"}),
            body: RawBody::Utf8(r#"{"id": "evt_1"}"#.into()),
            replay: None,
        }
    }

    #[tokio::test]
    async fn an_invocation_sends_the_event_with_its_invocation_type_and_reads_the_answer() {
        let (endpoint, requests) = fake_lambda(vec![
            answer("202 Accepted", &[], ""),
            answer(
                "200 OK",
                &[("x-amz-function-error", "Unhandled")],
                r#"{"errorMessage":"agent exploded"}"#,
            ),
            answer(
                "404 Not Found",
                &[("x-amzn-errortype", "ResourceNotFoundException")],
                r#"{"Type":"User","Message":"Function not found: billing-agent"}"#,
            ),
        ]);
        let lambda = client(&endpoint);

        let accepted = lambda
            .invoke(&action(InvocationType::Event), &event())
            .await;
        assert_eq!(accepted, Ok(()));
        let request = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.starts_with("post /2015-03-31/functions/billing-agent/invocations "),
            "{request}"
        );
        assert!(lower.contains("x-amz-invocation-type: event"), "{request}");
        assert!(request.ends_with(&event().to_json()), "{request}");

        let failed = lambda
            .invoke(&action(InvocationType::RequestResponse), &event())
            .await;
        assert!(
            matches!(&failed, Err(ActionError::Retryable { reason, .. }) if reason.contains("agent exploded")),
            "{failed:?}"
        );
        let request = requests.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-amz-invocation-type: requestresponse"),
            "{request}"
        );

        let missing = lambda
            .invoke(&action(InvocationType::RequestResponse), &event())
            .await;
        assert!(
            matches!(&missing, Err(ActionError::Permanent { reason }) if reason.contains("Function not found")),
            "{missing:?}"
        );
    }
}

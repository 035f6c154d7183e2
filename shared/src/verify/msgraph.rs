//! Microsoft Graph change notifications: no signature; every notification of a delivery
//! carries the subscription's `clientState`, which must equal the configured secret
//! (compared in constant time). From Microsoft Graph's docs, "Receive change notifications
//! through webhooks" and "Reduce missing subscriptions and change notifications"
//! (microsoft-graph-docs-contrib `concepts/change-notifications-delivery-webhooks.md`,
//! `concepts/change-notifications-lifecycle-events.md`).
//!
//! Two kinds of request reach the notification URL:
//!
//! - The validation request, when a subscription is created: a POST with
//!   `?validationToken=<url-encoded token>` and no notification. It carries no signature and
//!   no `clientState`, so anyone can send one: it is answered 200 `text/plain` with the
//!   decoded token and nothing is queued, whatever else the request holds. Since the answer
//!   echoes what the caller sent, a token over [`MAX_VALIDATION_TOKEN_LEN`] bytes or with a
//!   control character is refused (Graph's tokens are a short line of text).
//! - A notification: JSON `{"value": [...]}`, a batch of change notifications (`changeType`:
//!   `created`, `updated`, `deleted`) or lifecycle notifications (`lifecycleEvent`:
//!   `reauthorizationRequired`, `subscriptionRemoved`, `missed`), possibly of several
//!   subscriptions. Every one must carry the configured `clientState` (the current or, while
//!   rotating, the previous one); one without is refused like one with another value, as
//!   nothing else proves where it came from. Every subscription sending to this URL must
//!   therefore use that `clientState`.
//!
//! The `clientState` proves the sender knows the secret, but covers neither the body nor a
//! time: a captured delivery can be replayed or altered. The JWTs in a rich notification's
//! `validationTokens` (notifications with resource data) are not checked here; they are in
//! the queued body for whoever needs them.
//!
//! A delivery has no id of its own (each notification's optional `id` is not documented to
//! survive a retry, and a batch holds several), so it is keyed by its body's hash: Graph
//! retries the same notification for up to 4 hours when it gets no 2xx within 3 seconds.
//! The type is the notifications' `changeType` or `lifecycleEvent` when they all share one,
//! else `batch`.

use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::{
    AuthFailure, Delivery, Handshake, MalformedRequest, OutgoingDelivery, SignatureScheme,
};
use crate::provider::Provider;
use crate::request::InboundRequest;
use crate::secret::{KeyRing, SigningKey};

/// The query parameter of a validation request.
const VALIDATION_TOKEN: &str = "validationToken";
/// Where a notification carries its secret, named in refusals.
const CLIENT_STATE: &str = "clientState";

/// The longest validation token answered: Graph's are a line of about a hundred characters;
/// the bound keeps the endpoint from echoing anything large.
pub const MAX_VALIDATION_TOKEN_LEN: usize = 1024;

use super::MIXED_BATCH;

#[derive(Debug, Clone, Copy, Default)]
pub struct Msgraph;

impl super::sealed::Sealed for Msgraph {}

/// The scheme the provider table names for msgraph.
pub(crate) fn scheme(
    _: &dyn crate::config::Env,
) -> Result<Box<dyn SignatureScheme>, crate::config::ConfigError> {
    Ok(Box::new(Msgraph))
}

/// A `changeNotificationCollection`, as far as hookgate reads it.
#[derive(Deserialize)]
struct Collection {
    value: Vec<Notification>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    client_state: Option<String>,
    change_type: Option<String>,
    lifecycle_event: Option<String>,
}

/// The validation token of a validation request, decoded; `Err` when it is one hookgate will
/// not echo.
fn validation_token(request: &InboundRequest) -> Option<Result<String, &'static str>> {
    let token = request.query_param(VALIDATION_TOKEN)?;
    Some(if token.is_empty() {
        Err("it is empty")
    } else if token.len() > MAX_VALIDATION_TOKEN_LEN {
        Err("it is too long")
    } else if token.chars().any(char::is_control) {
        Err("it has control characters")
    } else {
        Ok(token)
    })
}

fn notifications(request: &InboundRequest) -> Option<Vec<Notification>> {
    serde_json::from_slice::<Collection>(&request.body)
        .ok()
        .map(|collection| collection.value)
        .filter(|value| !value.is_empty())
}

impl SignatureScheme for Msgraph {
    fn provider(&self) -> Provider {
        Provider::Msgraph
    }

    fn check_signature(
        &self,
        request: &InboundRequest,
        keys: &KeyRing,
        _now: OffsetDateTime,
        _tolerance: Duration,
    ) -> Result<(), AuthFailure> {
        if let Some(token) = validation_token(request) {
            // Nothing to check: the answer only proves the endpoint is there.
            return token
                .map(drop)
                .map_err(|_| AuthFailure::MalformedSignature {
                    header: VALIDATION_TOKEN.to_owned(),
                });
        }
        let notifications =
            notifications(request).ok_or_else(|| AuthFailure::MalformedSignature {
                header: CLIENT_STATE.to_owned(),
            })?;
        for notification in &notifications {
            let state = notification.client_state.as_deref().ok_or_else(|| {
                AuthFailure::MissingSignature {
                    header: CLIENT_STATE.to_owned(),
                }
            })?;
            let matches = keys
                .keys()
                .any(|key| bool::from(state.as_bytes().ct_eq(key.as_bytes())));
            if !matches {
                return Err(AuthFailure::SignatureMismatch);
            }
        }
        Ok(())
    }

    fn describe(&self, request: &InboundRequest) -> Result<Delivery, MalformedRequest> {
        if let Some(token) = validation_token(request) {
            let token = token.map_err(|reason| MalformedRequest::InvalidHeader {
                header: VALIDATION_TOKEN.to_owned(),
                reason: reason.to_owned(),
            })?;
            return Ok(Delivery::handshake(
                "validation",
                Handshake {
                    content_type: "text/plain",
                    body: token,
                },
            ));
        }
        let notifications = serde_json::from_slice::<Collection>(&request.body)
            .map_err(|error| MalformedRequest::BodyNotJson(error.to_string()))?
            .value;
        let mut kinds = notifications
            .into_iter()
            .map(|notification| notification.change_type.or(notification.lifecycle_event));
        let missing = || MalformedRequest::MissingField("changeType".into());
        let first = kinds.next().flatten().ok_or_else(missing)?;
        let mut mixed = false;
        for kind in kinds {
            mixed |= kind.ok_or_else(missing)? != first;
        }
        let event_type = if mixed { MIXED_BATCH.to_owned() } else { first };
        Ok(Delivery::event(None, event_type))
    }

    fn forwarded_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Nothing: Graph sends no signature header. Its secret, the `clientState`, is in the
    /// body, which the caller writes with the `clientState` it means to send.
    fn sign(&self, _delivery: &OutgoingDelivery<'_>, _key: &SigningKey) -> Vec<(String, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::*;

    const CLIENT_STATE_VALUE: &str = "secretClientValue";
    /// The change notification of Graph's "Receive change notifications through webhooks".
    const NOTIFICATION: &str = r##"{"value":[{"id":"lsgTZMr9KwAAA","subscriptionId":"{subscription_guid}","subscriptionExpirationDateTime":"2016-03-19T22:11:09.952Z","clientState":"secretClientValue","changeType":"created","resource":"users/{user_guid}@{tenant_guid}/messages/{long_id_string}","tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95","resourceData":{"@odata.type":"#Microsoft.Graph.Message","@odata.id":"Users/{user_guid}@{tenant_guid}/Messages/{long_id_string}","@odata.etag":"W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"","id":"{long_id_string}"}}]}"##;
    /// A lifecycle notification, shaped as in "Reduce missing subscriptions and change
    /// notifications".
    const LIFECYCLE: &str = r#"{"value":[{"subscriptionId":"9f3c1a6e-0b1d-4d5e-9a43-2f4c6f2f9b11","subscriptionExpirationDateTime":"2019-03-20T11:00:00.0000000Z","tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95","clientState":"secretClientValue","lifecycleEvent":"reauthorizationRequired"}]}"#;
    /// The token of a validation request, as Graph's Postman collection sends one.
    const TOKEN: &str = "Validation: Testing client application reachability for subscription Request-Id: 7ef3d2a3-9cc8-4b09-8b3f-1a6f8a0f7e21";

    fn check(request: &InboundRequest, secret: &str) -> Result<(), AuthFailure> {
        Msgraph.check_signature(request, &keys(secret), at(0), WINDOW)
    }

    fn validation(encoded_token: &str) -> InboundRequest {
        InboundRequest::post("")
            .with_url(&format!(
                "https://hooks.example.com/webhooks/msgraph?validationToken={encoded_token}"
            ))
            .with_header("content-type", "text/plain; charset=utf-8")
    }

    fn encoded(token: &str) -> String {
        form_urlencoded::byte_serialize(token.as_bytes()).collect()
    }

    fn notifications_with(client_states: &[Option<&str>]) -> InboundRequest {
        let value: Vec<serde_json::Value> = client_states
            .iter()
            .map(|state| {
                let mut notification = serde_json::json!({"changeType": "updated"});
                if let Some(state) = state {
                    notification["clientState"] = (*state).into();
                }
                notification
            })
            .collect();
        InboundRequest::post(serde_json::json!({ "value": value }).to_string())
    }

    #[test]
    fn accepts_the_documented_notification_with_its_client_state() {
        assert_eq!(
            check(&InboundRequest::post(NOTIFICATION), CLIENT_STATE_VALUE),
            Ok(())
        );
    }

    #[test]
    fn accepts_a_lifecycle_notification_with_its_client_state() {
        assert_eq!(
            check(&InboundRequest::post(LIFECYCLE), CLIENT_STATE_VALUE),
            Ok(())
        );
    }

    #[test]
    fn rejects_a_notification_without_a_client_state() {
        assert_eq!(
            check(&notifications_with(&[None]), CLIENT_STATE_VALUE),
            Err(AuthFailure::MissingSignature {
                header: CLIENT_STATE.into()
            })
        );
    }

    #[test]
    fn rejects_another_client_state() {
        assert_eq!(
            check(&InboundRequest::post(NOTIFICATION), "anotherClientValue"),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_batch_with_one_notification_of_another_client_state() {
        assert_eq!(
            check(
                &notifications_with(&[Some(CLIENT_STATE_VALUE), Some("secretClientValuE")]),
                CLIENT_STATE_VALUE
            ),
            Err(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn rejects_a_batch_with_one_notification_without_a_client_state() {
        assert_eq!(
            check(
                &notifications_with(&[Some(CLIENT_STATE_VALUE), None]),
                CLIENT_STATE_VALUE
            ),
            Err(AuthFailure::MissingSignature {
                header: CLIENT_STATE.into()
            })
        );
    }

    #[test]
    fn rejects_a_body_that_is_not_a_collection_of_notifications() {
        for body in [
            "",
            "clientState=secretClientValue",
            r#"{"value":[]}"#,
            r#"{"clientState":"secretClientValue"}"#,
        ] {
            assert_eq!(
                check(&InboundRequest::post(body), CLIENT_STATE_VALUE),
                Err(AuthFailure::MalformedSignature {
                    header: CLIENT_STATE.into()
                }),
                "{body:?}"
            );
        }
    }

    #[test]
    fn the_previous_client_state_still_verifies_during_a_rotation() {
        let ring = KeyRing::from_secrets(
            "newClientValue",
            Some(CLIENT_STATE_VALUE),
            crate::secret::KeyEncoding::Raw,
        )
        .unwrap();
        let batch = notifications_with(&[Some(CLIENT_STATE_VALUE), Some("newClientValue")]);
        assert_eq!(
            Msgraph.check_signature(&batch, &ring, at(0), WINDOW),
            Ok(())
        );
    }

    #[test]
    fn a_client_state_does_not_cover_the_rest_of_the_body() {
        let changed = InboundRequest::post(NOTIFICATION.replace("created", "deleted"));
        assert_eq!(check(&changed, CLIENT_STATE_VALUE), Ok(()));
    }

    #[test]
    fn signing_adds_no_header() {
        assert_eq!(
            Msgraph.sign(&outgoing(NOTIFICATION, 0), &raw_key(CLIENT_STATE_VALUE)),
            []
        );
    }

    #[test]
    fn a_validation_request_needs_no_secret_and_is_answered_with_its_decoded_token() {
        let request = validation(&encoded(TOKEN));
        assert_eq!(check(&request, "any secret"), Ok(()));
        assert_eq!(
            Msgraph.describe(&request).unwrap(),
            Delivery::handshake(
                "validation",
                Handshake {
                    content_type: "text/plain",
                    body: TOKEN.into()
                }
            )
        );
    }

    #[test]
    fn a_request_with_a_validation_token_is_answered_and_never_queued_whatever_its_body() {
        let request = InboundRequest::post(NOTIFICATION.replace(CLIENT_STATE_VALUE, "forged"))
            .with_url("https://hooks.example.com/webhooks/msgraph?validationToken=abc");
        assert_eq!(check(&request, CLIENT_STATE_VALUE), Ok(()));
        assert!(Msgraph.describe(&request).unwrap().handshake.is_some());
    }

    #[test]
    fn rejects_an_empty_validation_token() {
        assert_eq!(
            check(&validation(""), CLIENT_STATE_VALUE),
            Err(AuthFailure::MalformedSignature {
                header: VALIDATION_TOKEN.into()
            })
        );
    }

    #[test]
    fn rejects_a_validation_token_over_the_bound() {
        let at_bound = "v".repeat(MAX_VALIDATION_TOKEN_LEN);
        assert_eq!(check(&validation(&at_bound), CLIENT_STATE_VALUE), Ok(()));
        assert_eq!(
            check(&validation(&format!("{at_bound}v")), CLIENT_STATE_VALUE),
            Err(AuthFailure::MalformedSignature {
                header: VALIDATION_TOKEN.into()
            })
        );
    }

    #[test]
    fn rejects_a_validation_token_with_control_characters() {
        for token in ["line%0Abreak", "nul%00", "tab%09"] {
            let request = validation(token);
            assert_eq!(
                check(&request, CLIENT_STATE_VALUE),
                Err(AuthFailure::MalformedSignature {
                    header: VALIDATION_TOKEN.into()
                }),
                "{token}"
            );
            assert!(Msgraph.describe(&request).is_err(), "{token}");
        }
    }

    #[test]
    fn a_notification_is_typed_by_its_change_type_and_keyed_by_its_body() {
        assert_eq!(
            Msgraph
                .describe(&InboundRequest::post(NOTIFICATION))
                .unwrap(),
            Delivery::event(None, "created")
        );
    }

    #[test]
    fn a_lifecycle_notification_is_typed_by_its_lifecycle_event() {
        assert_eq!(
            Msgraph
                .describe(&InboundRequest::post(LIFECYCLE))
                .unwrap()
                .event_type,
            "reauthorizationRequired"
        );
    }

    #[test]
    fn a_batch_of_several_kinds_is_a_batch() {
        let body = r#"{"value":[{"changeType":"created"},{"changeType":"created"},{"lifecycleEvent":"missed"}]}"#;
        assert_eq!(
            Msgraph
                .describe(&InboundRequest::post(body))
                .unwrap()
                .event_type,
            MIXED_BATCH
        );
    }

    #[test]
    fn a_notification_of_no_known_kind_is_malformed() {
        for body in [
            r#"{"value":[{"clientState":"s"}]}"#,
            r#"{"value":[{"changeType":"created"},{}]}"#,
            r#"{"value":[]}"#,
        ] {
            assert_eq!(
                Msgraph.describe(&InboundRequest::post(body)),
                Err(MalformedRequest::MissingField("changeType".into())),
                "{body}"
            );
        }
    }
}

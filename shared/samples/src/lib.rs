//! Sample deliveries for every provider, signed with public test secrets, as API Gateway
//! (HTTP API, payload format 2.0) hands them to a receiver.
//!
//! The payloads live in `events/payloads/<provider>/`: `<name>.json` is the body exactly as
//! the provider sends it (less the file's final newline), `<name>.headers` the headers it
//! sends beside the signature, one `Name: value` a line. They are compiled in, so the
//! `hookgate` tool and the tests sign the very same bytes. Signing is done here, by each
//! scheme's own [`SignatureScheme::sign`], at a time the caller chooses: a timestamped
//! signature goes stale within minutes, so the events in `events/<provider>/` are
//! regenerated (`hookgate samples`) rather than kept by hand.
//!
//! Besides one genuine event per payload, each provider has events a receiver must refuse
//! with 401 (see [`Variant`]), all made from its first payload.
//!
//! The processor's samples, [`SqsSampleEvent`], are Lambda SQS events in
//! `events/processor/` whose bodies are the very envelopes a receiver queues for the genuine
//! samples, made by the receiver's own verification, so the two halves of the pipeline are
//! tried on the same deliveries. [`SampleFile`] is every file `hookgate samples` writes.
//!
//! The secrets here are published in `events/README.md` and sign nothing but samples: they
//! must never be configured on a deployed receiver.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use hookgate::envelope::QueueMessage;
use hookgate::https::MemoryHttps;
use hookgate::provider::Provider;
use hookgate::secret::{KeyRing, SigningKey};
use hookgate::verify::sns::Sns;
use hookgate::verify::{scheme_for, verify, OutgoingDelivery, SignatureScheme, Verified};

/// Public, test-only: the GitHub samples' webhook secret.
pub const GITHUB_TEST_SECRET: &str = "hookgate-test-github-secret";
/// Public, test-only: the Stripe samples' endpoint signing secret (used as its literal
/// bytes, as Stripe does).
pub const STRIPE_TEST_SECRET: &str = "whsec_hookgate_test_stripe_secret";
/// Public, test-only: the Shopify samples' app client secret.
pub const SHOPIFY_TEST_SECRET: &str = "hookgate-test-shopify-secret";
/// Public, test-only: the Slack samples' signing secret.
pub const SLACK_TEST_SECRET: &str = "hookgate-test-slack-signing-secret";
/// Public, test-only: the Standard Webhooks samples' secret; the key is its base64 part
/// decoded, `hookgate-test-standard-secret`.
pub const STANDARD_TEST_SECRET: &str = "whsec_aG9va2dhdGUtdGVzdC1zdGFuZGFyZC1zZWNyZXQ=";
/// Public, test-only: the generic samples' secret.
pub const GENERIC_TEST_SECRET: &str = "hookgate-test-generic-secret";

/// Public, test-only: the topic the Amazon SNS samples come from; the SNS receiver's secret
/// is the list of topic ARNs it accepts.
pub const SNS_TEST_TOPIC_ARN: &str = "arn:aws:sns:us-east-1:123456789012:hookgate-test-alarms";
/// Public, test-only: where the SNS samples say their signing certificate is. SNS serves
/// nothing there: only the samples' scheme ([`sample_scheme`]) takes
/// [`SNS_TEST_CERTIFICATE`] for it, without fetching.
pub const SNS_TEST_CERTIFICATE_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-hookgate-test.pem";
/// Public, test-only: the self-signed certificate of [`SNS_TEST_SIGNING_KEY`], made with
/// openssl (`shared/samples/sns-test/`).
pub const SNS_TEST_CERTIFICATE: &str = include_str!("../sns-test/certificate.pem");
/// Public, test-only: the RSA-2048 key the SNS samples are signed with (PKCS#8 PEM).
pub const SNS_TEST_SIGNING_KEY: &str = include_str!("../sns-test/signing-key.pem");
/// Public, test-only: another RSA-2048 key, whose signature the test certificate refuses.
const SNS_WRONG_SIGNING_KEY: &str = include_str!("../sns-test/wrong-signing-key.pem");

/// The generic receiver's settings for the samples, which come from a fictional "AgentX"
/// sender: `X-AgentX-Signature: sha256=<hex>` over `{timestamp}.{body}`.
pub const GENERIC_TEST_SETTINGS: [(&str, &str); 6] = [
    ("SIGNATURE_HEADER", "X-AgentX-Signature"),
    ("SIGNATURE_PREFIX", "sha256="),
    ("TIMESTAMP_HEADER", "X-AgentX-Timestamp"),
    ("SIGNED_CONTENT", "{timestamp}.{body}"),
    ("ID_HEADER", "X-AgentX-Delivery"),
    ("EVENT_TYPE_FIELD", "type"),
];

/// How long before it reaches API Gateway a stale sample was signed: twice the default
/// replay window, so it is refused unless `SIGNATURE_TOLERANCE_SECS` is raised past 600.
pub const STALE_BY_SECS: i64 = 600;

/// What the samples know of a provider besides its payloads: one entry per provider, in
/// the provider table's order (a test keeps them in step).
struct SampleProvider {
    provider: Provider,
    /// The secret its receiver is configured with (`WEBHOOK_SECRET`): for a scheme whose
    /// receivers hold a public key, that key.
    secret: &'static str,
    /// The secret that signs its samples: the same for a shared secret, the private key
    /// for a public one.
    signing_secret: &'static str,
    /// The secret that signs its `rejected-wrong-secret` sample: well-formed for the
    /// scheme, but not the one (or the pair of the one) the receiver is configured with.
    wrong_secret: &'static str,
    /// Whether its signature covers the body, and so whether it has a
    /// `rejected-tampered-body` sample (a GitLab secret token or a Microsoft Graph
    /// `clientState` proves the sender, not the bytes).
    signs_its_body: bool,
    /// Where it carries the id its receiver deduplicates on.
    id_place: IdPlace,
    /// Whether its scheme, as the samples configure it, signs a timestamp (and so has a
    /// `rejected-stale-timestamp` sample).
    signs_a_timestamp: bool,
    /// Where its deliveries come from: an address in its published webhook ranges where
    /// it has some, else a documentation address (RFC 5737).
    source_ip: &'static str,
}

/// The wrong secret of schemes that take any string.
const WRONG_SECRET: &str = "hookgate-test-wrong-secret";

const SAMPLE_PROVIDERS: [SampleProvider; Provider::COUNT] = [
    SampleProvider {
        provider: Provider::Github,
        secret: GITHUB_TEST_SECRET,
        signing_secret: GITHUB_TEST_SECRET,
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::Headers(&["x-github-delivery"]),
        signs_a_timestamp: false,
        source_ip: "192.30.252.44",
    },
    SampleProvider {
        provider: Provider::Stripe,
        secret: STRIPE_TEST_SECRET,
        signing_secret: STRIPE_TEST_SECRET,
        wrong_secret: "whsec_hookgate_test_wrong_secret",
        signs_its_body: true,
        id_place: IdPlace::BodyField("id"),
        signs_a_timestamp: true,
        source_ip: "3.18.12.63",
    },
    SampleProvider {
        provider: Provider::Shopify,
        secret: SHOPIFY_TEST_SECRET,
        signing_secret: SHOPIFY_TEST_SECRET,
        wrong_secret: WRONG_SECRET,
        // Shopify's retries keep both; the receiver takes the event id where it is sent.
        signs_its_body: true,
        id_place: IdPlace::Headers(&["x-shopify-webhook-id", "x-shopify-event-id"]),
        signs_a_timestamp: false,
        source_ip: "203.0.113.10",
    },
    SampleProvider {
        provider: Provider::Slack,
        secret: SLACK_TEST_SECRET,
        signing_secret: SLACK_TEST_SECRET,
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyField("event_id"),
        signs_a_timestamp: true,
        source_ip: "203.0.113.20",
    },
    SampleProvider {
        provider: Provider::Standard,
        secret: STANDARD_TEST_SECRET,
        signing_secret: STANDARD_TEST_SECRET,
        // base64 of `hookgate-test-wrong-secret`.
        wrong_secret: "whsec_aG9va2dhdGUtdGVzdC13cm9uZy1zZWNyZXQ=",
        signs_its_body: true,
        id_place: IdPlace::Headers(&["webhook-id"]),
        signs_a_timestamp: true,
        source_ip: "203.0.113.30",
    },
    SampleProvider {
        provider: Provider::Linear,
        secret: "hookgate-test-linear-secret",
        signing_secret: "hookgate-test-linear-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::Headers(&["linear-delivery"]),
        // The body's `webhookTimestamp`, which the scheme reads once the signature holds.
        signs_a_timestamp: true,
        source_ip: "35.231.147.226",
    },
    SampleProvider {
        provider: Provider::Intercom,
        secret: "hookgate-test-intercom-secret",
        signing_secret: "hookgate-test-intercom-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyField("id"),
        signs_a_timestamp: false,
        source_ip: "34.231.68.152",
    },
    SampleProvider {
        provider: Provider::Zendesk,
        secret: "hookgate-test-zendesk-secret",
        signing_secret: "hookgate-test-zendesk-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyField("id"),
        signs_a_timestamp: true,
        source_ip: "203.0.113.51",
    },
    SampleProvider {
        provider: Provider::Pagerduty,
        secret: "hookgate-test-pagerduty-secret",
        signing_secret: "hookgate-test-pagerduty-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::Headers(&["x-webhook-id"]),
        signs_a_timestamp: false,
        source_ip: "44.242.69.192",
    },
    SampleProvider {
        provider: Provider::Square,
        secret: "hookgate-test-square-signature-key",
        signing_secret: "hookgate-test-square-signature-key",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyField("event_id"),
        signs_a_timestamp: false,
        // Square's production webhook addresses, as its developer forum lists them.
        source_ip: "54.245.1.154",
    },
    SampleProvider {
        provider: Provider::Paddle,
        secret: "hookgate-test-paddle-secret",
        signing_secret: "hookgate-test-paddle-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyField("event_id"),
        signs_a_timestamp: true,
        source_ip: "34.232.58.13",
    },
    SampleProvider {
        provider: Provider::Calendly,
        secret: "hookgate-test-calendly-secret",
        signing_secret: "hookgate-test-calendly-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyHash,
        signs_a_timestamp: true,
        source_ip: "203.0.113.55",
    },
    SampleProvider {
        provider: Provider::Sentry,
        secret: "hookgate-test-sentry-secret",
        signing_secret: "hookgate-test-sentry-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::BodyHash,
        signs_a_timestamp: false,
        source_ip: "35.184.238.160",
    },
    SampleProvider {
        provider: Provider::Hubspot,
        secret: "hookgate-test-hubspot-client-secret",
        signing_secret: "hookgate-test-hubspot-client-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        // A batch is keyed by its events (less their attempt numbers): a new `eventId`
        // makes a new batch.
        id_place: IdPlace::BodyNumbers("eventId"),
        signs_a_timestamp: true,
        source_ip: "203.0.113.57",
    },
    SampleProvider {
        provider: Provider::Jira,
        secret: "hookgate-test-jira-secret",
        signing_secret: "hookgate-test-jira-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::Headers(&["x-atlassian-webhook-identifier"]),
        signs_a_timestamp: false,
        source_ip: "203.0.113.58",
    },
    SampleProvider {
        provider: Provider::Twilio,
        secret: "hookgate-test-twilio-auth-token",
        signing_secret: "hookgate-test-twilio-auth-token",
        wrong_secret: WRONG_SECRET,
        // The signature covers the form's parameters, so a changed digit fails it.
        signs_its_body: true,
        // Keyed by its signed parameters: a new message is a new `MessageSid`.
        id_place: IdPlace::FormField("MessageSid"),
        signs_a_timestamp: false,
        source_ip: "203.0.113.59",
    },
    // A secret token (`X-Gitlab-Token`), which covers neither body nor time; gitlab.com
    // sends webhooks from 34.74.90.64/28 and 34.74.226.0/24.
    SampleProvider {
        provider: Provider::Gitlab,
        secret: "hookgate-test-gitlab-secret",
        signing_secret: "hookgate-test-gitlab-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: false,
        id_place: IdPlace::Headers(&["idempotency-key", "x-gitlab-event-uuid"]),
        signs_a_timestamp: false,
        source_ip: "34.74.90.66",
    },
    // A key pair made for these samples (an application's public key is hex in Discord's
    // Developer Portal; its private half, the 32-byte seed, signs); the wrong secret is the
    // seed of another pair. Discord publishes no address ranges.
    SampleProvider {
        provider: Provider::Discord,
        secret: "3a7c21dbbe8dd6c1d73e21cf4183f549e65f5cd7ce6619e54c1329cd6bab3e21",
        signing_secret: "a9d848e1afdcc644b380583079c6bd4cbfae05b0be2a2eb7683a625463dfa7d8",
        wrong_secret: "e78adbc30ad82397d4c41f48ff4e51b979722af1476db41c05687d053e3e017f",
        signs_its_body: true,
        id_place: IdPlace::BodyField("id"),
        signs_a_timestamp: true,
        source_ip: "203.0.113.61",
    },
    // A P-256 key pair made with openssl for these samples: the verification key (base64 of
    // its DER SubjectPublicKeyInfo, as SendGrid shows it) and its private half (base64 of
    // PKCS#8 DER); the wrong secret is another pair's private key. A batch has no id: it is
    // keyed by its body's hash. SendGrid publishes no fixed addresses.
    SampleProvider {
        provider: Provider::Sendgrid,
        secret: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsvdHAMoYxYUUF8suN+D1IMBFsPBRmSWs6E4QahSwW5Q+vy6tw9jq66mDpylUzrHOLtEbeivFEgxeSNCG4Kg0Yw==",
        signing_secret: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6M4hxJ6A+ypeu5Ek54TatuCa3wEzm4FzGWdOrAXdSaGhRANCAASy90cAyhjFhRQXyy434PUgwEWw8FGZJazoThBqFLBblD6/Lq3D2OrrqYOnKVTOsc4u0Rt6K8USDF5I0IbgqDRj",
        wrong_secret: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgH4NKVvDMet8lUJBU8jz+yktFpKVsFCygI26JBhCHjzShRANCAATlJ3oYg4CA5BPWfZLzuQ9Fy7CdT/0pJDadNfvQKOImwAet/8LD0fb2gsa9RdfyDSoATKlmIumR6vIniInF4ilN",
        signs_its_body: true,
        id_place: IdPlace::BodyHash,
        signs_a_timestamp: true,
        source_ip: "203.0.113.62",
    },
    SampleProvider {
        provider: Provider::Sns,
        // A topic ARN cannot start `hookgate-test-`: the topic's name does.
        secret: SNS_TEST_TOPIC_ARN,
        signing_secret: SNS_TEST_SIGNING_KEY,
        wrong_secret: SNS_WRONG_SIGNING_KEY,
        signs_its_body: true,
        id_place: IdPlace::BodyField("MessageId"),
        // `Timestamp` is signed, but no window applies (see `hookgate::verify::sns`).
        signs_a_timestamp: false,
        // SNS publishes no ranges of its own for HTTP deliveries (AWS's ip-ranges.json has
        // no SNS service): a documentation address.
        source_ip: "203.0.113.63",
    },
    // The secret is the subscription's clientState, which the payload carries: its
    // `rejected-wrong-secret` sample must carry the wrong one. A delivery has no id: it is
    // keyed by its body's hash.
    SampleProvider {
        provider: Provider::Msgraph,
        secret: "hookgate-test-msgraph-secret",
        signing_secret: "hookgate-test-msgraph-secret",
        wrong_secret: WRONG_SECRET,
        signs_its_body: false,
        id_place: IdPlace::BodyHash,
        signs_a_timestamp: false,
        source_ip: "203.0.113.64",
    },
    SampleProvider {
        provider: Provider::Generic,
        secret: GENERIC_TEST_SECRET,
        signing_secret: GENERIC_TEST_SECRET,
        wrong_secret: WRONG_SECRET,
        signs_its_body: true,
        id_place: IdPlace::Headers(&["x-agentx-delivery"]),
        signs_a_timestamp: true,
        source_ip: "203.0.113.40",
    },
];

// The entries follow the provider table's order, which `sample_provider` relies on: a
// provider out of place fails the build.
const _: () = {
    let mut index = 0;
    while index < Provider::COUNT {
        assert!(
            SAMPLE_PROVIDERS[index].provider as usize == Provider::ALL[index] as usize,
            "SAMPLE_PROVIDERS must list the providers in the provider table's order"
        );
        index += 1;
    }
};

/// The samples' entry for `provider`.
const fn sample_provider(provider: Provider) -> &'static SampleProvider {
    &SAMPLE_PROVIDERS[provider as usize]
}

/// The secret a provider's receiver is configured with for the samples (`WEBHOOK_SECRET`):
/// a shared secret, a public key (Discord, SendGrid) or a list of topics (SNS).
pub const fn test_secret(provider: Provider) -> &'static str {
    sample_provider(provider).secret
}

/// The secret that signs a provider's samples: [`test_secret`] for a shared secret, the
/// private key of a public one (Discord, SendGrid), SNS's test certificate's key.
pub const fn signing_secret(provider: Provider) -> &'static str {
    sample_provider(provider).signing_secret
}

/// The secret that signs a provider's `rejected-wrong-secret` sample: well-formed for the
/// scheme, but not the one the receiver is configured with.
pub const fn wrong_secret(provider: Provider) -> &'static str {
    sample_provider(provider).wrong_secret
}

/// The environment a receiver needs, besides `QUEUE_URL`, to accept the provider's
/// genuine samples: `WEBHOOK_SECRET`, plus the generic scheme's settings.
pub fn receiver_environment(provider: Provider) -> Vec<(&'static str, String)> {
    let mut environment = vec![("WEBHOOK_SECRET", test_secret(provider).to_owned())];
    if provider == Provider::Generic {
        environment.extend(
            GENERIC_TEST_SETTINGS
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned())),
        );
    }
    environment
}

/// The scheme a receiver configured with [`receiver_environment`] uses; for Amazon SNS, the
/// one [`sns_sample_scheme`] makes.
pub fn sample_scheme(provider: Provider) -> Box<dyn SignatureScheme> {
    if provider == Provider::Sns {
        return Box::new(sns_sample_scheme());
    }
    let environment: HashMap<String, String> = receiver_environment(provider)
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    scheme_for(provider, &environment).expect("the sample settings are a valid configuration")
}

/// The Amazon SNS scheme for the samples: it takes [`SNS_TEST_CERTIFICATE`] for
/// [`SNS_TEST_CERTIFICATE_URL`] without fetching it, and confirms the sample subscription
/// with an in-memory client that answers its `SubscribeURL` as SNS does. The Lambda
/// receiver's scheme fetches SNS's real certificates and never holds this one: the samples'
/// key is public, so only the samples, the tests and `hookgate dev` may trust it.
pub fn sns_sample_scheme() -> Sns {
    let https = PAYLOADS
        .iter()
        .filter(|payload| payload.provider == Provider::Sns)
        .filter_map(|payload| {
            let message: serde_json::Value = serde_json::from_str(payload.body()).ok()?;
            message["SubscribeURL"].as_str().map(str::to_owned)
        })
        .fold(MemoryHttps::new(), |https, url| {
            https.answer(&url, 200, SNS_CONFIRMED)
        });
    Sns::new(Arc::new(https))
        .with_certificate(SNS_TEST_CERTIFICATE_URL, SNS_TEST_CERTIFICATE)
        .expect("the samples' certificate is one, at an SNS URL")
}

/// What SNS answers a `SubscribeURL` with.
const SNS_CONFIRMED: &str = "<ConfirmSubscriptionResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\n  <ConfirmSubscriptionResult>\n    <SubscriptionArn>arn:aws:sns:us-east-1:123456789012:hookgate-test-alarms:4f6e2c1a-8b3d-4e5f-9a7c-2d1b0e8f6a53</SubscriptionArn>\n  </ConfirmSubscriptionResult>\n  <ResponseMetadata>\n    <RequestId>4e6f2a1c-3b5d-5e7f-8a9b-0c1d2e3f4a5b</RequestId>\n  </ResponseMetadata>\n</ConfirmSubscriptionResponse>\n";

/// A queue message for a GitHub `issues` delivery with the given delivery id and `action`,
/// made the only way there is: the delivery signed with [`GITHUB_TEST_SECRET`] at the
/// current time, verified by the GitHub scheme, and wrapped by
/// [`QueueMessage::from_verified`], as a receiver does. Each delivery id gives an envelope
/// (and so a queue body) of its own; for the queue and processor tests.
pub fn verified_github_message(delivery_id: &str, action: &str) -> QueueMessage {
    let body = serde_json::json!({ "action": action, "issue": { "number": 1347 } }).to_string();
    verified_github_message_with_body(delivery_id, &body)
}

/// [`verified_github_message`] with a body of one's own (any text: GitHub types a body that
/// is not JSON by its event header alone), carried in the envelope whatever its size.
pub fn verified_github_message_with_body(delivery_id: &str, body: &str) -> QueueMessage {
    let scheme = sample_scheme(Provider::Github);
    let body = body.to_owned();
    let now = OffsetDateTime::now_utc();
    let key = SigningKey::parse(GITHUB_TEST_SECRET, scheme.key_encoding())
        .expect("the sample secret is valid for GitHub");
    let signature = scheme.sign(
        &OutgoingDelivery {
            body: body.as_bytes(),
            signed_at: now,
            id: delivery_id,
            url: &sample_url(Provider::Github),
        },
        &key,
    );
    let request = signature
        .iter()
        .fold(
            hookgate::request::InboundRequest::post(body.clone()),
            |request, (name, value)| request.with_header(name, value),
        )
        .with_header("content-type", "application/json")
        .with_header("x-github-delivery", delivery_id)
        .with_header("x-github-event", "issues");
    let keys = KeyRing::from_secrets(GITHUB_TEST_SECRET, None, scheme.key_encoding())
        .expect("the sample secret is valid for GitHub");
    match verify(
        scheme.as_ref(),
        &request,
        &keys,
        now,
        std::time::Duration::from_secs(300),
    ) {
        Ok(Verified::Webhook(webhook)) => QueueMessage::from_verified(&webhook),
        other => panic!("a correctly signed GitHub delivery must verify, got {other:?}"),
    }
}

/// What a sample event is, and so what a receiver must answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// Signed with the test secret at the time it arrives: queued (202), or for a
    /// handshake answered directly (200).
    Genuine,
    /// Signed, then one byte of the body changed (its first digit): 401.
    TamperedBody,
    /// Signed with [`wrong_secret`]: 401.
    WrongSecret,
    /// Signed [`STALE_BY_SECS`] before it arrives: 401. Only for schemes that sign a
    /// timestamp.
    StaleTimestamp,
}

impl Variant {
    pub fn is_rejected(self) -> bool {
        self != Variant::Genuine
    }
}

/// One payload a provider sends, as kept in `events/payloads/`.
#[derive(Debug)]
struct Payload {
    provider: Provider,
    name: &'static str,
    body: &'static str,
    /// `.json`, or `.form` for a form; the payload tests check each body is what it says.
    #[cfg_attr(not(test), allow(dead_code))]
    extension: &'static str,
    headers: &'static str,
}

macro_rules! payload {
    ($provider:ident, $dir:literal, $name:literal) => {
        payload!($provider, $dir, $name, ".json")
    };
    // A body that is not JSON (a form) is kept as `<name><extension>`.
    ($provider:ident, $dir:literal, $name:literal, $extension:literal) => {
        Payload {
            provider: Provider::$provider,
            name: $name,
            body: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../events/payloads/",
                $dir,
                "/",
                $name,
                $extension
            )),
            extension: $extension,
            headers: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../events/payloads/",
                $dir,
                "/",
                $name,
                ".headers"
            )),
        }
    };
}

/// Every payload; a provider's first is the one its rejected samples are made from.
static PAYLOADS: &[Payload] = &[
    payload!(Github, "github", "pull_request.opened"),
    payload!(Stripe, "stripe", "invoice.paid"),
    payload!(Shopify, "shopify", "orders-create"),
    payload!(Slack, "slack", "app_mention"),
    payload!(Slack, "slack", "url_verification"),
    payload!(Standard, "standard", "response.completed"),
    payload!(Linear, "linear", "Issue.create"),
    payload!(Intercom, "intercom", "conversation.user.created"),
    payload!(Zendesk, "zendesk", "ticket.created"),
    payload!(Pagerduty, "pagerduty", "incident.triggered"),
    payload!(Square, "square", "payment.created"),
    payload!(Paddle, "paddle", "transaction.completed"),
    payload!(Calendly, "calendly", "invitee.created"),
    payload!(Sentry, "sentry", "issue.created"),
    payload!(Hubspot, "hubspot", "contact.creation"),
    payload!(Jira, "jira", "issue_created"),
    payload!(Twilio, "twilio", "message.received", ".form"),
    payload!(Gitlab, "gitlab", "push"),
    payload!(Discord, "discord", "application_command"),
    payload!(Discord, "discord", "ping"),
    payload!(Sendgrid, "sendgrid", "delivered"),
    payload!(Sns, "sns", "notification"),
    payload!(Sns, "sns", "subscription_confirmation"),
    payload!(Msgraph, "msgraph", "created"),
    payload!(Generic, "generic", "task.completed"),
];

impl Payload {
    /// The file's content less its final newline, so the file can end like any text file
    /// while the body stays byte for byte what the provider sends.
    fn body(&self) -> &'static str {
        self.body.strip_suffix('\n').unwrap_or(self.body)
    }

    /// The body as signed at `signed_at`: `{signed_at}` stands for the signing time in
    /// RFC 3339 and `{signed_at_ms}` for it in unix milliseconds, for providers that sign a
    /// time inside the body (Linear's `webhookTimestamp`).
    fn body_at(&self, signed_at: OffsetDateTime) -> String {
        let millis = signed_at.unix_timestamp_nanos() / 1_000_000;
        self.body()
            .replace("{signed_at_ms}", &millis.to_string())
            .replace("{signed_at}", &rfc3339(signed_at))
    }

    /// Lowercase names, as API Gateway passes them on. `{signed_at}` in a value stands for
    /// the signing time, for headers such as `X-Shopify-Triggered-At`.
    fn headers(&self, signed_at: OffsetDateTime) -> BTreeMap<String, String> {
        self.headers
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line
                    .split_once(':')
                    .expect("a payload's header lines are `Name: value`");
                let value = value.trim().replace("{signed_at}", &rfc3339(signed_at));
                (name.trim().to_ascii_lowercase(), value)
            })
            .collect()
    }
}

/// Where the provider carries the id its receiver deduplicates on, as the samples do: the
/// headers to give a fresh id, or the body's top-level field.
#[derive(Debug, Clone, Copy)]
enum IdPlace {
    Headers(&'static [&'static str]),
    BodyField(&'static str),
    /// A field of a form body (Twilio's `MessageSid`), whose value is renewed wherever the
    /// form repeats it (`SmsSid`, `SmsMessageSid`).
    FormField(&'static str),
    /// Numbers of a field the body repeats (HubSpot's events' `eventId`), which its key is
    /// made from.
    BodyNumbers(&'static str),
    /// Nowhere: the provider sends no id its retries keep (Sentry, Calendly), so the
    /// receiver keys on the body's hash, and a new id is a body never seen before.
    BodyHash,
}

fn id_place(provider: Provider) -> IdPlace {
    sample_provider(provider).id_place
}

/// Whether the provider's signature, as the samples configure it, covers its delivery id.
/// Where it does not (GitHub, Shopify, the generic sample), a body hookgate has seen under
/// another id is taken for a replay of it.
fn signs_its_id(provider: Provider) -> bool {
    sample_scheme(provider).signs_stable_id()
}

/// Whitespace after a JSON body, random, that makes it a body never seen before while its
/// JSON stays the same: a newline and 32 spaces or tabs.
fn fresh_trailing_whitespace() -> String {
    let bits = uuid::Uuid::new_v4().as_u128();
    std::iter::once('\n')
        .chain((0..32).map(|bit| if bits >> bit & 1 == 1 { '\t' } else { ' ' }))
        .collect()
}

/// The header that carries the provider's own delivery id (the first of its id headers), for
/// schemes that sign it.
fn delivery_id_header(provider: Provider) -> Option<&'static str> {
    match id_place(provider) {
        IdPlace::Headers(names) => names.first().copied(),
        IdPlace::BodyField(_)
        | IdPlace::FormField(_)
        | IdPlace::BodyNumbers(_)
        | IdPlace::BodyHash => None,
    }
}

/// An id never used before, shaped as `old` is: a UUID for a UUID, else `old`'s prefix up
/// to its first `_` (`evt_`, `wh_`, `dlv_`) or its leading capitals (Slack's `Ev`), then
/// random characters in `old`'s case.
fn fresh_id_like(old: &str) -> String {
    let random = uuid::Uuid::new_v4();
    if uuid::Uuid::parse_str(old).is_ok() {
        return random.to_string();
    }
    let suffix = random.simple().to_string();
    match old.split_once('_') {
        Some((prefix, _)) => format!("{prefix}_{suffix}"),
        None => {
            let prefix: String = old
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .take(2)
                .collect();
            format!("{prefix}{}", suffix[..10].to_ascii_uppercase())
        }
    }
}

/// `body` with every number of `"field":` replaced by a random one of as many digits: the
/// layout stays byte for byte but for those digits.
fn with_fresh_numbers(body: &str, field: &str) -> String {
    let label = format!("\"{field}\":");
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find(&label) {
        let (before, after) = rest.split_at(at + label.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let random = uuid::Uuid::new_v4().as_u128().to_string();
        if (1..=random.len()).contains(&digits) {
            // A leading digit other than 0 keeps it a JSON number.
            out.push('1');
            out.push_str(&random[..digits - 1]);
            rest = &after[digits..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// What `hookgate send` changes in a sample before it signs it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Changes<'a> {
    /// This body instead of the sample's (`--data FILE`).
    pub body: Option<&'a str>,
    /// A delivery id never sent before, wherever the provider carries it (`--new-id`);
    /// for a provider that does not sign its id, the body also ends in random whitespace,
    /// or hookgate would take the same body under a new unsigned id for a replay.
    pub new_id: bool,
    /// The URL it is sent to, which Square, HubSpot and Twilio sign; the samples' API by
    /// default.
    pub url: Option<&'a str>,
}

/// The changes asked for cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{provider} carries its delivery id in the body's `{field}`, which this body has not; add one, or leave out --new-id")]
    NoIdInBody {
        provider: Provider,
        field: &'static str,
    },
    #[error(
        "{0} is signed wrongly on purpose; --data, --new-id and --secret apply to genuine samples"
    )]
    RejectedSample(&'static str),
    #[error(transparent)]
    Secret(#[from] hookgate::secret::SecretError),
}

/// Whether the provider's scheme, as the samples configure it, signs a timestamp.
fn signs_a_timestamp(provider: Provider) -> bool {
    sample_provider(provider).signs_a_timestamp
}

/// A delivery as the provider sends it, before API Gateway: what `hookgate send` posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleDelivery {
    /// Lowercase names, signature headers included.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    /// The URL it is signed for (Square, HubSpot and Twilio sign it) and so must be sent to.
    pub url: String,
}

/// No sample event has the name asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("there is no {provider} sample event named `{name}` (known: {known})")]
pub struct UnknownSample {
    pub provider: Provider,
    pub name: String,
    pub known: String,
}

/// One file of `events/<provider>/`: a payload, signed genuinely or spoiled in one way.
#[derive(Debug, Clone, Copy)]
pub struct SampleEvent {
    payload: &'static Payload,
    variant: Variant,
}

impl SampleEvent {
    /// Every sample event, provider by provider: the genuine ones first, then the rejected.
    pub fn all() -> Vec<SampleEvent> {
        let mut events = Vec::new();
        for provider in Provider::ALL {
            let mut payloads = PAYLOADS
                .iter()
                .filter(|p| p.provider == provider)
                .peekable();
            let Some(&first) = payloads.peek() else {
                continue;
            };
            events.extend(payloads.map(|payload| SampleEvent {
                payload,
                variant: Variant::Genuine,
            }));
            let mut rejected = vec![Variant::WrongSecret];
            if sample_provider(provider).signs_its_body {
                rejected.insert(0, Variant::TamperedBody);
            }
            if signs_a_timestamp(provider) {
                rejected.push(Variant::StaleTimestamp);
            }
            events.extend(rejected.into_iter().map(|variant| SampleEvent {
                payload: first,
                variant,
            }));
        }
        events
    }

    /// The provider's sample event of that name (its file name without `.json`).
    pub fn find(provider: Provider, name: &str) -> Result<SampleEvent, UnknownSample> {
        let events = Self::all().into_iter().filter(|e| e.provider() == provider);
        let mut known = Vec::new();
        for event in events {
            if event.name() == name {
                return Ok(event);
            }
            known.push(event.name());
        }
        Err(UnknownSample {
            provider,
            name: name.to_owned(),
            known: known.join(", "),
        })
    }

    pub fn provider(&self) -> Provider {
        self.payload.provider
    }

    /// The file name without `.json`: the payload's name for a genuine event,
    /// `rejected-<why>` for the others.
    pub fn name(&self) -> &'static str {
        match self.variant {
            Variant::Genuine => self.payload.name,
            Variant::TamperedBody => "rejected-tampered-body",
            Variant::WrongSecret => "rejected-wrong-secret",
            Variant::StaleTimestamp => "rejected-stale-timestamp",
        }
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Whether the receiver answers this sample itself instead of queueing it: a genuine
    /// provider handshake (Slack's `url_verification`, Discord's `PING`), as the provider's
    /// scheme describes the payload.
    pub fn is_handshake(&self) -> bool {
        if self.variant != Variant::Genuine {
            return false;
        }
        let request = self
            .payload
            .headers(OffsetDateTime::UNIX_EPOCH)
            .iter()
            .fold(
                hookgate::request::InboundRequest::post(self.payload.body()),
                |request, (name, value)| request.with_header(name, value),
            );
        sample_scheme(self.provider())
            .describe(&request)
            .is_ok_and(|delivery| delivery.handshake.is_some())
    }

    /// Where the event lives under `events/`: `<provider>/<name>.json`.
    pub fn relative_path(&self) -> String {
        format!("{}/{}.json", self.provider(), self.name())
    }

    /// The delivery as the provider sends it to the samples' API, arriving at `at`.
    pub fn delivery(&self, at: OffsetDateTime) -> SampleDelivery {
        self.delivery_to(&sample_url(self.provider()), at)
    }

    /// The delivery as the provider sends it to `url`, arriving at `at`.
    pub fn delivery_to(&self, url: &str, at: OffsetDateTime) -> SampleDelivery {
        let provider = self.provider();
        let secret = match self.variant {
            Variant::WrongSecret => wrong_secret(provider),
            _ => signing_secret(provider),
        };
        self.variant_signed(url, at, secret)
            .expect("the sample secrets are valid for their schemes")
    }

    /// The delivery signed with `secret` instead of the test secret (given as the provider
    /// shows it, e.g. `whsec_...` for Standard Webhooks): what `hookgate send --secret`
    /// posts to a gateway configured with a secret of its own.
    pub fn delivery_signed_with(
        &self,
        at: OffsetDateTime,
        secret: &str,
    ) -> Result<SampleDelivery, hookgate::secret::SecretError> {
        self.variant_signed(&sample_url(self.provider()), at, secret)
    }

    /// The sample, spoiled as its variant says, sent to `url` and signed with `secret`.
    fn variant_signed(
        &self,
        url: &str,
        at: OffsetDateTime,
        secret: &str,
    ) -> Result<SampleDelivery, hookgate::secret::SecretError> {
        let signed_at = match self.variant {
            Variant::StaleTimestamp => at - time::Duration::seconds(STALE_BY_SECS),
            _ => at,
        };
        let body = self.payload.body_at(signed_at);
        let mut delivery = self.signed(&body, url, signed_at, secret)?;
        if self.variant == Variant::TamperedBody {
            delivery.body =
                with_first_digit_changed_after(&delivery.body, tampered_from(self.provider()));
        }
        Ok(delivery)
    }

    /// The sample changed as `changes` says, then signed at `at` with `secret`: what
    /// `hookgate send --data FILE --new-id` posts. The delivery's id is in
    /// [`SampleDelivery::headers`] or its body, where the provider carries it.
    pub fn delivery_changed(
        &self,
        at: OffsetDateTime,
        secret: &str,
        changes: Changes<'_>,
    ) -> Result<SampleDelivery, ChangeError> {
        if self.variant.is_rejected() {
            return Err(ChangeError::RejectedSample(self.name()));
        }
        let provider = self.provider();
        let mut body = changes
            .body
            .map_or_else(|| self.payload.body_at(at), str::to_owned);
        let mut headers = self.payload.headers(at);
        if changes.new_id {
            match id_place(provider) {
                IdPlace::Headers(names) => {
                    for name in names {
                        if let Some(value) = headers.get_mut(*name) {
                            *value = fresh_id_like(value);
                        }
                    }
                    if !signs_its_id(provider) {
                        body.push_str(&fresh_trailing_whitespace());
                    }
                }
                IdPlace::BodyHash => body.push_str(&fresh_trailing_whitespace()),
                IdPlace::BodyNumbers(field) => body = with_fresh_numbers(&body, field),
                IdPlace::FormField(field) => {
                    let old = form_urlencoded::parse(body.as_bytes())
                        .find(|(name, _)| name == field)
                        .map(|(_, value)| value.into_owned())
                        .filter(|old| !old.is_empty())
                        .ok_or(ChangeError::NoIdInBody { provider, field })?;
                    body = body.replace(&format!("={old}"), &format!("={}", fresh_id_like(&old)));
                }
                IdPlace::BodyField(field) => {
                    let old = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|json| json.get(field)?.as_str().map(str::to_owned))
                        .filter(|old| !old.is_empty())
                        .ok_or(ChangeError::NoIdInBody { provider, field })?;
                    // The id's string, wherever it stands: the body keeps its own layout,
                    // byte for byte, but for the id; so does a header that repeats it
                    // (SNS's `x-amz-sns-message-id`).
                    let fresh = fresh_id_like(&old);
                    body = body.replace(&format!("\"{old}\""), &format!("\"{fresh}\""));
                    for value in headers.values_mut().filter(|value| **value == old) {
                        value.clone_from(&fresh);
                    }
                }
            }
        }
        let url = changes
            .url
            .map_or_else(|| sample_url(provider), str::to_owned);
        Ok(self.signed_with_headers(&body, headers, &url, at, secret)?)
    }

    /// The sample's headers with `body` instead of its own, signed at `at` with the test
    /// secret: a delivery of any size the provider's scheme accepts, for benchmarks.
    pub fn delivery_with_body(&self, at: OffsetDateTime, body: &str) -> SampleDelivery {
        self.signed(
            body,
            &sample_url(self.provider()),
            at,
            signing_secret(self.provider()),
        )
        .expect("the sample secrets are valid for their schemes")
    }

    /// The sample's headers and `body`, sent to `url`, signed at `signed_at` with `secret`.
    fn signed(
        &self,
        body: &str,
        url: &str,
        signed_at: OffsetDateTime,
        secret: &str,
    ) -> Result<SampleDelivery, hookgate::secret::SecretError> {
        self.signed_with_headers(
            body,
            self.payload.headers(signed_at),
            url,
            signed_at,
            secret,
        )
    }

    /// `body` with `headers` (the sample's, perhaps changed), sent to `url`, signed at
    /// `signed_at` with `secret`.
    fn signed_with_headers(
        &self,
        body: &str,
        mut headers: BTreeMap<String, String>,
        url: &str,
        signed_at: OffsetDateTime,
        secret: &str,
    ) -> Result<SampleDelivery, hookgate::secret::SecretError> {
        let provider = self.provider();
        let scheme = sample_scheme(provider);
        let key = SigningKey::parse(secret, scheme.signing_key_encoding())?;
        // A payload may carry the secret itself (Microsoft Graph's `clientState`): it then
        // carries the one it is signed with.
        let body = &body.replace(signing_secret(provider), secret);
        let id = delivery_id_header(provider)
            .and_then(|name| headers.get(name))
            .cloned()
            .unwrap_or_default();
        let outgoing = OutgoingDelivery {
            body: body.as_bytes(),
            signed_at,
            id: &id,
            url,
        };
        // A scheme whose signature travels in the body (SNS) gives the body to send.
        let body = match scheme.sign_body(&outgoing, &key) {
            Some(signed) => String::from_utf8(signed).expect("a text body stays text once signed"),
            None => body.to_owned(),
        };
        headers.extend(scheme.sign(
            &OutgoingDelivery {
                body: body.as_bytes(),
                ..outgoing
            },
            &key,
        ));
        Ok(SampleDelivery {
            headers,
            body,
            url: url.to_owned(),
        })
    }

    /// The sample's own body, as its payload file has it (with any `{signed_at…}`
    /// placeholders).
    pub fn body(&self) -> &'static str {
        self.payload.body()
    }

    /// The complete API Gateway HTTP API (payload format 2.0) event for the delivery
    /// arriving at `at` (to the second), as `lambda_http` reads it and as `sam local invoke`
    /// and `cargo lambda invoke` pass it on. Everything API Gateway would make up (request
    /// id, trace id) is derived from the event and `at`, so the same inputs give the same
    /// event.
    pub fn api_gateway_event(&self, at: OffsetDateTime) -> serde_json::Value {
        serde_json::to_value(self.http_api_event(at)).expect("an event always serializes")
    }

    /// The event as its file holds it: pretty JSON in a fixed field order, with a final
    /// newline.
    pub fn file_contents(&self, at: OffsetDateTime) -> String {
        let mut json = serde_json::to_string_pretty(&self.http_api_event(at))
            .expect("an event always serializes");
        json.push('\n');
        json
    }

    fn http_api_event(&self, at: OffsetDateTime) -> HttpApiEvent {
        let at = at
            .to_offset(UtcOffset::UTC)
            .replace_nanosecond(0)
            .unwrap_or(at);
        let provider = self.provider();
        let route_key = format!("ANY /webhooks/{provider}");
        let path = format!("/webhooks/{provider}");
        let SampleDelivery {
            mut headers, body, ..
        } = self.delivery(at);
        let seed: [u8; 32] =
            Sha256::digest(format!("{}@{}", self.relative_path(), at.unix_timestamp())).into();
        let source_ip = source_ip(provider).to_owned();
        let user_agent = headers.get("user-agent").cloned().unwrap_or_default();
        headers.extend([
            ("content-length".to_owned(), body.len().to_string()),
            ("host".to_owned(), DOMAIN_NAME.to_owned()),
            (
                "x-amzn-trace-id".to_owned(),
                format!(
                    "Root=1-{:08x}-{}",
                    at.unix_timestamp(),
                    hex::encode(&seed[..12])
                ),
            ),
            ("x-forwarded-for".to_owned(), source_ip.clone()),
            ("x-forwarded-port".to_owned(), "443".to_owned()),
            ("x-forwarded-proto".to_owned(), "https".to_owned()),
        ]);
        HttpApiEvent {
            version: "2.0",
            route_key: route_key.clone(),
            raw_path: path.clone(),
            raw_query_string: "",
            headers,
            request_context: RequestContext {
                account_id: "123456789012",
                api_id: API_ID,
                domain_name: DOMAIN_NAME,
                domain_prefix: API_ID,
                http: HttpDescription {
                    method: "POST",
                    path,
                    protocol: "HTTP/1.1",
                    source_ip,
                    user_agent,
                },
                // API Gateway's request ids are 16 characters of base64.
                request_id: base64::engine::general_purpose::STANDARD.encode(&seed[12..23]),
                route_key,
                stage: "$default",
                time: api_gateway_time(at),
                time_epoch: at.unix_timestamp() * 1000,
            },
            body,
            is_base64_encoded: false,
        }
    }
}

/// The provider's sample event `name`, arriving at `at`, as an API Gateway event.
pub fn api_gateway_event(
    provider: Provider,
    name: &str,
    at: OffsetDateTime,
) -> Result<serde_json::Value, UnknownSample> {
    Ok(SampleEvent::find(provider, name)?.api_gateway_event(at))
}

/// When an API Gateway event arrived (`requestContext.timeEpoch`): for a sample event, the
/// `at` it was made for, and the time to verify it at.
pub fn event_time(event: &serde_json::Value) -> Option<OffsetDateTime> {
    let millis = event.pointer("/requestContext/timeEpoch")?.as_i64()?;
    OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000)).ok()
}

/// The URL the provider's samples are sent to: its route on the samples' API.
fn sample_url(provider: Provider) -> String {
    format!("https://{DOMAIN_NAME}/webhooks/{provider}")
}

const API_ID: &str = "a1b2c3d4e5";
const DOMAIN_NAME: &str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";

/// Where the provider's deliveries come from.
fn source_ip(provider: Provider) -> &'static str {
    sample_provider(provider).source_ip
}

/// `02/Jun/2025:09:30:00 +0000`, API Gateway's `requestContext.time`.
fn api_gateway_time(at: OffsetDateTime) -> String {
    let month = at.month().to_string();
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        at.day(),
        &month[..3],
        at.year(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// The body with its first ASCII digit changed to another digit: one byte, and still JSON.
#[cfg(test)]
fn with_first_digit_changed(body: &str) -> String {
    with_first_digit_changed_after(body, "")
}

/// Where a tampered sample's changed digit is looked for: from the body's start, but for a
/// provider whose body carries its signature and ids beside the event, from the field that
/// holds the event (SNS's `Message`), so that the sample is a changed event refused.
fn tampered_from(provider: Provider) -> &'static str {
    match provider {
        Provider::Sns => "\"Message\"",
        _ => "",
    }
}

/// [`with_first_digit_changed`], the digit looked for from where `marker` first is.
fn with_first_digit_changed_after(body: &str, marker: &str) -> String {
    let from = body.find(marker).unwrap_or(0);
    let Some(at) = body[from..]
        .find(|c: char| c.is_ascii_digit())
        .map(|at| from + at)
    else {
        return body.to_owned();
    };
    let next = match body.as_bytes()[at] {
        b'9' => '0',
        digit => char::from(digit + 1),
    };
    format!("{}{next}{}", &body[..at], &body[at + 1..])
}

/// API Gateway HTTP API payload format 2.0, in the order AWS documents its fields.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpApiEvent {
    version: &'static str,
    route_key: String,
    raw_path: String,
    raw_query_string: &'static str,
    headers: BTreeMap<String, String>,
    request_context: RequestContext,
    body: String,
    is_base64_encoded: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext {
    account_id: &'static str,
    api_id: &'static str,
    domain_name: &'static str,
    domain_prefix: &'static str,
    http: HttpDescription,
    request_id: String,
    route_key: String,
    stage: &'static str,
    time: String,
    time_epoch: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpDescription {
    method: &'static str,
    path: String,
    protocol: &'static str,
    source_ip: String,
    user_agent: String,
}

// ---------------------------------------------------------------------------
// SQS events for the processor

/// The folder of `events/` that holds the processor's SQS events.
pub const PROCESSOR_FOLDER: &str = "processor";

/// The queue the records come from: the envelope queue of a stack named `hookgate` (the
/// stack name in `samconfig.toml`), in the account and region of the API Gateway samples.
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:hookgate-envelopes";
const REGION: &str = "us-east-1";

/// The body of `unreadable-envelope.json`: what a message sent to the queue by hand looks
/// like. The processor must dead-letter it with its reason, not retry it.
pub const UNREADABLE_BODY: &str =
    "{\"note\":\"sent to the queue by hand: this is not a hookgate envelope\"}";

/// How long after API Gateway handed a delivery to its receiver the message was in the
/// queue, and how long after that Lambda first received it. Plausible figures, kept under
/// a second so that a record's `SentTimestamp` still tells the second its event was made
/// for.
const QUEUED_AFTER_MS: i64 = 42;
const RECEIVED_AFTER_MS: i64 = 180;
/// Messages of one batch were queued this far apart.
const BATCH_SPACING_MS: i64 = 13;

/// Any time serves to tell which samples a receiver queues: whether it queues one does not
/// depend on when it arrives, as long as it is verified at the time it was signed.
const REFERENCE_TIME: i64 = 1_748_856_600;

impl SampleEvent {
    /// The message a receiver configured as [`receiver_environment`] says queues for this
    /// event arriving at `at` (to the second): the event's file as `lambda_http` reads it,
    /// verified by the provider's scheme, wrapped by [`QueueMessage::from_verified`], as the
    /// receiver does. `None` when the receiver queues nothing: a rejected event, or a
    /// handshake it answers itself.
    pub fn queue_message(&self, at: OffsetDateTime) -> Option<QueueMessage> {
        self.verified_webhook(at)
            .map(|webhook| QueueMessage::from_verified(&webhook))
    }

    /// What the receiver answers this genuine sample once it is queued, where the provider
    /// expects an answer of its own (Discord's deferred response, Linear's `OK`, Twilio's
    /// TwiML); `None` for hookgate's own 202, or a sample that is not queued.
    pub fn acknowledgement(&self, at: OffsetDateTime) -> Option<hookgate::verify::Handshake> {
        self.verified_webhook(at)?.acknowledgement().cloned()
    }

    /// The sample arriving at `at`, verified as its receiver verifies it, if it queues it.
    fn verified_webhook(&self, at: OffsetDateTime) -> Option<hookgate::verify::VerifiedWebhook> {
        let at = whole_second(at);
        let request = lambda_http::request::from_str(&self.file_contents(at))
            .expect("a sample event is an API Gateway event");
        let mut request = hookgate::lambda::inbound_request(request);
        request.received_at = at;
        let provider = self.provider();
        let scheme = sample_scheme(provider);
        let keys = KeyRing::from_secrets(test_secret(provider), None, scheme.key_encoding())
            .expect("the sample secrets are valid for their schemes");
        match verify(
            scheme.as_ref(),
            &request,
            &keys,
            at,
            std::time::Duration::from_secs(300),
        ) {
            Ok(Verified::Webhook(webhook)) => Some(webhook),
            Ok(Verified::Handshake(_)) | Err(_) => None,
        }
    }
}

/// The genuine samples a receiver queues, in [`SampleEvent::all`]'s order.
fn queued_samples() -> Vec<SampleEvent> {
    let reference = OffsetDateTime::from_unix_timestamp(REFERENCE_TIME).expect("a valid time");
    SampleEvent::all()
        .into_iter()
        .filter(|event| event.variant() == Variant::Genuine)
        .filter(|event| event.queue_message(reference).is_some())
        .collect()
}

/// One file of `events/processor/`: an SQS event as the event source mapping hands it to
/// the processor (`Records`, each with the envelope a receiver queued as its body).
#[derive(Debug, Clone, Copy)]
pub struct SqsSampleEvent {
    kind: SqsSampleKind,
}

/// The most records a Lambda SQS event holds here: the template's `BatchSize`.
pub const BATCH_SIZE: usize = 10;

#[derive(Debug, Clone, Copy)]
enum SqsSampleKind {
    /// One record: the message queued for this sample.
    Single(SampleEvent),
    /// One record per queued sample, of the first [`BATCH_SIZE`] providers: as full a batch
    /// as the template's event source mapping hands the processor.
    Batch,
    /// One record whose body is no envelope.
    UnreadableEnvelope,
}

impl SqsSampleEvent {
    /// Every SQS sample event: one per queued sample, then the batch, then the unreadable
    /// one.
    pub fn all() -> Vec<SqsSampleEvent> {
        let mut events: Vec<SqsSampleEvent> = queued_samples()
            .into_iter()
            .map(|sample| SqsSampleEvent {
                kind: SqsSampleKind::Single(sample),
            })
            .collect();
        events.extend(
            [SqsSampleKind::Batch, SqsSampleKind::UnreadableEnvelope]
                .map(|kind| SqsSampleEvent { kind }),
        );
        events
    }

    /// The file name without `.json`: `<provider>-<sample>` for one sample's message,
    /// `batch`, or `unreadable-envelope`.
    pub fn name(&self) -> String {
        match self.kind {
            SqsSampleKind::Single(sample) => format!("{}-{}", sample.provider(), sample.name()),
            SqsSampleKind::Batch => "batch".to_owned(),
            SqsSampleKind::UnreadableEnvelope => "unreadable-envelope".to_owned(),
        }
    }

    /// Where the event lives under `events/`: `processor/<name>.json`.
    pub fn relative_path(&self) -> String {
        format!("{PROCESSOR_FOLDER}/{}.json", self.name())
    }

    /// Whether every record's body is an envelope; the processor dead-letters the others.
    pub fn has_envelopes(&self) -> bool {
        !matches!(self.kind, SqsSampleKind::UnreadableEnvelope)
    }

    /// The Lambda SQS event for messages whose deliveries reached API Gateway at `at` (to
    /// the second). Ids, receipt handles and timestamps are derived from the event and
    /// `at`, so the same inputs give the same event.
    pub fn sqs_event(&self, at: OffsetDateTime) -> serde_json::Value {
        serde_json::to_value(self.event(at)).expect("an event always serializes")
    }

    /// The event as its file holds it: pretty JSON in a fixed field order, with a final
    /// newline.
    pub fn file_contents(&self, at: OffsetDateTime) -> String {
        let mut json =
            serde_json::to_string_pretty(&self.event(at)).expect("an event always serializes");
        json.push('\n');
        json
    }

    fn event(&self, at: OffsetDateTime) -> SqsEvent {
        let at = whole_second(at);
        let records = match self.kind {
            SqsSampleKind::Single(sample) => vec![self.queued_record(sample, at, 0)],
            SqsSampleKind::Batch => queued_samples()
                .into_iter()
                .take(BATCH_SIZE)
                .enumerate()
                .map(|(index, sample)| self.queued_record(sample, at, index))
                .collect(),
            SqsSampleKind::UnreadableEnvelope => vec![self.record(
                UNREADABLE_BODY.to_owned(),
                BTreeMap::new(),
                // An IAM user's id: a person, not a receiver's role, sent it.
                "AIDAHOOKGATEEXAMPLE01".to_owned(),
                at,
                0,
            )],
        };
        SqsEvent { records }
    }

    fn queued_record(&self, sample: SampleEvent, at: OffsetDateTime, index: usize) -> SqsRecord {
        let message = sample
            .queue_message(at)
            .expect("only samples a receiver queues make records");
        let attributes = message
            .attributes()
            .into_iter()
            .map(|(name, value)| (name, SqsAttributeValue::string(value)))
            .collect();
        // A Lambda function's role session is named after the function, which SAM names
        // `<stack>-<logical id>-<suffix>`.
        let sender = format!(
            "AROAHOOKGATEEXAMPLE01:hookgate-{}Receiver-EXAMPLE",
            sample.provider().title()
        );
        self.record(message.body().to_owned(), attributes, sender, at, index)
    }

    fn record(
        &self,
        body: String,
        message_attributes: BTreeMap<&'static str, SqsAttributeValue>,
        sender_id: String,
        at: OffsetDateTime,
        index: usize,
    ) -> SqsRecord {
        let seed: [u8; 32] = Sha256::digest(format!(
            "{}@{}#{index}",
            self.relative_path(),
            at.unix_timestamp()
        ))
        .into();
        let message_id = uuid::Builder::from_random_bytes(
            seed[..16].try_into().expect("16 bytes of a 32-byte digest"),
        )
        .into_uuid()
        .to_string();
        let handle: [u8; 32] = Sha256::digest(seed).into();
        let receipt_handle = format!(
            "AQEB{}",
            base64::engine::general_purpose::STANDARD.encode([seed, handle].concat())
        );
        let index = i64::try_from(index).unwrap_or(i64::MAX);
        let sent = at.unix_timestamp() * 1000 + QUEUED_AFTER_MS + index * BATCH_SPACING_MS;
        let md5_of_message_attributes =
            (!message_attributes.is_empty()).then(|| md5_of_attributes(&message_attributes));
        SqsRecord {
            message_id,
            receipt_handle,
            md5_of_body: hex::encode(md5(body.as_bytes())),
            body,
            attributes: SqsAttributes {
                approximate_receive_count: "1".to_owned(),
                sent_timestamp: sent.to_string(),
                sender_id,
                approximate_first_receive_timestamp: (sent + RECEIVED_AFTER_MS).to_string(),
            },
            md5_of_message_attributes,
            message_attributes,
            event_source: "aws:sqs",
            event_source_arn: QUEUE_ARN,
            aws_region: REGION,
        }
    }
}

/// When an SQS sample event's deliveries reached API Gateway (the second of
/// `Records[0].attributes.SentTimestamp`): the `at` it was made for.
pub fn sqs_event_time(event: &serde_json::Value) -> Option<OffsetDateTime> {
    let sent: i64 = event
        .pointer("/Records/0/attributes/SentTimestamp")?
        .as_str()?
        .parse()
        .ok()?;
    OffsetDateTime::from_unix_timestamp(sent.div_euclid(1000)).ok()
}

/// Any file `hookgate samples` writes under `events/`.
#[derive(Debug, Clone, Copy)]
pub enum SampleFile {
    /// `events/<provider>/<name>.json`, for a receiver.
    ApiGateway(SampleEvent),
    /// `events/processor/<name>.json`, for the processor.
    Sqs(SqsSampleEvent),
}

impl SampleFile {
    /// Every sample file: the receivers' events, then the processor's.
    pub fn all() -> Vec<SampleFile> {
        let api = SampleEvent::all().into_iter().map(SampleFile::ApiGateway);
        let sqs = SqsSampleEvent::all().into_iter().map(SampleFile::Sqs);
        api.chain(sqs).collect()
    }

    /// The folders of `events/` that hold sample files: one per provider, and the
    /// processor's.
    pub fn folders() -> Vec<&'static str> {
        let mut folders: Vec<&'static str> = Provider::ALL.iter().map(|p| p.as_str()).collect();
        folders.push(PROCESSOR_FOLDER);
        folders
    }

    /// Where the file lives under `events/`.
    pub fn relative_path(&self) -> String {
        match self {
            SampleFile::ApiGateway(event) => event.relative_path(),
            SampleFile::Sqs(event) => event.relative_path(),
        }
    }

    /// The file's contents for `at`.
    pub fn file_contents(&self, at: OffsetDateTime) -> String {
        match self {
            SampleFile::ApiGateway(event) => event.file_contents(at),
            SampleFile::Sqs(event) => event.file_contents(at),
        }
    }

    /// The time a file of this kind was made for, read from its JSON.
    pub fn recorded_time(&self, json: &serde_json::Value) -> Option<OffsetDateTime> {
        match self {
            SampleFile::ApiGateway(_) => event_time(json),
            SampleFile::Sqs(_) => sqs_event_time(json),
        }
    }

    /// Where a file of this kind records its time, to name it when it cannot be read.
    pub fn time_field(&self) -> &'static str {
        match self {
            SampleFile::ApiGateway(_) => "an API Gateway event with a requestContext.timeEpoch",
            SampleFile::Sqs(_) => "an SQS event with a Records[0].attributes.SentTimestamp",
        }
    }
}

fn whole_second(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    at.replace_nanosecond(0).unwrap_or(at)
}

/// SQS's `md5OfMessageAttributes`: attributes sorted by name (a `BTreeMap` already is),
/// each as its name, its data type, a transport byte (1 for a string) and its value, every
/// field but the byte preceded by its length as four big-endian bytes.
fn md5_of_attributes(attributes: &BTreeMap<&'static str, SqsAttributeValue>) -> String {
    fn field(bytes: &mut Vec<u8>, value: &[u8]) {
        let length = u32::try_from(value.len()).expect("attribute fields are small");
        bytes.extend(length.to_be_bytes());
        bytes.extend(value);
    }
    let mut bytes = Vec::new();
    for (name, value) in attributes {
        field(&mut bytes, name.as_bytes());
        field(&mut bytes, value.data_type.as_bytes());
        bytes.push(1);
        field(&mut bytes, value.string_value.as_bytes());
    }
    hex::encode(md5(&bytes))
}

/// MD5, for the checksums SQS puts in each record. It checks nothing here, and MD5 is no
/// security measure anywhere; it only makes the records look as SQS makes them.
fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

/// The Lambda SQS event, in the order AWS documents its fields.
#[derive(Debug, Serialize)]
struct SqsEvent {
    #[serde(rename = "Records")]
    records: Vec<SqsRecord>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SqsRecord {
    message_id: String,
    receipt_handle: String,
    body: String,
    attributes: SqsAttributes,
    message_attributes: BTreeMap<&'static str, SqsAttributeValue>,
    md5_of_body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    md5_of_message_attributes: Option<String>,
    event_source: &'static str,
    #[serde(rename = "eventSourceARN")]
    event_source_arn: &'static str,
    aws_region: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SqsAttributes {
    approximate_receive_count: String,
    sent_timestamp: String,
    sender_id: String,
    approximate_first_receive_timestamp: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SqsAttributeValue {
    string_value: String,
    string_list_values: [String; 0],
    binary_list_values: [String; 0],
    data_type: &'static str,
}

impl SqsAttributeValue {
    fn string(value: String) -> Self {
        Self {
            string_value: value,
            string_list_values: [],
            binary_list_values: [],
            data_type: "String",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use hookgate::receiver::{ReceiverConfig, SecretsConfig};
    use hookgate::request::InboundRequest;
    use hookgate::secret::KeyEncoding;
    use hookgate::verify::{verify, AuthFailure, Rejection, Verified};

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_748_856_600).unwrap()
    }

    #[test]
    fn an_envelope_says_whether_its_provider_signs_the_id_of_its_key() {
        let reference = OffsetDateTime::from_unix_timestamp(REFERENCE_TIME).unwrap();
        for event in queued_samples() {
            let message = event.queue_message(reference).unwrap();
            let envelope = hookgate::envelope::Envelope::from_json(message.body()).unwrap();
            // GitHub's and Shopify's ids are headers outside the signature, and so is the
            // generic sample's `X-AgentX-Delivery` (its SIGNED_CONTENT has no `{id}`).
            let unsigned = matches!(
                event.provider(),
                Provider::Github
                    | Provider::Shopify
                    | Provider::Gitlab
                    | Provider::Linear
                    | Provider::Pagerduty
                    | Provider::Jira
                    | Provider::Generic
            );
            assert_eq!(
                envelope.v1().id_signed,
                !unsigned,
                "{}",
                event.relative_path()
            );
        }
    }

    fn inbound(delivery: &SampleDelivery) -> InboundRequest {
        delivery.headers.iter().fold(
            InboundRequest::post(delivery.body.clone()).with_url(&delivery.url),
            |request, (name, value)| request.with_header(name, value),
        )
    }

    /// What a receiver with the provider's test secret makes of `delivery` at `now`.
    fn verified_delivery(
        provider: Provider,
        delivery: &SampleDelivery,
        now: OffsetDateTime,
    ) -> Result<Verified, Rejection> {
        let scheme = sample_scheme(provider);
        let keys = hookgate::secret::KeyRing::from_secrets(
            test_secret(provider),
            None,
            scheme.key_encoding(),
        )
        .unwrap();
        verify(
            scheme.as_ref(),
            &inbound(delivery),
            &keys,
            now,
            Duration::from_secs(300),
        )
    }

    fn verified(event: &SampleEvent, now: OffsetDateTime) -> Result<Verified, Rejection> {
        verified_delivery(event.provider(), &event.delivery(at()), now)
    }

    /// The idempotency key a receiver gives `delivery`, which must verify.
    fn key_of(provider: Provider, delivery: &SampleDelivery) -> String {
        match verified_delivery(provider, delivery, at()) {
            Ok(Verified::Webhook(webhook)) => webhook.idempotency_key().to_string(),
            other => panic!("{provider}: {other:?}"),
        }
    }

    #[test]
    fn a_new_id_gives_every_providers_sample_a_key_of_its_own_and_it_still_verifies() {
        for event in SampleEvent::all()
            .into_iter()
            .filter(|event| !event.variant().is_rejected() && !event.is_handshake())
        {
            let provider = event.provider();
            let secret = signing_secret(provider);
            let recorded = event
                .delivery_changed(at(), secret, Changes::default())
                .unwrap();
            let renewed = || {
                let changes = Changes {
                    new_id: true,
                    ..Changes::default()
                };
                event.delivery_changed(at(), secret, changes).unwrap()
            };
            let (first, second) = (renewed(), renewed());

            let keys = [&recorded, &first, &second].map(|delivery| key_of(provider, delivery));
            if !signs_its_id(provider) {
                // Else the processor would take the second for a replay of the first.
                assert_ne!(first.body, second.body, "{provider}");
                // Only whitespace is added after the body.
                assert_eq!(
                    first.body.trim_end(),
                    recorded.body.trim_end(),
                    "{provider}"
                );
            }
            assert_eq!(
                key_of(provider, &event.delivery(at())),
                keys[0],
                "{provider}"
            );
            assert!(
                keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2],
                "{provider}: {keys:?}"
            );
        }
    }

    #[test]
    fn an_id_is_renewed_in_its_providers_shape() {
        assert!(
            uuid::Uuid::parse_str(&fresh_id_like("4b8e6f0a-2c7d-4e91-b3a5-8f1d2e6c9b07")).is_ok()
        );
        let stripe = fresh_id_like("evt_1RVb4tLkdIwHu7ixwZ9kR2mQ");
        assert!(stripe.starts_with("evt_") && stripe.len() > 10, "{stripe}");
        let slack = fresh_id_like("Ev08MFMKH6");
        assert!(slack.starts_with("Ev") && slack.len() == 12, "{slack}");
        assert_ne!(fresh_id_like("wh_1"), fresh_id_like("wh_1"));
    }

    #[test]
    fn own_data_is_signed_as_given_and_a_new_id_needs_the_providers_id_field() {
        let stripe = SampleEvent::find(Provider::Stripe, "invoice.paid").unwrap();
        let data = r#"{"id": "evt_mine", "type": "customer.created", "data": {}}"#;
        let mine = stripe
            .delivery_changed(
                at(),
                STRIPE_TEST_SECRET,
                Changes {
                    body: Some(data),
                    new_id: false,
                    ..Changes::default()
                },
            )
            .unwrap();
        assert_eq!(mine.body, data);
        assert_eq!(key_of(Provider::Stripe, &mine), "stripe:evt_mine");

        let renewed = stripe
            .delivery_changed(
                at(),
                STRIPE_TEST_SECRET,
                Changes {
                    body: Some(data),
                    new_id: true,
                    ..Changes::default()
                },
            )
            .unwrap();
        assert!(!renewed.body.contains("evt_mine"), "{}", renewed.body);
        assert!(renewed.body.contains(r#""type": "customer.created""#));

        let no_id = stripe.delivery_changed(
            at(),
            STRIPE_TEST_SECRET,
            Changes {
                body: Some(r#"{"type": "x"}"#),
                new_id: true,
                ..Changes::default()
            },
        );
        assert!(
            matches!(no_id, Err(ChangeError::NoIdInBody { field: "id", .. })),
            "{no_id:?}"
        );

        let rejected = SampleEvent::find(Provider::Stripe, "rejected-wrong-secret").unwrap();
        assert!(matches!(
            rejected.delivery_changed(at(), STRIPE_TEST_SECRET, Changes::default()),
            Err(ChangeError::RejectedSample(_))
        ));
    }

    #[test]
    fn every_genuine_sample_verifies_and_every_rejected_one_fails_for_its_reason() {
        for event in SampleEvent::all() {
            let outcome = verified(&event, at());
            let path = event.relative_path();
            match event.variant() {
                Variant::Genuine => assert!(outcome.is_ok(), "{path}: {outcome:?}"),
                Variant::TamperedBody | Variant::WrongSecret => assert!(
                    matches!(
                        outcome,
                        Err(Rejection::Unauthenticated(AuthFailure::SignatureMismatch))
                    ),
                    "{path}: {outcome:?}"
                ),
                Variant::StaleTimestamp => assert!(
                    matches!(
                        outcome,
                        Err(Rejection::Unauthenticated(
                            AuthFailure::TimestampOutsideWindow {
                                skew_secs: STALE_BY_SECS
                            }
                        ))
                    ),
                    "{path}: {outcome:?}"
                ),
            }
        }
    }

    #[test]
    fn a_stale_sample_is_genuine_at_the_time_it_was_signed() {
        for event in SampleEvent::all() {
            if event.variant() == Variant::StaleTimestamp {
                let signed_at = at() - time::Duration::seconds(STALE_BY_SECS);
                assert!(
                    verified(&event, signed_at).is_ok(),
                    "{}",
                    event.relative_path()
                );
            }
        }
    }

    #[test]
    fn a_verified_github_message_carries_its_delivery_id_and_action() {
        let message = verified_github_message("d-42", "closed");

        let envelope =
            hookgate::envelope::Envelope::from_json(message.body()).expect("an envelope");
        assert_eq!(envelope.v1().delivery_id.as_deref(), Some("d-42"));
        assert_eq!(envelope.v1().event_type, "issues.closed");
        assert_ne!(
            verified_github_message("d-43", "closed").body(),
            message.body(),
            "each delivery id gives a body of its own"
        );
    }

    #[test]
    fn every_provider_has_a_genuine_sample_and_a_rejected_one() {
        let events = SampleEvent::all();
        for provider in Provider::ALL {
            let of = |rejected: bool| {
                events.iter().any(|event| {
                    event.provider() == provider && event.variant().is_rejected() == rejected
                })
            };
            assert!(of(false) && of(true), "{provider}");
        }
    }

    #[test]
    fn sample_names_are_unique_per_provider_and_found_by_name() {
        let events = SampleEvent::all();
        for event in &events {
            let found = SampleEvent::find(event.provider(), event.name()).unwrap();
            assert_eq!(found.relative_path(), event.relative_path());
            assert_eq!(found.variant(), event.variant());
        }
        let mut paths: Vec<String> = events.iter().map(SampleEvent::relative_path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), events.len());
    }

    #[test]
    fn md5_gives_the_digests_of_the_rfc_1321_test_suite() {
        let suite: [(&str, &str); 7] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            (
                "abcdefghijklmnopqrstuvwxyz",
                "c3fcd3d76192e4007dfb496cca67e13b",
            ),
            (
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
                "d174ab98d277d9f5a5611c2c9f419d9f",
            ),
            (
                "12345678901234567890123456789012345678901234567890123456789012345678901234567890",
                "57edf4a22be3c955ac49da2e2107b67a",
            ),
        ];
        for (input, digest) in suite {
            assert_eq!(hex::encode(md5(input.as_bytes())), digest, "{input:?}");
        }
    }

    #[test]
    fn the_message_attributes_checksum_is_the_one_sqs_computes() {
        // The digest SQS (here moto's implementation of it) gives these three attributes.
        let attributes: BTreeMap<&'static str, SqsAttributeValue> = [
            ("provider", "github"),
            ("event_type", "pull_request.opened"),
            ("envelope_version", "1"),
        ]
        .into_iter()
        .map(|(name, value)| (name, SqsAttributeValue::string(value.to_owned())))
        .collect();
        assert_eq!(
            md5_of_attributes(&attributes),
            "ec6c32bfbc504c9f003ef32cb13e3718"
        );
    }

    #[test]
    fn the_handshakes_are_the_samples_a_receiver_answers_itself() {
        let handshakes: Vec<String> = SampleEvent::all()
            .iter()
            .filter(|event| event.is_handshake())
            .map(SampleEvent::relative_path)
            .collect();
        assert_eq!(
            handshakes,
            [
                "slack/url_verification.json",
                "discord/ping.json",
                "sns/subscription_confirmation.json"
            ]
        );
        for event in SampleEvent::all()
            .into_iter()
            .filter(|event| event.is_handshake())
        {
            let outcome = verified(&event, at());
            assert!(
                matches!(outcome, Ok(Verified::Handshake(_))),
                "{}: {outcome:?}",
                event.relative_path()
            );
        }
    }

    #[test]
    fn every_genuine_webhook_sample_but_the_handshake_has_an_sqs_event() {
        let names: Vec<String> = SqsSampleEvent::all().iter().map(|e| e.name()).collect();
        let mut expected: Vec<String> = SampleEvent::all()
            .into_iter()
            .filter(|event| event.variant() == Variant::Genuine && !event.is_handshake())
            .map(|event| format!("{}-{}", event.provider(), event.name()))
            .collect();
        assert!(expected.contains(&"github-pull_request.opened".to_owned()));
        assert!(!expected.contains(&"slack-url_verification".to_owned()));
        expected.extend(["batch".to_owned(), "unreadable-envelope".to_owned()]);
        assert_eq!(names, expected);
    }

    #[test]
    fn an_sqs_record_carries_the_envelope_the_receiver_queues_and_its_checksums() {
        let github = SampleEvent::find(Provider::Github, "pull_request.opened").unwrap();
        let message = github.queue_message(at()).unwrap();
        let event = SqsSampleEvent {
            kind: SqsSampleKind::Single(github),
        }
        .sqs_event(at());
        let record = &event["Records"][0];
        assert_eq!(record["body"], message.body());
        let envelope = hookgate::envelope::Envelope::from_json(message.body()).unwrap();
        let envelope = envelope.v1();
        assert_eq!(envelope.received_at, at());
        assert_eq!(envelope.source_ip, Some("192.30.252.44".parse().unwrap()));
        assert_eq!(
            record["md5OfBody"],
            hex::encode(md5(message.body().as_bytes()))
        );
        assert_eq!(
            record["messageAttributes"]["provider"]["stringValue"],
            "github"
        );
        assert_eq!(
            record["messageAttributes"]["event_type"]["stringValue"],
            "pull_request.opened"
        );
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(sqs_event_time(&event), Some(at()));
    }

    #[test]
    fn the_batch_is_full_with_one_record_per_queued_sample_and_distinct_ids() {
        let batch = SqsSampleEvent {
            kind: SqsSampleKind::Batch,
        }
        .sqs_event(at());
        let records = batch["Records"].as_array().unwrap();
        assert_eq!(records.len(), queued_samples().len().min(BATCH_SIZE));
        let ids: std::collections::BTreeSet<&str> = records
            .iter()
            .map(|record| record["messageId"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), records.len());
        assert_eq!(sqs_event_time(&batch), Some(at()));
    }

    #[test]
    fn sqs_events_are_the_same_for_the_same_time_and_differ_for_another() {
        for event in SqsSampleEvent::all() {
            assert_eq!(event.file_contents(at()), event.file_contents(at()));
            assert_ne!(
                event.file_contents(at()),
                event.file_contents(at() + time::Duration::seconds(1)),
                "{}",
                event.relative_path()
            );
        }
    }

    #[test]
    fn an_unknown_sample_name_is_refused_listing_the_known_ones() {
        let error = api_gateway_event(Provider::Slack, "reaction_added", at()).unwrap_err();
        assert!(
            error.to_string().contains("app_mention, url_verification"),
            "{error}"
        );
    }

    #[test]
    fn the_event_is_an_http_api_request_that_lambda_http_reads() {
        let event = SampleEvent::find(Provider::Github, "pull_request.opened").unwrap();
        let json = event.file_contents(at());
        let request = lambda_http::request::from_str(&json).unwrap();
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri().path(), "/webhooks/github");
        assert_eq!(request.headers()["x-github-event"], "pull_request");
        let inbound = hookgate::lambda::inbound_request(request);
        assert_eq!(inbound.body, event.delivery(at()).body.as_bytes());
        assert_eq!(inbound.source_ip, Some("192.30.252.44".parse().unwrap()));
    }

    #[test]
    fn the_event_carries_the_time_it_was_made_for() {
        let event = SampleEvent::find(Provider::Stripe, "invoice.paid").unwrap();
        let value = event.api_gateway_event(at() + time::Duration::milliseconds(250));
        assert_eq!(event_time(&value), Some(at()));
        assert_eq!(
            value["requestContext"]["time"],
            "02/Jun/2025:09:30:00 +0000"
        );
        assert_eq!(value["requestContext"]["timeEpoch"], 1_748_856_600_000_i64);
    }

    #[test]
    fn the_same_inputs_make_the_same_file() {
        for event in SampleEvent::all() {
            let contents = event.file_contents(at());
            assert_eq!(contents, event.file_contents(at()));
            assert!(contents.ends_with("}\n"));
            let value: serde_json::Value = serde_json::from_str(&contents).unwrap();
            assert_eq!(value, event.api_gateway_event(at()));
        }
    }

    #[test]
    fn the_sns_samples_carry_their_signature_in_the_body_and_the_tampered_one_a_changed_message() {
        let genuine = SampleEvent::find(Provider::Sns, "notification").unwrap();
        let delivery = genuine.delivery(at());
        // Signed as the payload file already is (RSA PKCS#1 v1.5 is deterministic).
        assert_eq!(delivery.body, genuine.body());
        assert!(!delivery
            .headers
            .keys()
            .any(|name| name.contains("signature")));
        assert_eq!(delivery.headers["x-amz-sns-message-type"], "Notification");

        let tampered = SampleEvent::find(Provider::Sns, "rejected-tampered-body").unwrap();
        let field = |body: &str, name: &str| {
            serde_json::from_str::<serde_json::Value>(body).unwrap()[name].clone()
        };
        let tampered = tampered.delivery(at()).body;
        assert_ne!(
            field(&tampered, "Message"),
            field(&delivery.body, "Message")
        );
        for unchanged in ["MessageId", "Signature", "Timestamp", "Subject"] {
            assert_eq!(
                field(&tampered, unchanged),
                field(&delivery.body, unchanged)
            );
        }

        let wrong = SampleEvent::find(Provider::Sns, "rejected-wrong-secret").unwrap();
        let wrong = wrong.delivery(at()).body;
        assert_ne!(
            field(&wrong, "Signature"),
            field(&delivery.body, "Signature")
        );
        assert_eq!(field(&wrong, "SigningCertURL"), SNS_TEST_CERTIFICATE_URL);
    }

    #[test]
    fn the_sns_test_certificate_is_trusted_by_the_samples_scheme_alone() {
        let notification = SampleEvent::find(Provider::Sns, "notification").unwrap();
        assert!(verified(&notification, at()).is_ok());
        // The scheme the provider table builds, as a Lambda receiver's, fetches SNS's own
        // certificates: it has not the samples' one, and refuses their signature.
        let env: HashMap<String, String> = receiver_environment(Provider::Sns)
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let deployed = scheme_for(Provider::Sns, &env).unwrap();
        let keys =
            KeyRing::from_secrets(SNS_TEST_TOPIC_ARN, None, deployed.key_encoding()).unwrap();
        let refused = verify(
            deployed.as_ref(),
            &inbound(&notification.delivery(at())),
            &keys,
            at(),
            Duration::from_secs(300),
        );
        assert_eq!(
            refused.unwrap_err(),
            Rejection::Unauthenticated(AuthFailure::SignatureMismatch)
        );
    }

    #[test]
    fn a_tampered_body_differs_from_the_genuine_one_in_exactly_one_byte() {
        let genuine = SampleEvent::find(Provider::Stripe, "invoice.paid").unwrap();
        let tampered = SampleEvent::find(Provider::Stripe, "rejected-tampered-body").unwrap();
        let (genuine, tampered) = (genuine.delivery(at()).body, tampered.delivery(at()).body);
        assert_eq!(genuine.len(), tampered.len());
        let differing = genuine
            .bytes()
            .zip(tampered.bytes())
            .filter(|(a, b)| a != b);
        assert_eq!(differing.count(), 1);
        assert_eq!(with_first_digit_changed("{\"n\":19}"), "{\"n\":29}");
        assert_eq!(with_first_digit_changed("{\"n\":9}"), "{\"n\":0}");
    }

    #[test]
    fn payload_bodies_are_json_and_keep_their_exact_bytes() {
        for payload in PAYLOADS {
            let body = &payload.body_at(at());
            assert!(
                payload.extension != ".json"
                    || serde_json::from_str::<serde_json::Value>(body).is_ok(),
                "{}",
                payload.name
            );
            assert!(!body.ends_with('\n'), "{}", payload.name);
            assert!(body.bytes().any(|b| b.is_ascii_digit()), "{}", payload.name);
        }
    }

    #[test]
    fn signed_at_placeholders_are_filled_in() {
        let event = SampleEvent::find(Provider::Shopify, "orders-create").unwrap();
        let headers = event.delivery(at()).headers;
        assert_eq!(headers["x-shopify-triggered-at"], "2025-06-02T09:30:00Z");
        assert!(headers
            .keys()
            .all(|name| name == &name.to_ascii_lowercase()));
    }

    #[test]
    fn the_receiver_environment_is_a_valid_configuration_with_the_test_secret() {
        for provider in Provider::ALL {
            let mut env: HashMap<String, String> = receiver_environment(provider)
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            env.insert(
                "QUEUE_URL".into(),
                "http://127.0.0.1:5000/123456789012/q".into(),
            );
            let scheme = scheme_for(provider, &env).unwrap();
            let config = ReceiverConfig::from_env(&env, scheme.key_encoding()).unwrap();
            assert!(
                matches!(config.secrets, SecretsConfig::Environment(_)),
                "{provider}"
            );
        }
    }

    #[test]
    fn the_standard_test_secret_decodes_to_a_readable_key() {
        let key = SigningKey::parse(STANDARD_TEST_SECRET, KeyEncoding::StandardWebhooks).unwrap();
        assert_eq!(key.as_bytes(), b"hookgate-test-standard-secret");
        let wrong = SigningKey::parse(
            wrong_secret(Provider::Standard),
            KeyEncoding::StandardWebhooks,
        )
        .unwrap();
        assert_eq!(wrong.as_bytes(), b"hookgate-test-wrong-secret");
    }
}

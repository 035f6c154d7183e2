//! What a receiver does to each delivery, per provider and body size (1 KB, 16 KB, 1 MB),
//! measured by criterion, which prints the figures:
//!
//! - `verify`: the signature checked and what routing needs read (the event type, the
//!   stable id, the body's SHA-256), as `hookgate::verify::verify` does it;
//! - `envelope`: the verified delivery made into the queue message's JSON;
//! - `parse`: that JSON read back, as the processor reads it.
//!
//! Run with `cargo bench -p hookgate-tests --bench receiver_path` (append a filter such as
//! `-- verify/github` for one group). The deliveries are the samples of `events/`, with
//! their JSON body padded to each size and signed again with the test secret.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hookgate::envelope::{Envelope, QueueMessage};
use hookgate::provider::Provider;
use hookgate::request::InboundRequest;
use hookgate::secret::KeyRing;
use hookgate::verify::{verify, SignatureScheme, Verified, VerifiedWebhook};
use hookgate_samples::{sample_scheme, test_secret, SampleEvent};
use time::OffsetDateTime;

const SIZES: [(usize, &str); 3] = [(1_024, "1KB"), (16_384, "16KB"), (1_048_576, "1MB")];

const TOLERANCE: Duration = Duration::from_secs(300);

/// A provider's delivery of `size` bytes, signed, with everything verification needs.
struct Case {
    scheme: Box<dyn SignatureScheme>,
    keys: KeyRing,
    request: InboundRequest,
    now: OffsetDateTime,
}

impl Case {
    fn new(provider: Provider, size: usize) -> Self {
        let sample = SampleEvent::all()
            .into_iter()
            .find(|event| event.provider() == provider && !event.variant().is_rejected())
            .expect("every provider has a genuine sample");
        let now = OffsetDateTime::now_utc();
        let body = padded(sample.body(), size);
        let delivery = sample.delivery_with_body(now, &body);
        let mut request = InboundRequest::post(delivery.body);
        request.received_at = now;
        for (name, value) in &delivery.headers {
            request = request.with_header(name, value);
        }
        let scheme = sample_scheme(provider);
        let keys = KeyRing::from_secrets(test_secret(provider), None, scheme.key_encoding())
            .expect("the test secret is a valid key");
        Self {
            scheme,
            keys,
            request,
            now,
        }
    }

    fn verify(&self) -> VerifiedWebhook {
        match verify(
            self.scheme.as_ref(),
            &self.request,
            &self.keys,
            self.now,
            TOLERANCE,
        ) {
            Ok(Verified::Webhook(webhook)) => webhook,
            other => panic!("the padded sample verifies as a webhook: {other:?}"),
        }
    }
}

/// The sample's JSON object with a `padding` member first, so that the body is `size` bytes
/// and every field the scheme reads is still there.
fn padded(body: &str, size: usize) -> String {
    let rest = body
        .trim_start()
        .strip_prefix('{')
        .expect("the samples' bodies are JSON objects");
    let frame = "{\"padding\":\"\",".len() + rest.len();
    let fill = size.saturating_sub(frame);
    format!("{{\"padding\":\"{}\",{rest}", "a".repeat(fill))
}

fn receiver_path(c: &mut Criterion) {
    for provider in Provider::ALL {
        for (size, label) in SIZES {
            let case = Case::new(provider, size);
            let webhook = case.verify();
            let message = QueueMessage::from_verified(&webhook);
            let id = BenchmarkId::new(provider.as_str(), label);

            let mut group = c.benchmark_group("verify");
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(id.clone(), &case, |b, case| {
                b.iter(|| black_box(case.verify()))
            });
            group.finish();

            let mut group = c.benchmark_group("envelope");
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(id.clone(), &webhook, |b, webhook| {
                b.iter(|| black_box(QueueMessage::from_verified(webhook)))
            });
            group.finish();

            let mut group = c.benchmark_group("parse");
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(id, message.body(), |b, body| {
                b.iter(|| black_box(Envelope::from_json(body).expect("an envelope")))
            });
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Enough samples for a steady figure without minutes per size: 1 MB cases are slow.
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = receiver_path
}
criterion_main!(benches);

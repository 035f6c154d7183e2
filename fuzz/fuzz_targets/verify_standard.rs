//! The standard scheme: its signature header parser, its verifier, and sign-then-verify.
#![no_main]

use hookgate::verify::standard::StandardWebhooks;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    Target {
        scheme: &StandardWebhooks,
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        signature_header: "webhook-signature",
        timestamp_header: Some("webhook-timestamp"),
    }
    .run(case);
});

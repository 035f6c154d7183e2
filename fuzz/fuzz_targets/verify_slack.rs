//! The slack scheme: its signature header parser, its verifier, and sign-then-verify.
#![no_main]

use hookgate::verify::slack::Slack;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    Target {
        scheme: &Slack,
        secret: "fuzz-secret",
        signature_header: "x-slack-signature",
        timestamp_header: Some("x-slack-request-timestamp"),
    }
    .run(case);
});

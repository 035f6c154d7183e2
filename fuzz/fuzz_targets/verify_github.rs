//! The github scheme: its signature header parser, its verifier, and sign-then-verify.
#![no_main]

use hookgate::verify::github::Github;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    Target {
        scheme: &Github,
        secret: "property-secret",
        signature_header: "x-hub-signature-256",
        timestamp_header: None,
    }
    .run(case);
});

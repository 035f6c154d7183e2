//! The shopify scheme: its signature header parser, its verifier, and sign-then-verify.
#![no_main]

use hookgate::verify::shopify::Shopify;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    Target {
        scheme: &Shopify,
        secret: "fuzz-secret",
        signature_header: "x-shopify-hmac-sha256",
        timestamp_header: None,
    }
    .run(case);
});

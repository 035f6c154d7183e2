//! The stripe scheme: its signature header parser, its verifier, and sign-then-verify.
#![no_main]

use hookgate::verify::stripe::Stripe;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    Target {
        scheme: &Stripe,
        secret: "whsec_fuzz",
        signature_header: "stripe-signature",
        timestamp_header: None,
    }
    .run(case);
});

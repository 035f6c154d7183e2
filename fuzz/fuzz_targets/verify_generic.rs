//! The generic scheme, in each style its settings allow: its signature header parser (a
//! list of signatures, a prefix, hex or base64), its verifier, and sign-then-verify.
#![no_main]

use std::collections::HashMap;
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use hookgate::verify::generic::Generic;
use hookgate_fuzz::{Case, Target};
use libfuzzer_sys::fuzz_target;

/// The styles: the defaults; base64 with a prefix, a signed timestamp and a signed id; hex
/// with a prefix and an unsigned id.
fn styles() -> &'static [Generic; 3] {
    static STYLES: OnceLock<[Generic; 3]> = OnceLock::new();
    STYLES.get_or_init(|| {
        let style = |settings: &[(&str, &str)]| {
            let env: HashMap<&str, &str> = settings.iter().copied().collect();
            Generic::from_env(&env).expect("valid generic settings")
        };
        [
            style(&[]),
            style(&[
                ("SIGNATURE_ENCODING", "base64"),
                ("SIGNATURE_PREFIX", "v1="),
                ("TIMESTAMP_HEADER", "x-timestamp"),
                ("ID_HEADER", "x-id"),
                ("SIGNED_CONTENT", "{id}:{timestamp}:{body}"),
                ("EVENT_TYPE_HEADER", "x-event"),
            ]),
            style(&[
                ("SIGNATURE_PREFIX", "sha256="),
                ("ID_HEADER", "x-id"),
                ("EVENT_TYPE_FIELD", "event.type"),
            ]),
        ]
    })
}

#[derive(Debug, Arbitrary)]
struct Input {
    style: u8,
    case: Case,
}

fuzz_target!(|input: Input| {
    let styles = styles();
    let style = usize::from(input.style) % styles.len();
    Target {
        scheme: &styles[style],
        secret: "fuzz-secret",
        signature_header: "x-signature",
        timestamp_header: (style == 1).then_some("x-timestamp"),
    }
    .run(input.case);
});

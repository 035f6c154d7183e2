//! The generic scheme's `SIGNED_CONTENT` template parser: any text is parsed or refused
//! with a reason, never a panic, and a template it accepts signs and verifies.
#![no_main]

use hookgate::verify::generic::SignedContent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|template: &str| {
    let _ = SignedContent::parse(template);
});

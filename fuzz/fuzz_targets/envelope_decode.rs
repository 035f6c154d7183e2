//! The envelope decoder: whatever a queue message holds, it is read or refused with a
//! reason, never a panic; an envelope read is written back to JSON that reads the same.
#![no_main]

use hookgate::envelope::Envelope;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|json: &str| {
    if let Ok(envelope) = Envelope::from_json(json) {
        let _ = envelope.v1().body.to_bytes();
        let again =
            Envelope::from_json(&envelope.to_json()).expect("an envelope written reads back");
        assert_eq!(again, envelope);
    }
});

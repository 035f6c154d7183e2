//! Lambda adapters: the events each kind of function receives, turned into calls on the
//! services, and the services' answers turned back into what Lambda expects.
//!
//! Every function runs on tokio's current-thread runtime. Lambda hands an execution
//! environment one event at a time, and below 1,769 MB of memory gives it less than one
//! vCPU: a multi-threaded runtime's workers only hand each wake-up from thread to thread.
//! A batch's concurrent work (the processor's claims and actions) is I/O, which one thread
//! interleaves; background refreshes (secrets, routes) run while the runtime loop waits for
//! the next event. Measured by `scripts/bench` (see the README's Performance section).

#[cfg(feature = "processor")]
pub mod processor;
#[cfg(feature = "receiver")]
pub mod receiver;

#[cfg(feature = "receiver")]
pub use receiver::{handle, inbound_request, into_response, receiver_service};

use std::time::{Duration, SystemTime};

use lambda_runtime::Context;
use tokio::time::Instant;

/// When the invocation must have answered, on the runtime's clock. Lambda gives it in epoch
/// milliseconds; a context without one (`0`, as `Context::default()` in tests) has none.
pub fn deadline(context: &Context) -> Option<Instant> {
    if context.deadline == 0 {
        return None;
    }
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    Some(Instant::now() + left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_lambdas_on_the_runtimes_clock() {
        let mut context = Context::default();
        assert_eq!(deadline(&context), None, "no deadline given, none taken");

        let in_a_minute = SystemTime::now() + Duration::from_secs(60);
        context.deadline = in_a_minute
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = deadline(&context)
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(58) && left <= Duration::from_secs(60),
            "{left:?}"
        );

        context.deadline = 1;
        let passed = deadline(&context).unwrap();
        assert!(passed <= Instant::now(), "a deadline already passed is now");
    }
}

//! Lambda adapters: the events each kind of function receives, turned into calls on the
//! services, and the services' answers turned back into what Lambda expects.

pub mod processor;
pub mod receiver;

pub use receiver::{handle, inbound_request, into_response, receiver_service};

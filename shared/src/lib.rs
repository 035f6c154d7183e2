//! hookgate's library: everything the functions share.
//!
//! The layers, from the inside out:
//!
//! - the domain: [`provider`], [`idempotency`], [`secret`], [`request`], [`verify`] (one
//!   module per provider's signature scheme), [`envelope`] (the versioned SQS message);
//! - ports, small traits for what the domain needs from the world: [`queue::EventQueue`],
//!   [`secret::SecretSource`], [`bodies::BodyStore`], [`claims::IdempotencyStore`],
//!   [`routes_source::RoutesSource`];
//! - the receiver service, [`receiver`], which turns an inbound request into exactly one
//!   answer and maps every refusal to its HTTP status in one place;
//! - adapters: [`aws`] (SQS, Secrets Manager) and [`lambda`] (API Gateway events in, HTTP
//!   answers out), plus [`telemetry`] (JSON logs and CloudWatch EMF metrics).
//!
//! Nothing in the domain or the receiver service names an AWS type.

pub mod aws;
pub mod bodies;
pub mod claims;
pub mod config;
pub mod dead_letters;
pub mod envelope;
pub mod idempotency;
pub mod lambda;
pub mod processor;
pub mod provider;
pub mod queue;
pub mod receiver;
pub mod request;
pub mod routes;
pub mod routes_source;
pub mod secret;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod telemetry;
pub mod verify;

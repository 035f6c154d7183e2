//! hookgate's library: everything the functions share.
//!
//! The layers, from the inside out:
//!
//! - the domain: [`provider`], [`idempotency`], [`secret`], [`request`], [`verify`] (one
//!   module per provider's signature scheme), [`envelope`] (the versioned SQS message);
//! - ports, small traits for what the domain needs from the world: [`queue::EventQueue`],
//!   [`secret::SecretSource`], [`bodies::BodyStore`], [`claims::IdempotencyStore`],
//!   [`routes_source::RoutesSource`], [`archive::EventArchive`];
//! - the receiver service, [`receiver`], which turns an inbound request into exactly one
//!   answer and maps every refusal to its HTTP status in one place;
//! - the processor service, [`processor`], which claims each event and runs its routes'
//!   actions once;
//! - adapters: [`aws`] (SQS, S3, Secrets Manager, DynamoDB, Lambda) and [`lambda`] (API
//!   Gateway events and SQS batches in, answers out), plus [`telemetry`] (log lines that join
//!   Lambda's, EMF metrics, X-Ray subsegments).
//!
//! Nothing in the domain or the services names an AWS type.
//!
//! Features choose the adapters a build links, so that each function carries only what it
//! runs on: `receiver` (API Gateway events), `dynamodb` (the idempotency table), `processor`
//! (the table, SQS events, and actions over HTTP and Lambda) and `sqlite` (`hookgate dev`'s
//! embedded backends). The defaults are `receiver` and `processor`, for the library's own
//! tests; the workspace turns them off, and each crate names its own.

pub mod archive;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bodies;
pub mod claims;
pub mod config;
pub mod dead_letters;
pub mod envelope;
pub mod https;
pub mod idempotency;
#[cfg(feature = "aws")]
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
#[cfg(feature = "aws")]
pub mod tls;
pub mod verify;

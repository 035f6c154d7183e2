//! The integration and end-to-end tests, one module per subject, in one test binary:
//! each binary links the whole AWS SDK, and twenty-five of them took longer to compile and
//! link than to run. Filter by module as by name: `scripts/test -- queue_contract`.
//!
//! `receiver_init` stays a binary of its own: it sets the SDK's variables in the process's
//! environment, which no other test may see.

mod actions_http;
mod archive_contract;
mod body_store_contract;
mod cli_stack;
mod consumer_contract;
mod dead_letter_contract;
mod dev_durability;
mod dev_on_emulator;
mod dev_pipeline;
mod e2e_receivers;
mod events;
mod function_binaries;
mod function_logs;
mod inspect_and_replay;
mod large_bodies;
mod live_routes;
mod mcp_server;
mod official_sdks;
mod processor_scenarios;
mod queue_contract;
mod queue_control_contract;
mod receivers_sqs;
mod reconciler_github;
mod reconciler_state_contract;
mod routes_push;
mod routes_source_contract;
mod s3_checksums;
mod secrets_manager;
mod store_contract;
mod template;

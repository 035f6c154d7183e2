//! The embedded adapters `hookgate dev` runs on: a queue (with visibility timeouts, receive
//! counts and a dead-letter queue) and an idempotency store, each in an SQLite file, durable
//! across `kill -9` and restarts. They keep the same port contracts as the SQS and DynamoDB
//! adapters, checked by the same suites.

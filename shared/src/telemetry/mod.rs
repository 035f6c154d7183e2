//! What the functions tell the world: log lines that join Lambda's own ([`logs`]) and
//! CloudWatch Embedded Metric Format metrics ([`metrics`]).

mod logs;
mod metrics;

pub use logs::{
    init_logging, init_terminal_logging, is_cold_start, json_layer, log_filter, LogFormat,
};
pub use metrics::Metrics;

/// The CloudWatch namespace of every hookgate metric.
pub const NAMESPACE: &str = "hookgate";

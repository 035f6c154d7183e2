//! What the functions tell the world: log lines that join Lambda's own ([`logs`]),
//! CloudWatch Embedded Metric Format metrics, aggregated per invocation ([`metrics`]), and
//! X-Ray subsegments for the calls they make ([`xray`]).

mod logs;
mod metrics;
pub mod xray;

pub use logs::{
    init_logging, init_terminal_logging, is_cold_start, json_layer, log_filter, LogFormat,
};
pub use metrics::{configure, flush_metrics, Aggregate, Metrics};

/// The CloudWatch namespace of every hookgate metric, unless `METRICS_NAMESPACE` names
/// another.
pub const NAMESPACE: &str = "hookgate";

/// Sets up a function's telemetry: its log lines (as Lambda's variables ask) and where its
/// metrics go, both naming it `service`.
pub fn init(service: &'static str) {
    init_logging(service);
    configure(
        service,
        std::env::var("METRICS_NAMESPACE")
            .ok()
            .filter(|namespace| !namespace.is_empty()),
    );
}

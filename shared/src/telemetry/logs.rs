//! Log lines that join Lambda's own.
//!
//! A function logs with [Lambda's advanced logging controls]: `AWS_LAMBDA_LOG_FORMAT`
//! (`JSON`, which the template sets, or `Text`) chooses the format, and `AWS_LAMBDA_LOG_LEVEL`
//! (the template's `LoggingConfig.ApplicationLogLevel`) the level, falling back to `RUST_LOG`
//! (any `tracing` filter), then `info`. Lines below the level are not written at all, rather
//! than written and dropped by Lambda.
//!
//! A JSON line is one object, with on its top level:
//!
//! | field | what |
//! |---|---|
//! | `timestamp` | RFC 3339, UTC |
//! | `level` | `ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE` |
//! | `message` | what happened |
//! | `requestId`, `xrayTraceId` | the invocation's, from `lambda_runtime`'s span; the trace id when Lambda sends one |
//! | `service` | the function: `receiver-github`, `processor`, … |
//! | `cold_start` | whether this is the execution environment's first invocation (or its init) |
//! | `target` | the module that logged |
//!
//! and every field of the event and of the spans around it: `idempotency_key`, `provider`,
//! `event_type` and `outcome` where they are known, the SQS `message_id` in the processor. The
//! names `requestId` and `xrayTraceId` are those of Lambda's own JSON lines (`platform.start`,
//! `platform.report`), so that a query on them finds both.
//!
//! [Lambda's advanced logging controls]: https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs-advanced.html

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::span::{Attributes, Id};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The name `lambda_runtime` gives the span it opens around each invocation, whose fields
/// are `requestId` and `xrayTraceId`.
pub(crate) const INVOCATION_SPAN: &str = "Lambda runtime invoke";

/// Invocations started in this execution environment.
static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

impl LogFormat {
    /// `AWS_LAMBDA_LOG_FORMAT`'s value: `Text` (any case) for text, anything else, or
    /// nothing, for JSON (what CloudWatch, Logs Insights and the tests read).
    pub fn from_variable(value: Option<&str>) -> Self {
        match value {
            Some(value) if value.eq_ignore_ascii_case("text") => Self::Text,
            _ => Self::Json,
        }
    }
}

/// The filter the variables ask for: `AWS_LAMBDA_LOG_LEVEL` (Lambda's names, `FATAL` being
/// `ERROR`), or `RUST_LOG`, or `info`. A value that cannot be read is ignored for the next.
///
/// `RUST_LOG` takes levels and `target=level` directives (`info,hookgate=debug`), not
/// `tracing-subscriber`'s span and field filters: those need a regex engine, which would add
/// half a megabyte to every function for a syntax nobody sets on a Lambda function.
pub fn log_filter(lambda_level: Option<&str>, rust_log: Option<&str>) -> Targets {
    let lambda_level = lambda_level.and_then(|level| {
        let level = level.trim();
        if level.eq_ignore_ascii_case("fatal") {
            return Some(LevelFilter::ERROR);
        }
        LevelFilter::from_str(level).ok()
    });
    if let Some(level) = lambda_level {
        return Targets::new().with_default(level);
    }
    rust_log
        .and_then(|directives| Targets::from_str(directives).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// Installs the subscriber for the function `service`, as the environment asks. Safe to
/// call twice: the second call changes nothing.
pub fn init_logging(service: &'static str) {
    let variable = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let _ = tracing::subscriber::set_global_default(function_subscriber(service, &|name: &str| {
        variable(name)
    }));
}

/// The subscriber a function logs through, from the variables `variable` reads:
/// `AWS_LAMBDA_LOG_FORMAT`, `AWS_LAMBDA_LOG_LEVEL`, `RUST_LOG`, `AWS_XRAY_DAEMON_ADDRESS`.
///
/// What no layer wants must cost nothing: the SDK and hyper hit debug and trace callsites
/// dozens of times per webhook. So every filter tells its most verbose level (a filter
/// that does not makes the process's maximum TRACE, and every `debug!` past the static
/// level check), and every layer is filtered by callsite (an unfiltered layer, or an empty
/// `Option`, makes `tracing-subscriber` enable every callsite, ask each filter again at
/// every hit, and create every SDK span in the registry). Before both were so, logging
/// took 6% of a receiver's CPU per webhook.
pub fn function_subscriber(
    service: &'static str,
    variable: &dyn Fn(&str) -> Option<String>,
) -> Box<dyn Subscriber + Send + Sync> {
    let filter = log_filter(
        variable("AWS_LAMBDA_LOG_LEVEL").as_deref(),
        variable("RUST_LOG").as_deref(),
    );
    // Spans at INFO pass whatever the level, so that a WARN line still carries the
    // invocation's requestId.
    let lines = filter.or(filter_fn(|metadata: &Metadata<'_>| {
        metadata.is_span() && *metadata.level() <= Level::INFO
    })
    .with_max_level_hint(Level::INFO));
    let invocations = CountInvocations.with_filter(
        filter_fn(|metadata: &Metadata<'_>| {
            metadata.is_span() && metadata.name() == INVOCATION_SPAN
        })
        .with_max_level_hint(Level::INFO),
    );
    let xray = variable("AWS_XRAY_DAEMON_ADDRESS")
        .and_then(|daemon| super::xray::XrayLayer::to_daemon(&daemon));
    let tracing_to_xray = xray.is_some();
    // The Option inside the filter, never outside it: see above.
    // The SDK's operation spans, which X-Ray draws, are at DEBUG.
    let xray = xray.with_filter(
        filter_fn(move |metadata: &Metadata<'_>| {
            tracing_to_xray && super::xray::is_traced(metadata)
        })
        .with_max_level_hint(if tracing_to_xray {
            LevelFilter::DEBUG
        } else {
            LevelFilter::OFF
        }),
    );
    let registry = tracing_subscriber::registry().with(invocations).with(xray);
    match LogFormat::from_variable(variable("AWS_LAMBDA_LOG_FORMAT").as_deref()) {
        LogFormat::Json => Box::new(registry.with(json_layer(service).with_filter(lines))),
        LogFormat::Text => Box::new(
            registry.with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_timer(SystemTime)
                    .with_filter(lines),
            ),
        ),
    }
}

/// The JSON layer: the fields above, on the top level of each line.
pub fn json_layer<S>(service: &'static str) -> json_subscriber::JsonLayer<S>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    let mut layer = json_subscriber::JsonLayer::stdout();
    layer
        .with_timer("timestamp", SystemTime)
        .with_level("level")
        .with_target("target")
        .with_flattened_event()
        .with_top_level_flattened_span_list();
    layer.add_static_field("service", serde_json::Value::from(service));
    layer.add_dynamic_field("cold_start", |_, _| Some(is_cold_start()));
    layer
}

/// Whether the execution environment has not yet started a second invocation: its init,
/// and its first invocation, are the cold start.
pub fn is_cold_start() -> bool {
    INVOCATIONS.load(Ordering::Relaxed) <= 1
}

/// Counts the invocations `lambda_runtime` starts, by the span it opens for each.
struct CountInvocations;

impl<S: Subscriber> Layer<S> for CountInvocations {
    fn on_new_span(&self, attributes: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        if attributes.metadata().name() == INVOCATION_SPAN {
            INVOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Installs a human-readable log subscriber on stderr, for a terminal (`hookgate dev`);
/// `RUST_LOG` filters as for the functions (default `info`). Safe to call twice.
pub fn init_terminal_logging() {
    let rust_log = std::env::var("RUST_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .compact()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .finish()
        .with(log_filter(None, rust_log.as_deref()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use tracing::callsite::{Callsite, Identifier};
    use tracing::subscriber::Interest;

    use super::*;

    /// What the subscriber built from `variables` says, once and for all, of a span at
    /// `level` from `target`: `never` means every later hit of that callsite costs nothing.
    fn interest(variables: &[(&str, &str)], target: &'static str, level: Level) -> Interest {
        let subscriber = function_subscriber("test", &|name: &str| {
            variables
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| value.to_string())
        });
        let fields = tracing::field::FieldSet::new(&[], Identifier(&CALLSITE));
        // Leaked: a callsite's metadata lives as long as the program, as the macros' do.
        let metadata: &'static Metadata<'static> = Box::leak(Box::new(Metadata::new(
            "a span",
            target,
            level,
            None,
            None,
            None,
            fields,
            tracing::metadata::Kind::SPAN,
        )));
        subscriber.register_callsite(metadata)
    }

    struct TestCallsite;
    static CALLSITE: TestCallsite = TestCallsite;
    impl Callsite for TestCallsite {
        fn set_interest(&self, _: Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            unreachable!("the tests hand their metadata to the subscriber themselves")
        }
    }

    #[test]
    fn a_debug_span_of_the_sdk_is_disabled_for_good_at_the_default_level() {
        let sdk = "aws_smithy_runtime::client::orchestrator";
        assert!(interest(&[], sdk, Level::DEBUG).is_never());
        assert!(interest(&[("AWS_LAMBDA_LOG_FORMAT", "Text")], sdk, Level::TRACE).is_never());
        assert!(!interest(&[], "lambda_runtime::layers::trace", Level::INFO).is_never());
        assert!(!interest(
            &[("RUST_LOG", "aws_smithy_runtime=debug")],
            sdk,
            Level::DEBUG
        )
        .is_never());
    }

    /// The most verbose level the subscriber built from `variables` may take: `debug!` and
    /// `trace!` below it end at a static check.
    fn most_verbose(variables: &[(&str, &str)]) -> Option<LevelFilter> {
        function_subscriber("test", &|name: &str| {
            variables
                .iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| value.to_string())
        })
        .max_level_hint()
    }

    #[test]
    fn the_most_verbose_level_is_the_one_asked_for_and_debug_for_x_ray() {
        assert_eq!(most_verbose(&[]), Some(LevelFilter::INFO));
        assert_eq!(
            most_verbose(&[("AWS_LAMBDA_LOG_LEVEL", "WARN")]),
            Some(LevelFilter::INFO),
            "spans at INFO still pass, for the invocation's requestId"
        );
        assert_eq!(
            most_verbose(&[("RUST_LOG", "info,hookgate=trace")]),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(
            most_verbose(&[("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")]),
            Some(LevelFilter::DEBUG)
        );
    }

    #[test]
    fn with_x_ray_on_a_span_it_does_not_trace_is_still_disabled_for_good() {
        let xray = [("AWS_XRAY_DAEMON_ADDRESS", "127.0.0.1:2000")];
        assert!(interest(&xray, "hyper_util::client", Level::DEBUG).is_never());
        assert!(!interest(&xray, "lambda_runtime::layers::trace", Level::INFO).is_never());
    }

    #[test]
    fn the_format_is_text_only_when_lambda_says_text() {
        assert_eq!(LogFormat::from_variable(Some("Text")), LogFormat::Text);
        assert_eq!(LogFormat::from_variable(Some("TEXT")), LogFormat::Text);
        assert_eq!(LogFormat::from_variable(Some("JSON")), LogFormat::Json);
        assert_eq!(LogFormat::from_variable(None), LogFormat::Json);
    }

    #[test]
    fn lambdas_level_wins_over_rust_log_and_info_is_the_default() {
        assert_eq!(log_filter(Some("WARN"), Some("debug")).to_string(), "warn");
        assert_eq!(log_filter(Some("fatal"), None).to_string(), "error");
        assert_eq!(log_filter(Some("debug"), None).to_string(), "debug");
        assert_eq!(
            log_filter(Some("loud"), Some("hookgate=debug,info")).to_string(),
            "hookgate=debug,info",
            "an unreadable Lambda level falls back to RUST_LOG"
        );
        assert_eq!(log_filter(None, None).to_string(), "info");
        assert_eq!(log_filter(None, Some("=[")).to_string(), "info");
    }
}

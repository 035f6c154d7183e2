//! X-Ray subsegments for the calls a function makes, when the template's `Tracing` is
//! `Active`: every AWS SDK operation (the SDK opens a span for each, marked `rpc.system =
//! "aws-api"`) and every agent action (the processor opens an `action` span), sent to the
//! X-Ray daemon that Lambda runs beside the function (`AWS_XRAY_DAEMON_ADDRESS`), as children
//! of the function's own segment (the `Parent` of the invocation's trace header).
//!
//! Why no crate: the X-Ray daemon takes one JSON document per UDP datagram, which is all this
//! does. `xray-lite` (0.0.x, unreleased since 2024) would need an interceptor on every SDK
//! call and pins an older SDK runtime; OpenTelemetry would bring its SDK and an OTLP exporter,
//! plus the ADOT collector layer on every function to reach the same daemon, for a cold
//! start many times this crate's. The SDK's own spans give every call for free.
//!
//! Unsampled invocations (`Sampled=0`) send nothing, and without the daemon's address the
//! layer is not installed at all, so the SDK's spans stay off and cost nothing.

use std::net::{SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use super::logs::INVOCATION_SPAN;

/// The name of the span around an agent action, whose `xray_name` field names it.
pub const ACTION_SPAN: &str = "action";

/// What every datagram to the daemon starts with.
const DAEMON_HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// Whether the layer needs to see this span: an invocation, an SDK operation, an action.
pub fn is_traced(metadata: &Metadata<'_>) -> bool {
    metadata.is_span()
        && (metadata.name() == INVOCATION_SPAN
            || metadata.name() == ACTION_SPAN
            || metadata.fields().field("rpc.system").is_some())
}

/// An invocation's trace header, `Root=…;Parent=…;Sampled=1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceHeader {
    pub root: String,
    pub parent: String,
    pub sampled: bool,
}

impl TraceHeader {
    pub fn parse(header: &str) -> Option<Self> {
        let mut root = None;
        let mut parent = None;
        let mut sampled = false;
        for part in header.split(';') {
            match part.trim().split_once('=') {
                Some(("Root", value)) => root = Some(value.to_owned()),
                Some(("Parent", value)) => parent = Some(value.to_owned()),
                Some(("Sampled", value)) => sampled = value == "1",
                _ => {}
            }
        }
        Some(Self {
            root: root?,
            parent: parent?,
            sampled,
        })
    }
}

/// A subsegment open while its span is.
#[derive(Debug)]
struct Open {
    id: String,
    trace: String,
    parent: String,
    start: f64,
    name: String,
    namespace: &'static str,
    operation: Option<String>,
    error: bool,
}

/// Sends a subsegment to the daemon for each traced span when it closes.
#[derive(Debug)]
pub struct XrayLayer {
    socket: UdpSocket,
    daemon: SocketAddr,
}

impl XrayLayer {
    /// A layer sending to `daemon` (`AWS_XRAY_DAEMON_ADDRESS`, `host:port`); `None` when the
    /// address cannot be read or no socket can be opened.
    pub fn to_daemon(daemon: &str) -> Option<Self> {
        let daemon: SocketAddr = daemon.trim().parse().ok()?;
        let local = if daemon.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let socket = UdpSocket::bind(local).ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Self { socket, daemon })
    }

    fn send(&self, document: &Value) {
        let datagram = format!("{DAEMON_HEADER}{document}");
        // Tracing is best effort: a full buffer or a missing daemon loses a subsegment, never
        // delays the work it describes.
        let _ = self.socket.send_to(datagram.as_bytes(), self.daemon);
    }
}

impl<S> Layer<S> for XrayLayer
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let metadata = attributes.metadata();
        if metadata.name() == INVOCATION_SPAN {
            if let Some(header) = fields
                .get("xrayTraceId")
                .and_then(|h| TraceHeader::parse(&h))
            {
                span.extensions_mut().insert(header);
            }
            return;
        }
        // The nearest traced span around this one is its parent: an open subsegment, or the
        // invocation, whose function segment is the trace header's Parent.
        let parent = span.scope().skip(1).find_map(|ancestor| {
            let extensions = ancestor.extensions();
            if let Some(open) = extensions.get::<Open>() {
                return Some((open.trace.clone(), open.id.clone()));
            }
            extensions
                .get::<TraceHeader>()
                .filter(|header| header.sampled)
                .map(|header| (header.root.clone(), header.parent.clone()))
        });
        let Some((trace, parent)) = parent else {
            return;
        };
        let (name, namespace, operation) = if metadata.name() == ACTION_SPAN {
            (fields.get("xray_name").unwrap_or_default(), "remote", None)
        } else {
            (
                fields.get("rpc.service").unwrap_or_default(),
                "aws",
                fields.get("rpc.method"),
            )
        };
        span.extensions_mut().insert(Open {
            id: segment_id(),
            trace,
            parent,
            start: now(),
            name,
            namespace,
            operation,
            error: false,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, context: Context<'_, S>) {
        let Some(span) = context.span(id) else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if fields.get("error").as_deref() == Some("true") {
            if let Some(open) = span.extensions_mut().get_mut::<Open>() {
                open.error = true;
            }
        }
    }

    fn on_close(&self, id: Id, context: Context<'_, S>) {
        let Some(span) = context.span(&id) else {
            return;
        };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let mut document = json!({
            "name": open.name,
            "id": open.id,
            "trace_id": open.trace,
            "parent_id": open.parent,
            "type": "subsegment",
            "start_time": open.start,
            "end_time": now(),
            "namespace": open.namespace,
        });
        if let Some(operation) = open.operation {
            document["aws"] = json!({ "operation": operation });
        }
        if open.error {
            document["error"] = Value::Bool(true);
        }
        self.send(&document);
    }
}

/// The fields of a span, as text.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Fields {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).and_then(Value::as_str).map(str::to_owned)
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0
            .insert(field.name().to_owned(), Value::from(value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // A string recorded as Debug comes quoted.
        let text = format!("{value:?}");
        let text = text
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .map_or(text.clone(), str::to_owned);
        self.0.insert(field.name().to_owned(), Value::from(text));
    }
}

/// A new subsegment id: 16 hex digits.
fn segment_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_owned()
}

/// Seconds since the epoch, as X-Ray counts time.
fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_header_names_its_root_parent_and_sampling() {
        assert_eq!(
            TraceHeader::parse(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
            ),
            Some(TraceHeader {
                root: "1-5759e988-bd862e3fe1be46a994272793".to_owned(),
                parent: "53995c3f42cd8ad8".to_owned(),
                sampled: true,
            })
        );
        assert_eq!(
            TraceHeader::parse(
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0"
            )
            .map(|header| header.sampled),
            Some(false)
        );
        assert_eq!(
            TraceHeader::parse("Root=1-5759e988-bd862e3fe1be46a994272793"),
            None
        );
    }

    /// Runs `calls` under an invocation span with `header`, traced to a local daemon, and
    /// returns the subsegments it received.
    fn traced(header: &str, calls: impl FnOnce()) -> Vec<Value> {
        use tracing_subscriber::layer::SubscriberExt;
        let daemon = UdpSocket::bind("127.0.0.1:0").unwrap();
        daemon
            .set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .unwrap();
        let layer = XrayLayer::to_daemon(&daemon.local_addr().unwrap().to_string()).unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(layer.with_filter(tracing_subscriber::filter::filter_fn(is_traced)));
        tracing::subscriber::with_default(subscriber, || {
            let invocation = tracing::info_span!(
                "Lambda runtime invoke",
                requestId = "r-1",
                xrayTraceId = header
            );
            invocation.in_scope(calls);
        });
        let mut received = Vec::new();
        let mut buffer = [0_u8; 4_096];
        while let Ok(size) = daemon.recv(&mut buffer) {
            let datagram = std::str::from_utf8(&buffer[..size]).unwrap();
            let (_, document) = datagram.split_once('\n').unwrap();
            received.push(serde_json::from_str(document).unwrap());
        }
        received
    }

    fn an_sdk_call_inside_an_action() {
        let action = tracing::debug_span!(
            "action",
            xray_name = "coding-agent",
            error = tracing::field::Empty
        );
        action.in_scope(|| {
            let call = tracing::debug_span!(
                "SecretsManager.GetSecretValue",
                "rpc.service" = "SecretsManager",
                "rpc.method" = "GetSecretValue",
                "rpc.system" = "aws-api",
            );
            call.in_scope(|| {});
        });
        action.record("error", true);
    }

    #[test]
    fn a_sampled_invocations_calls_nest_under_its_segment_and_their_action() {
        let received = traced(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            an_sdk_call_inside_an_action,
        );
        assert_eq!(received.len(), 2, "{received:#?}");
        let (call, action) = (&received[0], &received[1]);
        assert_eq!(call["name"], "SecretsManager");
        assert_eq!(call["aws"]["operation"], "GetSecretValue");
        assert_eq!(
            call["parent_id"], action["id"],
            "the call is the action's child"
        );
        assert_eq!(action["name"], "coding-agent");
        assert_eq!(action["namespace"], "remote");
        assert_eq!(action["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(action["error"], true);
        for subsegment in &received {
            assert_eq!(
                subsegment["trace_id"],
                "1-5759e988-bd862e3fe1be46a994272793"
            );
        }
    }

    #[test]
    fn an_unsampled_invocation_sends_nothing() {
        let received = traced(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0",
            an_sdk_call_inside_an_action,
        );
        assert_eq!(received, Vec::<Value>::new());
    }

    #[test]
    fn a_segment_id_is_16_hex_digits() {
        let id = segment_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
    }
}

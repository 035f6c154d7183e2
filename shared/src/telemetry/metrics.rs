//! CloudWatch Embedded Metric Format (EMF) metrics.
//!
//! EMF lines are JSON objects written to stdout, which Lambda sends to CloudWatch Logs,
//! where CloudWatch extracts them as metrics without any API call on the request path.

use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::NAMESPACE;

/// Emits EMF metric lines. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sink: Sink,
}

#[derive(Debug, Clone, Default)]
enum Sink {
    #[default]
    Stdout,
    Memory(Arc<Mutex<Vec<Value>>>),
    Off,
}

impl Metrics {
    /// Metrics written to stdout, for CloudWatch.
    pub fn stdout() -> Self {
        Self::default()
    }

    /// Metrics kept in memory, for tests: read them back with [`Metrics::captured`].
    pub fn in_memory() -> Self {
        Self {
            sink: Sink::Memory(Arc::default()),
        }
    }

    /// No metrics: off AWS (`hookgate dev`), EMF lines would only clutter the terminal, and
    /// the outcomes are in the log already.
    pub fn off() -> Self {
        Self { sink: Sink::Off }
    }

    /// The metric documents emitted so far (in-memory metrics only).
    pub fn captured(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Memory(captured) => captured.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            Sink::Stdout | Sink::Off => Vec::new(),
        }
    }

    /// Counts one occurrence of `name`, aggregated by each of `dimension_sets`; the
    /// dimensions' values come from `dimensions`.
    pub fn count(&self, name: &str, dimensions: &[(&str, &str)], dimension_sets: &[&[&str]]) {
        self.emit(name, "Count", 1.0, dimensions, dimension_sets);
    }

    /// Records one value of `name` in `unit` (`Milliseconds`, `Count`, …).
    pub fn emit(
        &self,
        name: &str,
        unit: &str,
        value: f64,
        dimensions: &[(&str, &str)],
        dimension_sets: &[&[&str]],
    ) {
        if matches!(self.sink, Sink::Off) {
            return;
        }
        let mut document = Map::new();
        document.insert(
            "_aws".into(),
            json!({
                "Timestamp": (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": dimension_sets,
                    "Metrics": [{ "Name": name, "Unit": unit }],
                }],
            }),
        );
        for (dimension, value) in dimensions {
            document.insert((*dimension).into(), Value::from(*value));
        }
        document.insert(name.into(), Value::from(value));
        let document = Value::Object(document);
        match &self.sink {
            Sink::Memory(captured) => captured
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(document),
            Sink::Stdout => println!("{document}"),
            Sink::Off => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_an_emf_document_with_its_dimensions() {
        let metrics = Metrics::in_memory();
        metrics.count(
            "Rejected",
            &[("Provider", "github"), ("Reason", "signature_mismatch")],
            &[&["Provider"], &["Provider", "Reason"]],
        );
        let document = &metrics.captured()[0];
        assert_eq!(document["Rejected"], 1.0);
        assert_eq!(document["Provider"], "github");
        assert_eq!(document["Reason"], "signature_mismatch");
        let directive = &document["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            json!([["Provider"], ["Provider", "Reason"]])
        );
        assert_eq!(
            directive["Metrics"][0],
            json!({"Name": "Rejected", "Unit": "Count"})
        );
        assert!(document["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
    }
}

//! CloudWatch Embedded Metric Format (EMF) metrics, aggregated per invocation.
//!
//! EMF lines are JSON objects written to stdout, which Lambda sends to CloudWatch Logs,
//! where CloudWatch extracts them as metrics without any API call on the request path.
//!
//! A function records what happens as it happens, and writes it once per invocation
//! ([`flush_metrics`], called by the Lambda adapters when an invocation ends): counts are
//! summed, and values (latencies) kept as one array per metric, so a batch of ten events
//! writes a handful of lines rather than dozens. Lines group the metrics that share their
//! dimensions' values, as EMF requires. Every metric also carries the `Service` dimension
//! (the function: `receiver-github`, `processor`, …), in every dimension set it is recorded
//! by, and goes to the namespace `METRICS_NAMESPACE` names (the template sets
//! `hookgate/<stack>`, so that two stacks in one account never mix their figures).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::NAMESPACE;

/// The most values of one metric EMF takes in one line.
const MAX_VALUES_PER_LINE: usize = 100;

/// Where this process's metrics go: set once, by [`configure`].
struct Destination {
    service: String,
    namespace: String,
}

static DESTINATION: OnceLock<Destination> = OnceLock::new();

/// Metrics recorded in this process and not yet written.
static PENDING: OnceLock<Mutex<Aggregate>> = OnceLock::new();

fn pending() -> &'static Mutex<Aggregate> {
    PENDING.get_or_init(Mutex::default)
}

/// Names the function the metrics come from and their namespace (`METRICS_NAMESPACE`, else
/// `hookgate`). The first call counts.
pub fn configure(service: &str, namespace: Option<String>) {
    let _ = DESTINATION.set(Destination {
        service: service.to_owned(),
        namespace: namespace.unwrap_or_else(|| NAMESPACE.to_owned()),
    });
}

/// Writes every metric recorded since the last flush, aggregated, to stdout.
pub fn flush_metrics() {
    let aggregate = std::mem::take(&mut *pending().lock().unwrap_or_else(|p| p.into_inner()));
    let (service, namespace) = match DESTINATION.get() {
        Some(destination) => (
            Some(destination.service.as_str()),
            destination.namespace.as_str(),
        ),
        None => (None, NAMESPACE),
    };
    let timestamp = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    for line in aggregate.lines(service, namespace, timestamp) {
        println!("{line}");
    }
}

/// Records metrics. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sink: Sink,
}

#[derive(Debug, Clone, Default)]
enum Sink {
    /// This process's pending aggregate, written by [`flush_metrics`].
    #[default]
    Stdout,
    /// Each value as a line of its own, unaggregated, for tests to read.
    Memory(Arc<Mutex<Vec<Value>>>),
    Off,
}

impl Metrics {
    /// Metrics for CloudWatch, written by [`flush_metrics`].
    pub fn stdout() -> Self {
        Self::default()
    }

    /// Metrics kept in memory, one document per value, for tests: read them back with
    /// [`Metrics::captured`].
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

    /// The metric documents recorded so far (in-memory metrics only), one per value.
    pub fn captured(&self) -> Vec<Value> {
        match &self.sink {
            Sink::Memory(captured) => captured.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            Sink::Stdout | Sink::Off => Vec::new(),
        }
    }

    /// Counts one occurrence of `name`, by each of `dimension_sets`; the dimensions' values
    /// come from `dimensions`.
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
        let recorded = Recorded {
            name,
            unit,
            value,
            dimensions,
            dimension_sets,
        };
        match &self.sink {
            Sink::Stdout => pending()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .add(&recorded),
            Sink::Memory(captured) => {
                let mut one = Aggregate::default();
                one.add(&recorded);
                captured
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(one.lines(None, NAMESPACE, 0));
            }
            Sink::Off => {}
        }
    }
}

/// One value as it is recorded.
struct Recorded<'a> {
    name: &'a str,
    unit: &'a str,
    value: f64,
    dimensions: &'a [(&'a str, &'a str)],
    dimension_sets: &'a [&'a [&'a str]],
}

/// Metrics grouped by their dimensions' values and sets: each group is one EMF line.
#[derive(Debug, Default)]
pub struct Aggregate {
    groups: BTreeMap<GroupKey, BTreeMap<String, Series>>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    dimensions: Vec<(String, String)>,
    sets: Vec<Vec<String>>,
}

/// One metric's values in a group: a sum for counts, every value otherwise.
#[derive(Debug)]
struct Series {
    unit: String,
    values: Vec<f64>,
}

impl Aggregate {
    fn add(&mut self, recorded: &Recorded<'_>) {
        let mut dimensions: Vec<(String, String)> = recorded
            .dimensions
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        dimensions.sort();
        let key = GroupKey {
            dimensions,
            sets: recorded
                .dimension_sets
                .iter()
                .map(|set| set.iter().map(|name| (*name).to_owned()).collect())
                .collect(),
        };
        let series = self
            .groups
            .entry(key)
            .or_default()
            .entry(recorded.name.to_owned())
            .or_insert_with(|| Series {
                unit: recorded.unit.to_owned(),
                values: Vec::new(),
            });
        match (series.unit.as_str(), series.values.first_mut()) {
            ("Count", Some(sum)) => *sum += recorded.value,
            _ => series.values.push(recorded.value),
        }
    }

    /// The EMF lines of everything recorded: one per group (more when a metric has more
    /// values than a line takes), each dimension set led by `Service` when there is one.
    pub fn lines(&self, service: Option<&str>, namespace: &str, timestamp: i64) -> Vec<Value> {
        let mut lines = Vec::new();
        for (key, series) in &self.groups {
            let sets: Vec<Vec<&str>> = key
                .sets
                .iter()
                .map(|set| {
                    service
                        .map(|_| "Service")
                        .into_iter()
                        .chain(set.iter().map(String::as_str))
                        .collect()
                })
                .collect();
            let chunks = series
                .values()
                .map(|series| series.values.len().div_ceil(MAX_VALUES_PER_LINE))
                .max()
                .unwrap_or(1);
            for chunk in 0..chunks {
                let mut line = Map::new();
                let mut metrics = Vec::new();
                for (name, series) in series {
                    let values: Vec<f64> = series
                        .values
                        .iter()
                        .copied()
                        .skip(chunk * MAX_VALUES_PER_LINE)
                        .take(MAX_VALUES_PER_LINE)
                        .collect();
                    let value = match values.as_slice() {
                        [] => continue,
                        [one] => Value::from(*one),
                        many => Value::from(many.to_vec()),
                    };
                    metrics.push(json!({ "Name": name, "Unit": series.unit }));
                    line.insert(name.clone(), value);
                }
                if let Some(service) = service {
                    line.insert("Service".into(), Value::from(service));
                }
                for (dimension, value) in &key.dimensions {
                    line.insert(dimension.clone(), Value::from(value.as_str()));
                }
                line.insert(
                    "_aws".into(),
                    json!({
                        "Timestamp": timestamp,
                        "CloudWatchMetrics": [{
                            "Namespace": namespace,
                            "Dimensions": sets,
                            "Metrics": metrics,
                        }],
                    }),
                );
                lines.push(Value::Object(line));
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(aggregate: &mut Aggregate, name: &str, unit: &str, value: f64, provider: &str) {
        aggregate.add(&Recorded {
            name,
            unit,
            value,
            dimensions: &[("Provider", provider)],
            dimension_sets: &[&["Provider"]],
        });
    }

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
    }

    #[test]
    fn counts_are_summed_and_values_kept_in_one_line_per_set_of_dimension_values() {
        let mut aggregate = Aggregate::default();
        for _ in 0..3 {
            record(&mut aggregate, "Received", "Count", 1.0, "github");
        }
        record(&mut aggregate, "Enqueued", "Count", 1.0, "github");
        record(&mut aggregate, "Latency", "Milliseconds", 12.0, "github");
        record(&mut aggregate, "Latency", "Milliseconds", 30.0, "github");
        record(&mut aggregate, "Received", "Count", 1.0, "stripe");

        let lines = aggregate.lines(Some("receiver-github"), "hookgate/prod", 1_800_000_000_000);

        assert_eq!(lines.len(), 2, "{lines:#?}");
        let github = &lines[0];
        assert_eq!(github["Provider"], "github");
        assert_eq!(github["Service"], "receiver-github");
        assert_eq!(github["Received"], 3.0);
        assert_eq!(github["Enqueued"], 1.0);
        assert_eq!(github["Latency"], json!([12.0, 30.0]));
        let directive = &github["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "hookgate/prod");
        assert_eq!(directive["Dimensions"], json!([["Service", "Provider"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "Enqueued", "Unit": "Count"},
                {"Name": "Latency", "Unit": "Milliseconds"},
                {"Name": "Received", "Unit": "Count"},
            ])
        );
        assert_eq!(github["_aws"]["Timestamp"], 1_800_000_000_000_i64);
        assert_eq!(lines[1]["Provider"], "stripe");
        assert_eq!(lines[1]["Received"], 1.0);
    }

    #[test]
    fn more_values_than_a_line_takes_go_on_as_many_lines_as_needed() {
        let mut aggregate = Aggregate::default();
        for value in 0..250 {
            record(
                &mut aggregate,
                "Latency",
                "Milliseconds",
                f64::from(value),
                "github",
            );
        }
        record(&mut aggregate, "Received", "Count", 1.0, "github");

        let lines = aggregate.lines(None, NAMESPACE, 0);

        let sizes: Vec<usize> = lines
            .iter()
            .map(|line| line["Latency"].as_array().map_or(1, Vec::len))
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            lines
                .iter()
                .filter(|line| line.get("Received").is_some())
                .count(),
            1,
            "a count is written once"
        );
        assert_eq!(lines[2]["Latency"][49], 249.0);
    }

    #[test]
    fn nothing_recorded_writes_nothing() {
        assert!(Aggregate::default()
            .lines(Some("processor"), NAMESPACE, 0)
            .is_empty());
    }
}

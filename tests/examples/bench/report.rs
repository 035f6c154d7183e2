//! The figures of a run, and the markdown they are printed as: min-max ranges over the
//! rounds, and each receiver's ratios to the naive floor taken round by round (the two ran
//! side by side, so a slow moment of the machine weighs on both).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::{Plan, Subject, PROCESSOR_BATCH};

/// One binary's figures in one round.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    pub cold_wall_ms: f64,
    pub cold_cpu_ms: f64,
    /// Every AWS call made by the first answer (init's included), by target.
    pub cold_calls: String,
    /// Per webhook; for the processor, per new GitHub event.
    pub warm_cpu_us: f64,
    pub switches: f64,
    pub peak_rss_bytes: f64,
    /// Per webhook; `None` for the processor, whose calls are by phase.
    pub sqs_calls: Option<f64>,
    pub sqs_sends: Option<f64>,
    pub processor: Option<ProcessorFigures>,
}

/// The processor's figures per event, by phase.
#[derive(Debug, Clone)]
pub struct ProcessorFigures {
    pub github_new: PhaseFigures,
    pub github_duplicate: PhaseFigures,
    pub stripe_new: PhaseFigures,
    pub stripe_duplicate: PhaseFigures,
}

impl ProcessorFigures {
    fn phases(&self) -> [(&'static str, &PhaseFigures); 4] {
        [
            ("GitHub, new", &self.github_new),
            ("GitHub, duplicate", &self.github_duplicate),
            ("Stripe, new", &self.stripe_new),
            ("Stripe, duplicate", &self.stripe_duplicate),
        ]
    }
}

/// Per event of one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseFigures {
    pub cpu_us: f64,
    pub switches: f64,
    pub dynamodb_writes: f64,
    pub sqs_calls: f64,
    /// Archive objects written (S3 PUTs), per event: one per batch.
    pub archive_puts: f64,
    /// Every call of the phase, by target, for the record.
    pub calls: String,
}

/// What the run was done on.
#[derive(Debug, Clone)]
struct Machine {
    cores: usize,
    cpu: String,
    kernel: String,
    rustc: String,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(
                || "unknown CPU".to_owned(),
                |(_, model)| model.trim().to_owned(),
            );
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| "unknown".to_owned(),
            |release| release.trim().to_owned(),
        );
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
            .filter(|version| !version.is_empty())
            .unwrap_or_else(|| "rustc (version unknown)".to_owned());
        Self {
            cores: std::thread::available_parallelism().map_or(0, |cores| cores.get()),
            cpu,
            kernel,
            rustc,
        }
    }
}

/// Everything measured in a run, printed by its `Display`.
#[derive(Debug)]
pub struct Report {
    plan: Plan,
    zips: BTreeMap<String, u64>,
    rounds: BTreeMap<String, Vec<Measured>>,
    took: Duration,
    machine: Machine,
}

impl Report {
    pub fn new(plan: Plan) -> Self {
        Self {
            plan,
            zips: BTreeMap::new(),
            rounds: BTreeMap::new(),
            took: Duration::ZERO,
            machine: Machine::read(),
        }
    }

    pub fn zipped(&mut self, subject: Subject, bytes: u64) {
        self.zips.insert(subject.name(), bytes);
    }

    pub fn add(&mut self, subject: Subject, measured: Measured) {
        self.rounds
            .entry(subject.name())
            .or_default()
            .push(measured);
    }

    pub fn finish(&mut self, took: Duration) {
        self.took = took;
    }

    fn measured(&self, subject: Subject) -> &[Measured] {
        self.rounds
            .get(&subject.name())
            .map_or(&[], |rounds| rounds.as_slice())
    }

    /// The figure for `subject`, as a range over its rounds.
    fn range(&self, subject: Subject, figure: impl Fn(&Measured) -> Option<f64>) -> Vec<f64> {
        self.measured(subject).iter().filter_map(figure).collect()
    }

    /// `subject`'s figure over the floor's, round by round.
    fn ratios(&self, subject: Subject, figure: impl Fn(&Measured) -> f64) -> Vec<f64> {
        self.measured(subject)
            .iter()
            .zip(self.measured(Subject::FloorReceiver))
            .map(|(ours, floor)| figure(ours) / figure(floor))
            .collect()
    }

    fn write_binaries(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "| binary | exec -> first answer, cold | CPU by first answer, cold | warm CPU per webhook | context switches per webhook | peak RSS | zip | SQS calls per webhook |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|")?;
        for subject in &self.plan.subjects {
            let subject = *subject;
            let name = match subject {
                Subject::Processor => "processor (1)".to_owned(),
                _ => subject.name(),
            };
            let zip = self
                .zips
                .get(&subject.name())
                .map_or_else(|| "-".to_owned(), |bytes| megabytes(*bytes as f64, 2));
            let sqs = self.range(subject, |m| m.sqs_calls);
            writeln!(
                f,
                "| {name} | {} | {} | {} | {} | {} | {zip} | {} |",
                unit(
                    range(&self.range(subject, |m| Some(m.cold_wall_ms)), 1),
                    "ms"
                ),
                unit(
                    range(&self.range(subject, |m| Some(m.cold_cpu_ms)), 1),
                    "ms"
                ),
                unit(
                    range(&self.range(subject, |m| Some(m.warm_cpu_us)), 0),
                    "µs"
                ),
                range(&self.range(subject, |m| Some(m.switches)), 1),
                unit(
                    range(&self.range(subject, |m| Some(m.peak_rss_bytes / 1e6)), 1),
                    "MB"
                ),
                if sqs.is_empty() {
                    "-".to_owned()
                } else {
                    range(&sqs, 2)
                },
            )?;
        }
        Ok(())
    }

    fn write_processor(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounds = self.measured(Subject::Processor);
        let phases: Vec<&ProcessorFigures> = rounds
            .iter()
            .filter_map(|measured| measured.processor.as_ref())
            .collect();
        let Some(last) = phases.last() else {
            return Ok(());
        };
        writeln!(
            f,
            "\n| processor, per event | GitHub (unsigned id), new | GitHub, duplicate | Stripe (signed id), new | Stripe, duplicate |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        type Figure = fn(&PhaseFigures) -> f64;
        let rows: [(&str, Figure, usize, &str); 5] = [
            ("CPU", |p| p.cpu_us, 0, "µs"),
            ("context switches", |p| p.switches, 1, ""),
            ("DynamoDB writes", |p| p.dynamodb_writes, 2, ""),
            ("SQS calls", |p| p.sqs_calls, 2, ""),
            ("S3 archive PUTs", |p| p.archive_puts, 2, ""),
        ];
        for (label, figure, decimals, suffix) in rows {
            let cells: Vec<String> = (0..4)
                .map(|phase| {
                    let values: Vec<f64> = phases
                        .iter()
                        .map(|figures| figure(figures.phases()[phase].1))
                        .collect();
                    unit(range(&values, decimals), suffix)
                })
                .collect();
            writeln!(f, "| {label} | {} |", cells.join(" | "))?;
        }
        writeln!(
            f,
            "\nCalls on the wire in the last round, per phase of {} events:",
            self.plan.batches * PROCESSOR_BATCH
        )?;
        for (phase, figures) in last.phases() {
            let calls = if figures.calls.is_empty() {
                "none"
            } else {
                &figures.calls
            };
            writeln!(f, "- {phase}: {calls}")?;
        }
        Ok(())
    }

    fn write_ratios(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.measured(Subject::FloorReceiver).is_empty() {
            return Ok(());
        }
        let receivers: Vec<Subject> = self
            .plan
            .subjects
            .iter()
            .copied()
            .filter(|subject| matches!(subject, Subject::Receiver(_)))
            .filter(|subject| !self.measured(*subject).is_empty())
            .collect();
        if receivers.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "\n| over floor-receiver, round by round | warm CPU per webhook | CPU by first answer | peak RSS | zip |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        let floor_zip = self.zips.get(&Subject::FloorReceiver.name()).copied();
        for subject in receivers {
            let zip = match (self.zips.get(&subject.name()), floor_zip) {
                (Some(ours), Some(floor)) if floor > 0 => {
                    format!("{:.2}x", *ours as f64 / floor as f64)
                }
                _ => "-".to_owned(),
            };
            writeln!(
                f,
                "| {} | {}x | {}x | {}x | {zip} |",
                subject.name(),
                range(&self.ratios(subject, |m| m.warm_cpu_us), 2),
                range(&self.ratios(subject, |m| m.cold_cpu_ms), 2),
                range(&self.ratios(subject, |m| m.peak_rss_bytes), 2),
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rounds = self.rounds.values().map(Vec::len).max().unwrap_or_default();
        self.write_binaries(f)?;
        if self.plan.subjects.contains(&Subject::Processor) {
            writeln!(
                f,
                "\n(1) The processor's cold answer is to a batch of one new GitHub event; its \
                 warm figures are per new GitHub event, in batches of {PROCESSOR_BATCH}, each \
                 event with one HTTP action to a local agent. Per phase:"
            )?;
        }
        self.write_processor(f)?;
        self.write_ratios(f)?;
        writeln!(
            f,
            "\nAWS calls by the first answer (init included), last round:"
        )?;
        for subject in &self.plan.subjects {
            if let Some(last) = self.measured(*subject).last() {
                let calls = if last.cold_calls.is_empty() {
                    "none"
                } else {
                    &last.cold_calls
                };
                writeln!(f, "- {}: {calls}", subject.name())?;
            }
        }
        let Machine {
            cores,
            cpu,
            kernel,
            rustc,
        } = &self.machine;
        writeln!(
            f,
            "\nMachine: {cores} cores ({cpu}), Linux {kernel}, {rustc}. Run: {rounds} rounds, \
             interleaved, each binary a fresh process per round: one cold invocation, {} \
             unmeasured, then {} measured, which the receivers and floors of a round take in \
             {} turns, all running (the processor: {} batches of {PROCESSOR_BATCH} per \
             phase); {} KB bodies; AWS calls through a counting keep-alive proxy to moto. \
             MB = 10^6 bytes. Took {} s.",
            self.plan.warm_up,
            self.plan.webhooks,
            crate::TURNS.min(self.plan.webhooks),
            self.plan.batches,
            crate::BODY_BYTES / 1024,
            self.took.as_secs()
        )
    }
}

/// `min-max` of `values` to `decimals` places, or one figure when both print alike.
fn range(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "-".to_owned();
    }
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = (number(min, decimals), number(max, decimals));
    if low == high {
        low
    } else {
        format!("{low}-{high}")
    }
}

fn unit(figure: String, unit: &str) -> String {
    if figure == "-" || unit.is_empty() {
        figure
    } else {
        format!("{figure} {unit}")
    }
}

fn megabytes(bytes: f64, decimals: usize) -> String {
    format!("{:.*} MB", decimals, bytes / 1e6)
}

/// `value` to `decimals` places, with thousands grouped by commas, and a whole number
/// printed without its `.0`s.
fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole.to_owned(), Some(fraction.to_owned())),
        None => (text, None),
    };
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", whole.as_str()),
    };
    let mut grouped = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    match fraction {
        Some(fraction) if fraction.chars().any(|digit| digit != '0') => {
            format!("{sign}{grouped}.{fraction}")
        }
        _ => format!("{sign}{grouped}"),
    }
}

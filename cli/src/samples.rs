//! `hookgate samples`: writes every sample event, signed now, or with `--check` proves that
//! the files are what the samples generate: the receivers' API Gateway events in
//! `events/<provider>/<name>.json` and the processor's SQS events in
//! `events/processor/<name>.json`, whose bodies are the envelopes the receivers queue for
//! the very same deliveries.
//!
//! Timestamped signatures go stale in minutes, so the files are regenerated rather than
//! edited: a change belongs in `events/payloads/` (or in `hookgate_samples`), and `--check`
//! catches a file changed by hand, which would otherwise silently test something else.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use hookgate_samples::SampleFile;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const REGENERATE: &str = "cargo run -q --bin hookgate -- samples";

#[derive(Debug, clap::Args)]
pub struct SamplesArgs {
    /// The events directory; `<provider>/` and `processor/` folders are written inside it.
    #[arg(long, default_value = "events")]
    dir: PathBuf,
    /// Write nothing; fail, naming each file, unless every file is exactly what the samples
    /// generate at the time it carries (`requestContext.timeEpoch` of an API Gateway event,
    /// `Records[0].attributes.SentTimestamp` of an SQS event).
    #[arg(long)]
    check: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Why `hookgate samples` failed.
#[derive(Debug, thiserror::Error)]
pub enum SamplesError {
    #[error("`{0}` is not a directory; run from the repository root or pass --dir")]
    NoDirectory(PathBuf),
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}", Problems(.0))]
    CheckFailed(Vec<Problem>),
}

/// A file `--check` refuses, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: PathBuf,
    pub reason: String,
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} sample event file(s) are not what the samples generate:",
            self.0.len()
        )?;
        for problem in self.0 {
            writeln!(f, "  {}: {}", problem.path.display(), problem.reason)?;
        }
        write!(
            f,
            "regenerate them with `{REGENERATE}`, after moving any change into events/payloads/"
        )
    }
}

pub fn run(args: &SamplesArgs) -> Result<(), SamplesError> {
    if !args.dir.is_dir() {
        return Err(SamplesError::NoDirectory(args.dir.clone()));
    }
    if args.check {
        let checked = check(&args.dir)?;
        if args.json {
            outln!(
                "{}",
                serde_json::json!({ "dir": args.dir.display().to_string(), "checked": checked })
            );
        } else {
            outln!(
                "{checked} sample events in {} are as generated",
                args.dir.display()
            );
        }
    } else {
        let at = OffsetDateTime::now_utc();
        let written = write(&args.dir, at)?;
        if args.json {
            outln!(
                "{}",
                serde_json::json!({
                    "dir": args.dir.display().to_string(),
                    "written": written,
                    "received_at": rfc3339(at),
                })
            );
        } else {
            outln!(
                "signed {written} sample events in {} for {}",
                args.dir.display(),
                rfc3339(at)
            );
        }
        for stray in unknown_files(&args.dir)? {
            eprintln!(
                "hookgate: {} is not a sample event; left as it is",
                stray.display()
            );
        }
    }
    Ok(())
}

/// Writes every sample event, arriving at `at`, and returns how many.
pub fn write(dir: &Path, at: OffsetDateTime) -> Result<usize, SamplesError> {
    let files = SampleFile::all();
    for folder in SampleFile::folders() {
        let folder = dir.join(folder);
        fs::create_dir_all(&folder).map_err(io_error("create", &folder))?;
    }
    for file in &files {
        let path = dir.join(file.relative_path());
        fs::write(&path, file.file_contents(at)).map_err(io_error("write", &path))?;
    }
    Ok(files.len())
}

/// Checks that every sample event's file exists and is exactly what the samples generate at
/// the time it carries, and that no other event file sits among them. Returns how many
/// files were checked.
pub fn check(dir: &Path) -> Result<usize, SamplesError> {
    let files = SampleFile::all();
    let mut problems = Vec::new();
    for file in &files {
        let path = dir.join(file.relative_path());
        let reason = match fs::read_to_string(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => Some("missing".to_owned()),
            Err(error) => return Err(io_error("read", &path)(error)),
            Ok(on_disk) => mismatch(file, &on_disk),
        };
        if let Some(reason) = reason {
            problems.push(Problem { path, reason });
        }
    }
    for path in unknown_files(dir)? {
        let reason = "not a sample event: the samples generate no file of this name".to_owned();
        problems.push(Problem { path, reason });
    }
    if problems.is_empty() {
        Ok(files.len())
    } else {
        Err(SamplesError::CheckFailed(problems))
    }
}

/// Why a file is not what the samples generate for its time, if it is not.
fn mismatch(file: &SampleFile, on_disk: &str) -> Option<String> {
    let at = serde_json::from_str(on_disk)
        .ok()
        .and_then(|value: serde_json::Value| file.recorded_time(&value));
    let Some(at) = at else {
        return Some(format!("not {}", file.time_field()));
    };
    let expected = file.file_contents(at);
    if expected == on_disk {
        return None;
    }
    let line = expected
        .lines()
        .zip(on_disk.lines())
        .position(|(expected, found)| expected != found)
        .unwrap_or_else(|| expected.lines().count().min(on_disk.lines().count()))
        + 1;
    Some(format!(
        "differs from the event generated for {}, from line {line}",
        rfc3339(at)
    ))
}

fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// `*.json` files in the sample folders that are no sample event.
fn unknown_files(dir: &Path) -> Result<Vec<PathBuf>, SamplesError> {
    let known: BTreeSet<PathBuf> = SampleFile::all()
        .iter()
        .map(|file| dir.join(file.relative_path()))
        .collect();
    let mut unknown = Vec::new();
    for folder in SampleFile::folders() {
        let folder = dir.join(folder);
        let entries = match fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
            Err(error) => return Err(io_error("list", &folder)(error)),
        };
        for entry in entries {
            let path = entry.map_err(io_error("list", &folder))?.path();
            if path.extension().is_some_and(|ext| ext == "json") && !known.contains(&path) {
                unknown.push(path);
            }
        }
    }
    unknown.sort();
    Ok(unknown)
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SamplesError {
    let path = path.to_owned();
    move |source| SamplesError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "hookgate-events-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn at() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_748_856_600).unwrap()
    }

    fn problems(dir: &Path) -> Vec<Problem> {
        match check(dir) {
            Err(SamplesError::CheckFailed(problems)) => problems,
            other => panic!("expected a failed check, got {other:?}"),
        }
    }

    #[test]
    fn freshly_written_events_pass_the_check() {
        let scratch = Scratch::new();
        let written = write(&scratch.0, at()).unwrap();
        assert_eq!(written, SampleFile::all().len());
        assert_eq!(check(&scratch.0).unwrap(), written);
    }

    #[test]
    fn events_written_at_another_time_still_pass_since_each_carries_its_time() {
        let scratch = Scratch::new();
        write(&scratch.0, at()).unwrap();
        write(&scratch.0, at() + time::Duration::days(3)).unwrap();
        assert!(check(&scratch.0).is_ok());
    }

    #[test]
    fn a_hand_edited_event_fails_the_check_naming_the_file() {
        let scratch = Scratch::new();
        write(&scratch.0, at()).unwrap();
        let path = scratch.0.join("stripe/invoice.paid.json");
        let edited = fs::read_to_string(&path).unwrap().replace("2900", "9900");
        fs::write(&path, edited).unwrap();
        let problems = problems(&scratch.0);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, path);
        assert!(
            problems[0].reason.starts_with("differs"),
            "{}",
            problems[0].reason
        );
        let message = SamplesError::CheckFailed(problems).to_string();
        assert!(message.contains("stripe/invoice.paid.json"), "{message}");
        assert!(message.contains(REGENERATE), "{message}");
    }

    #[test]
    fn a_missing_event_and_a_stray_one_fail_the_check() {
        let scratch = Scratch::new();
        write(&scratch.0, at()).unwrap();
        fs::remove_file(scratch.0.join("github/rejected-wrong-secret.json")).unwrap();
        fs::write(scratch.0.join("github/push.json"), "{}\n").unwrap();
        let reasons: Vec<(String, String)> = problems(&scratch.0)
            .into_iter()
            .map(|problem| {
                let name = problem
                    .path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (name, problem.reason)
            })
            .collect();
        assert_eq!(reasons.len(), 2);
        assert_eq!(
            reasons[0],
            ("rejected-wrong-secret.json".into(), "missing".into())
        );
        assert_eq!(reasons[1].0, "push.json");
    }

    #[test]
    fn a_file_without_its_time_fails_the_check() {
        let scratch = Scratch::new();
        write(&scratch.0, at()).unwrap();
        fs::write(
            scratch.0.join("slack/url_verification.json"),
            "{\"version\":\"2.0\"}\n",
        )
        .unwrap();
        let problems = problems(&scratch.0);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].reason.contains("timeEpoch"));
    }

    #[test]
    fn the_processors_sqs_events_are_written_and_checked_too() {
        let scratch = Scratch::new();
        write(&scratch.0, at()).unwrap();
        let batch = scratch.0.join("processor/batch.json");
        let text = fs::read_to_string(&batch).unwrap();
        assert!(text.contains("\"eventSource\": \"aws:sqs\""), "{text}");

        fs::write(
            &batch,
            text.replace(
                "\"ApproximateReceiveCount\": \"1\"",
                "\"ApproximateReceiveCount\": \"2\"",
            ),
        )
        .unwrap();
        fs::write(scratch.0.join("processor/stray.json"), "{}\n").unwrap();
        fs::write(
            scratch.0.join("processor/unreadable-envelope.json"),
            "{\"Records\":[]}\n",
        )
        .unwrap();
        let problems = problems(&scratch.0);
        let found: Vec<(String, &str)> = problems
            .iter()
            .map(|problem| {
                let name = problem.path.file_name().unwrap().to_string_lossy();
                let kind = problem.reason.split(' ').next().unwrap_or_default();
                (name.into_owned(), kind)
            })
            .collect();
        assert_eq!(
            found,
            [
                ("batch.json".to_owned(), "differs"),
                ("unreadable-envelope.json".to_owned(), "not"),
                ("stray.json".to_owned(), "not"),
            ]
        );
        assert!(
            problems[1].reason.contains("SentTimestamp"),
            "{}",
            problems[1].reason
        );
    }

    #[test]
    fn a_missing_events_directory_is_refused() {
        let args = SamplesArgs {
            dir: std::env::temp_dir().join("hookgate-no-such-directory"),
            check: true,
            json: false,
        };
        assert!(matches!(run(&args), Err(SamplesError::NoDirectory(_))));
    }
}

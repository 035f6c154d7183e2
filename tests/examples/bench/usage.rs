//! What a child process has used, read from `/proc`.
//!
//! CPU time comes from each thread's `schedstat` (its first field: nanoseconds on the CPU,
//! as the scheduler counts them); `/proc/<pid>/stat` counts in clock ticks (10 ms), too
//! coarse for a cold start of a few milliseconds. Threads are read one by one and kept
//! apart, so that a thread that ends between two readings (tokio's blocking pool retires
//! idle threads) takes only its own time since the first reading with it, never the time
//! it had used before.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// One thread's CPU time and context switches so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ThreadUsage {
    pub cpu_ns: u64,
    /// Voluntary and involuntary together.
    pub switches: u64,
}

/// Every live thread of a process, by thread id, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    threads: BTreeMap<u32, ThreadUsage>,
}

impl Usage {
    /// Reads every thread of `pid`. A thread that ends while it is being read is left out:
    /// what it used is lost to this reading, as it would be a moment later.
    pub fn read(pid: u32) -> io::Result<Self> {
        let mut threads = BTreeMap::new();
        for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let entry = entry?;
            let Some(tid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            if let Ok(usage) = read_thread(&entry.path()) {
                threads.insert(tid, usage);
            }
        }
        Ok(Self { threads })
    }

    /// Everything the live threads have used since they started.
    pub fn total(&self) -> ThreadUsage {
        self.threads
            .values()
            .fold(ThreadUsage::default(), |sum, thread| ThreadUsage {
                cpu_ns: sum.cpu_ns + thread.cpu_ns,
                switches: sum.switches + thread.switches,
            })
    }

    /// What was used between `earlier` and this reading, by the threads alive now (those
    /// started since count from zero).
    pub fn since(&self, earlier: &Usage) -> ThreadUsage {
        self.threads
            .iter()
            .fold(ThreadUsage::default(), |sum, (tid, now)| {
                let before = earlier.threads.get(tid).copied().unwrap_or_default();
                ThreadUsage {
                    cpu_ns: sum.cpu_ns + now.cpu_ns.saturating_sub(before.cpu_ns),
                    switches: sum.switches + now.switches.saturating_sub(before.switches),
                }
            })
    }
}

fn read_thread(task: &Path) -> io::Result<ThreadUsage> {
    let schedstat = std::fs::read_to_string(task.join("schedstat"))?;
    let cpu_ns = schedstat
        .split_whitespace()
        .next()
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::other(format!("{}: no run time", task.display())))?;
    let status = std::fs::read_to_string(task.join("status"))?;
    let switches = ["voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"]
        .iter()
        .map(|field| status_field(&status, field).unwrap_or(0))
        .sum();
    Ok(ThreadUsage { cpu_ns, switches })
}

/// The process's peak resident set (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status_field(&status, "VmHWM:")
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::other(format!("/proc/{pid}/status has no VmHWM")))
}

/// The number after `name` on its line of a `status` file (`VmHWM:   9876 kB`).
fn status_field(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
}

//! Standard Workload Format: the job logs of the Parallel Workloads Archive.
//!
//! One job per line, 18 whitespace-separated fields: job, submit, wait, runtime, procs, cpu,
//! mem, reqprocs, reqtime, reqmem, status, user, group, app, queue, partition, prevjob, think.
//! Lines starting with `;` are the header; blank lines are skipped; -1 means unknown. Times
//! are seconds, memory is KB per processor.

use std::io::BufRead;

use thiserror::Error;

/// The fields of one job that the simulator uses (seconds, processors, KB per processor).
/// Unknown values are -1, as in the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwfJob {
    /// Field 1: the job number.
    pub job: i64,
    /// Field 2: submit time, seconds from the start of the log.
    pub submit: f64,
    /// Field 3: the wait the logged system gave it, seconds.
    pub wait: f64,
    /// Field 4: how long it ran, seconds.
    pub runtime: f64,
    /// Field 5: processors allocated.
    pub procs: i64,
    /// Field 7: memory used, KB per processor.
    pub mem_kb: f64,
    /// Field 8: processors requested.
    pub req_procs: i64,
    /// Field 9: the time requested, seconds.
    pub req_time: f64,
    /// Field 10: memory requested, KB per processor.
    pub req_mem_kb: f64,
    /// Field 12: user number.
    pub user: i64,
    /// Field 15: queue number.
    pub queue: i64,
}

/// Number of fields of an SWF job line.
pub const FIELDS: usize = 18;

/// A line that is not a job record, or a read that failed.
#[derive(Debug, Error)]
pub enum SwfError {
    /// The line does not have the 18 fields of a job.
    #[error("line {line}: expected {FIELDS} whitespace-separated fields, found {found}")]
    FieldCount {
        /// 1-based line number.
        line: usize,
        /// How many fields the line has.
        found: usize,
    },
    /// A field is not a number.
    #[error("line {line}: field {field} ({name}) is not a number: `{value}`")]
    NotANumber {
        /// 1-based line number.
        line: usize,
        /// 1-based field number.
        field: usize,
        /// The field's SWF name.
        name: &'static str,
        /// What the line has there.
        value: String,
    },
    /// Reading the input failed (I/O error, bad gzip data, not UTF-8).
    #[error("line {line}: cannot read the trace: {source}")]
    Read {
        /// 1-based number of the line being read.
        line: usize,
        /// The reader's error.
        source: std::io::Error,
    },
}

const NAMES: [&str; FIELDS] = [
    "job",
    "submit",
    "wait",
    "runtime",
    "procs",
    "cpu",
    "mem",
    "reqprocs",
    "reqtime",
    "reqmem",
    "status",
    "user",
    "group",
    "app",
    "queue",
    "partition",
    "prevjob",
    "think",
];

/// Parses one line; `Ok(None)` for a header, comment or blank line.
pub fn parse_line(text: &str, line: usize) -> Result<Option<SwfJob>, SwfError> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.starts_with(';') {
        return Ok(None);
    }
    let mut values = [0f64; FIELDS];
    let mut found = 0;
    for (i, field) in trimmed.split_whitespace().enumerate() {
        found = i + 1;
        if i >= FIELDS {
            continue;
        }
        values[i] = match field.parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                return Err(SwfError::NotANumber {
                    line,
                    field: i + 1,
                    name: NAMES[i],
                    value: field.to_owned(),
                })
            }
        };
    }
    if found != FIELDS {
        return Err(SwfError::FieldCount { line, found });
    }
    let int = |i: usize| values[i].round() as i64;
    Ok(Some(SwfJob {
        job: int(0),
        submit: values[1],
        wait: values[2],
        runtime: values[3],
        procs: int(4),
        mem_kb: values[6],
        req_procs: int(7),
        req_time: values[8],
        req_mem_kb: values[9],
        user: int(11),
        queue: int(14),
    }))
}

/// Parses a whole trace, stopping at the first bad line. At most `limit` jobs are read when
/// given.
pub fn parse(reader: impl BufRead, limit: Option<usize>) -> Result<Vec<SwfJob>, SwfError> {
    let mut jobs = Vec::new();
    for (i, text) in reader.lines().enumerate() {
        if limit.is_some_and(|l| jobs.len() >= l) {
            break;
        }
        let line = i + 1;
        let text = text.map_err(|source| SwfError::Read { line, source })?;
        if let Some(job) = parse_line(&text, line)? {
            jobs.push(job);
        }
    }
    Ok(jobs)
}

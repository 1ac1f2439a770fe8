//! A seeded synthetic workload in the trace's own terms, for replays larger than any log.
//!
//! Two workloads. [`Workload::Hpc`], a parallel machine's:
//!
//! - Sizes: powers of two from 1 processor to a quarter of the machine, equally likely.
//! - Run times: 70% short (log-uniform 10 s – 10 min), 30% long (log-uniform 10 min – 12 h).
//! - Requested times: the run time times a log-uniform factor of 1–10, rounded up to a
//!   minute; 5% of the jobs ask for less than they run and are killed at their request.
//! - Users: 200, of whom 5 heavy users submit half of the jobs.
//! - Arrivals: Poisson at the rate that offers `load` of the machine, except that 5% of the
//!   jobs come in bursts of 20 a second apart.
//!
//! [`Workload::Platform`], a code-execution platform's (a processor is meant as a quarter
//! core: `[simulate] cpu_millis_per_proc = 250`):
//!
//! - Sizes: 1, 2, 4, 8 or 16 processors (0.25 to 4 cores) with weights 25, 40, 25, 8, 2;
//!   memory 128–512 MiB per processor.
//! - Timeouts: 30 s, 1, 2, 5 or 10 min with weights 20, 30, 20, 25, 5. Run times: the timeout
//!   times a log-uniform 1–80%; 3% run past their timeout (an endless loop) and are killed.
//! - Users: 4 heavy users submit 40% of the jobs, in bursts of 20–200 a tenth of a second
//!   apart (a CI pipeline, a class submitting at once), at NORMAL 20%, LOW 40%, BACKGROUND
//!   40%. 400 others submit one at a time, Poisson, at CRITICAL 5%, HIGH 20%, NORMAL 60%, LOW
//!   10%, BACKGROUND 5%. The level is the job's queue number, 1 (critical) to 5 (background).
//! - Arrivals spread over the span that offers `load` of the machine.
//!
//! The same parameters and seed give the same jobs.

use crate::sim::settings::splitmix64;
use crate::sim::swf::SwfJob;

/// Which kind of workload to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workload {
    /// A parallel machine's: wide jobs of seconds to hours.
    #[default]
    Hpc,
    /// A code-execution platform's: small scripts of seconds to minutes, in bursts.
    Platform,
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthParams {
    /// How many jobs.
    pub jobs: usize,
    /// Seed of every draw.
    pub seed: u64,
    /// Processors of the machine (the pool's cores).
    pub procs: u64,
    /// Offered load: work submitted ÷ what the machine can do over the span.
    pub load: f64,
    /// Which workload.
    pub workload: Workload,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }

    /// An index drawn with these relative weights.
    fn pick(&mut self, weights: &[u64]) -> usize {
        let mut x = self.below(weights.iter().sum());
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// Generates `params.jobs` jobs, in submit order.
pub fn generate(params: &SynthParams) -> Vec<SwfJob> {
    match params.workload {
        Workload::Hpc => hpc(params),
        Workload::Platform => platform(params),
    }
}

fn hpc(params: &SynthParams) -> Vec<SwfJob> {
    let mut rng = Rng(params.seed);
    let max_exp = (params.procs / 4).max(1).ilog2();
    let mut jobs = Vec::with_capacity(params.jobs);
    let mut work = 0f64;
    for i in 0..params.jobs {
        let procs = 1i64 << rng.below(u64::from(max_exp) + 1);
        let runtime = if rng.unit() < 0.7 {
            rng.log_uniform(10.0, 600.0)
        } else {
            rng.log_uniform(600.0, 43_200.0)
        }
        .round();
        let req_time = if rng.unit() < 0.05 {
            (runtime * rng.log_uniform(0.3, 0.95)).floor().max(1.0)
        } else {
            ((runtime * rng.log_uniform(1.0, 10.0)) / 60.0).ceil() * 60.0
        };
        let user = if rng.unit() < 0.5 {
            rng.below(5) as i64
        } else {
            5 + rng.below(195) as i64
        };
        work += procs as f64 * runtime;
        jobs.push(SwfJob {
            job: i as i64 + 1,
            submit: 0.0,
            wait: -1.0,
            runtime,
            procs,
            mem_kb: -1.0,
            req_procs: procs,
            req_time,
            req_mem_kb: -1.0,
            user,
            queue: -1,
        });
    }
    let n = params.jobs.max(1) as f64;
    let mean_gap = work / (params.load.max(0.01) * params.procs.max(1) as f64 * n);
    let mut t = 0f64;
    let mut burst = 0;
    for job in &mut jobs {
        if burst > 0 {
            burst -= 1;
            t += 1.0;
        } else if rng.unit() < 0.05 / 20.0 {
            burst = 19;
            t += 1.0;
        } else {
            t += -mean_gap * (1.0 - rng.unit()).ln();
        }
        job.submit = t.round();
    }
    jobs
}

fn platform(params: &SynthParams) -> Vec<SwfJob> {
    const SIZES: [i64; 5] = [1, 2, 4, 8, 16];
    const SIZE_WEIGHTS: [u64; 5] = [25, 40, 25, 8, 2];
    const TIMEOUTS: [f64; 5] = [30.0, 60.0, 120.0, 300.0, 600.0];
    const TIMEOUT_WEIGHTS: [u64; 5] = [20, 30, 20, 25, 5];
    const HEAVY_LEVELS: [u64; 5] = [0, 0, 20, 40, 40];
    const OTHER_LEVELS: [u64; 5] = [5, 20, 60, 10, 5];
    let mut rng = Rng(params.seed);
    let mut jobs = Vec::with_capacity(params.jobs);
    let mut work = 0f64;
    // Heavy users' jobs come in bursts: (first job, length) of each.
    let mut bursts: Vec<(usize, usize)> = Vec::new();
    let mut heavy_jobs = 0;
    while jobs.len() < params.jobs {
        // A burst whenever the heavy users are below their 40% of the jobs so far, with a
        // chance of one more, so bursts and single jobs interleave unevenly.
        let heavy = (heavy_jobs as f64) < 0.4 * jobs.len() as f64 && rng.unit() < 0.05;
        let (user, count, levels) = if heavy {
            let count = (20 + rng.below(181) as usize).min(params.jobs - jobs.len());
            bursts.push((jobs.len(), count));
            heavy_jobs += count;
            (rng.below(4) as i64, count, &HEAVY_LEVELS)
        } else {
            (4 + rng.below(400) as i64, 1, &OTHER_LEVELS)
        };
        for _ in 0..count {
            let procs = SIZES[rng.pick(&SIZE_WEIGHTS)];
            let timeout = TIMEOUTS[rng.pick(&TIMEOUT_WEIGHTS)];
            let runtime = if rng.unit() < 0.03 {
                timeout * (1.0 + 2.0 * rng.unit())
            } else {
                timeout * rng.log_uniform(0.01, 0.8)
            }
            .round()
            .max(1.0);
            let mem_kb = (128 + rng.below(385)) as f64 * 1024.0;
            work += procs as f64 * runtime.min(timeout);
            jobs.push(SwfJob {
                job: 0,
                submit: 0.0,
                wait: -1.0,
                runtime,
                procs,
                mem_kb: -1.0,
                req_procs: procs,
                req_time: timeout,
                req_mem_kb: mem_kb,
                user,
                queue: rng.pick(levels) as i64 + 1,
            });
        }
    }
    let span = work / (params.load.max(0.01) * params.procs.max(1) as f64);
    let mut in_burst = vec![false; jobs.len()];
    for &(first, count) in &bursts {
        let start = rng.unit() * span;
        for (k, job) in jobs[first..first + count].iter_mut().enumerate() {
            job.submit = start + k as f64 * 0.1;
            in_burst[first + k] = true;
        }
    }
    for (job, burst) in jobs.iter_mut().zip(&in_burst) {
        if !burst {
            job.submit = rng.unit() * span;
        }
    }
    for job in &mut jobs {
        job.submit = (job.submit * 10.0).round() / 10.0;
    }
    jobs.sort_by(|a, b| a.submit.total_cmp(&b.submit));
    for (i, job) in jobs.iter_mut().enumerate() {
        job.job = i as i64 + 1;
    }
    jobs
}

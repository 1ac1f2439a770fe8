//! A seeded synthetic workload in the trace's own terms, for replays larger than any log.
//!
//! - Sizes: powers of two from 1 processor to a quarter of the machine, equally likely.
//! - Run times: 70% short (log-uniform 10 s – 10 min), 30% long (log-uniform 10 min – 12 h).
//! - Requested times: the run time times a log-uniform factor of 1–10, rounded up to a
//!   minute; 5% of the jobs ask for less than they run and are killed at their request.
//! - Users: 200, of whom 5 heavy users submit half of the jobs.
//! - Arrivals: Poisson at the rate that offers `load` of the machine, except that 5% of the
//!   jobs come in bursts of 20 a second apart.
//!
//! The same parameters and seed give the same jobs.

use crate::sim::settings::splitmix64;
use crate::sim::swf::SwfJob;

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
}

/// Generates `params.jobs` jobs, in submit order.
pub fn generate(params: &SynthParams) -> Vec<SwfJob> {
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

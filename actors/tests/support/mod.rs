//! What the integration tests share: one wait budget, the golden events, the Kafka helpers
//! (`kafka`), the daemon binary as a child process with a config of its own (`daemon`), GETs
//! against its metrics listener (`http`), a headless browser (`browser`), and the fakes of the
//! actor-level tests (`actors`). Every test file takes it with `mod support;`.
//!
//! Tests wait by polling against a deadline ([`deadline`]), never by sleeping before an
//! assertion.
#![allow(dead_code)]

pub mod actors;
pub mod browser;
pub mod daemon;
pub mod golden;
pub mod http;
pub mod kafka;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for something before it fails: generous, since CI machines are shared
/// and the daemon, the broker and the test all run on them at once.
pub const WAIT: Duration = Duration::from_secs(90);

/// How long a process may take to stop once told to (SIGTERM, Ctrl-C): its shutdown grace
/// (20 s in [`daemon::TestConfig`]) and some. A bound the daemon must meet, not a wait budget.
pub const STOP_WITHIN: Duration = Duration::from_secs(30);

/// The instant [`WAIT`] from now.
pub fn deadline() -> Instant {
    Instant::now() + WAIT
}

/// The repository's root (the workspace, above `actors/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("actors/ has a parent")
        .to_path_buf()
}

/// A small seeded generator (xorshift64*), so a failing run can be replayed with its seed.
/// `Rng(state)` starts from `state` as it is (never zero); [`Rng::new`] spreads seeds apart.
pub struct Rng(pub u64);

impl Rng {
    /// The generator of `seed`: never zero, and seeds 1, 2, 3 … far apart.
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The JSON file at `path`; panics naming the file when it cannot be read or is not JSON.
pub fn read_json(path: impl AsRef<Path>) -> Value {
    let path = path.as_ref();
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

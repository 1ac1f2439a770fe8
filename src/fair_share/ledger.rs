//! Each user's usage, decayed exponentially with a half-life.
//!
//! A user's usage at `now` is `Σ charge · 2^(-(now - charged_at) / half_life)`. It is kept
//! per user as one value and the time it was last brought up to date, so charging is O(1)
//! and nothing has to run as time passes.
//!
//! Decay scales every user's usage by the same factor, so the users' order by usage never
//! changes while nobody is charged. [`UsageLedger::rank`] expresses that as a number: the
//! base-2 logarithm of the usage, brought to the ledger's epoch, which orders users the same
//! at every time and changes only when the user is charged.

use std::hash::Hash;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::queue::Millis;

#[derive(Debug, Clone, Copy)]
struct Account {
    /// Usage at `at`.
    value: f64,
    at: Millis,
}

/// Decayed usage per user, in cpu·seconds.
#[derive(Debug, Clone)]
pub struct UsageLedger<U> {
    half_life_ms: f64,
    accounts: FxHashMap<U, Account>,
    /// Everything ever charged.
    charged: f64,
    /// What decayed away up to the times the accounts were last brought up to date, and what
    /// was forgotten.
    settled: f64,
}

impl<U: Hash + Eq + Clone> UsageLedger<U> {
    /// An empty ledger whose usage halves every `half_life` (at least 1 ms).
    pub fn new(half_life: Duration) -> Self {
        Self {
            half_life_ms: (half_life.as_secs_f64() * 1000.0).max(1.0),
            accounts: FxHashMap::default(),
            charged: 0.0,
            settled: 0.0,
        }
    }

    fn decay(&self, account: &Account, now: Millis) -> f64 {
        let elapsed = now.saturating_sub(account.at) as f64;
        account.value * (-elapsed / self.half_life_ms).exp2()
    }

    /// Adds `amount` cpu·seconds to `user` at `now`. Amounts that are negative or not finite
    /// are ignored.
    pub fn charge(&mut self, user: &U, amount: f64, now: Millis) {
        if !(amount.is_finite() && amount >= 0.0) {
            return;
        }
        let decayed = match self.accounts.get(user) {
            Some(a) => {
                let now = now.max(a.at);
                let left = self.decay(a, now);
                self.settled += a.value - left;
                Account {
                    value: left + amount,
                    at: now,
                }
            }
            None => Account {
                value: amount,
                at: now,
            },
        };
        self.accounts.insert(user.clone(), decayed);
        self.charged += amount;
    }

    /// The usage of `user` at `now` (0 for a user never charged).
    pub fn usage(&self, user: &U, now: Millis) -> f64 {
        self.accounts.get(user).map_or(0.0, |a| self.decay(a, now))
    }

    /// A number that orders users by usage the same at every time: larger is more usage.
    /// `-∞` for a user with none.
    pub fn rank(&self, user: &U) -> f64 {
        match self.accounts.get(user) {
            Some(a) if a.value > 0.0 => a.value.log2() + a.at as f64 / self.half_life_ms,
            _ => f64::NEG_INFINITY,
        }
    }

    /// The usage at `now` of a user whose [`rank`](Self::rank) is `rank`.
    pub fn usage_of_rank(&self, rank: f64, now: Millis) -> f64 {
        (rank - now as f64 / self.half_life_ms).exp2()
    }

    /// Everything ever charged.
    pub fn charged(&self) -> f64 {
        self.charged
    }

    /// The sum of every user's usage at `now`.
    pub fn total(&self, now: Millis) -> f64 {
        self.accounts.values().map(|a| self.decay(a, now)).sum()
    }

    /// What has decayed away (or been forgotten) by `now`: `charged() - total(now)`.
    pub fn decayed(&self, now: Millis) -> f64 {
        self.settled
            + self
                .accounts
                .values()
                .map(|a| a.value - self.decay(a, now))
                .sum::<f64>()
    }

    /// Users with an account.
    pub fn users(&self) -> usize {
        self.accounts.len()
    }

    /// Drops the accounts whose usage at `now` is below `below`, counting what they held as
    /// decayed, so the ledger does not grow with every user ever seen.
    pub fn forget(&mut self, now: Millis, below: f64) {
        let half_life_ms = self.half_life_ms;
        let mut settled = 0.0;
        self.accounts.retain(|_, a| {
            let left = a.value * (-(now.saturating_sub(a.at) as f64) / half_life_ms).exp2();
            let keep = left >= below;
            if !keep {
                settled += a.value;
            }
            keep
        });
        self.settled += settled;
    }
}

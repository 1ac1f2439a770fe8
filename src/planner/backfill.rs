//! The `backfill` pass: reservations for the candidates that cannot start, and starts for the
//! ones behind them that do not delay a reservation.

use super::profile::Profile;
use super::{earliest, millis, releases, Candidate, Fate, Plan, PoolView, Rules, Running};
use crate::pool::Resources;
use crate::queue::Millis;

/// The reservations a pass has made so far.
enum Book {
    /// None yet: candidates start while they fit.
    Empty,
    /// One: `holder` from `at`, leaving `left` free at that time.
    One {
        holder: usize,
        at: Millis,
        end: Millis,
        left: Resources,
    },
    /// Several, planned on a profile: (holder, from, until) in the order they were made.
    Many {
        profile: Profile,
        reserved: Vec<(usize, Millis, Millis)>,
    },
}

/// Plans a backfill pass (see the planner's module documentation).
pub(super) fn plan(candidates: &[Candidate], pool: &PoolView, rules: &Rules, now: Millis) -> Plan {
    let mut fates = vec![Fate::Stay; candidates.len()];
    let most = rules.reservations.max(1);
    let mut free = pool.available;
    let mut started: Vec<Running> = Vec::new();
    let mut book = Book::Empty;
    for i in order(candidates, rules, now).take(rules.backfill_depth.max(1)) {
        let c = &candidates[i];
        let r = c.resources;
        let end = now.saturating_add(millis(c.timeout));
        let fits_now = r.fits_in(&free);
        if let Book::One {
            holder,
            at,
            end: until,
            left,
        } = book
        {
            let starts = fits_now && (end <= at || r.fits_in(&left));
            if !starts && most > 1 {
                // A second reservation: from here on, plan on the whole profile.
                let mut profile =
                    Profile::new(now, free, &releases(&pool.running, &started).to_vec());
                profile.reserve(&candidates[holder].resources, at, until);
                book = Book::Many {
                    profile,
                    reserved: vec![(holder, at, until)],
                };
            }
        }
        let fate = match &mut book {
            Book::Empty if fits_now => Fate::Start,
            Book::Empty => {
                match earliest(r, free, &releases(&pool.running, &started), now) {
                    Some((at, level)) => {
                        book = Book::One {
                            holder: i,
                            at,
                            end: at.saturating_add(millis(c.timeout)),
                            left: level.saturating_sub(&r),
                        };
                        Fate::Reserved { at }
                    }
                    None => {
                        // Nothing running frees enough: the view is incomplete, so nothing
                        // behind it can be shown not to delay it.
                        fates[i] = Fate::Blocked { at: None };
                        break;
                    }
                }
            }
            Book::One {
                holder, at, left, ..
            } => {
                if fits_now && (end <= *at || r.fits_in(left)) {
                    if end > *at {
                        *left = left.saturating_sub(&r);
                    }
                    Fate::Start
                } else if fits_now {
                    Fate::Held {
                        reservation: *holder,
                    }
                } else {
                    Fate::Waits
                }
            }
            Book::Many { profile, reserved } => match profile.fits(&r, now, end) {
                Ok(()) if fits_now => {
                    profile.start(&r, end);
                    Fate::Start
                }
                result => {
                    let duration = millis(c.timeout);
                    let slot = (reserved.len() < most)
                        .then(|| profile.earliest(&r, duration))
                        .flatten();
                    match (slot, result) {
                        (Some(at), _) => {
                            let until = at.saturating_add(duration);
                            profile.reserve(&r, at, until);
                            reserved.push((i, at, until));
                            Fate::Reserved { at }
                        }
                        (None, Err(t)) if fits_now => Fate::Held {
                            reservation: reserved
                                .iter()
                                .find(|(_, from, until)| *from <= t && t < *until)
                                .map_or(reserved[0].0, |(holder, _, _)| *holder),
                        },
                        _ => Fate::Waits,
                    }
                }
            },
        };
        if fate == Fate::Start {
            free = free.saturating_sub(&r);
            started.push(Running {
                resources: r,
                ends_by: end,
            });
        }
        fates[i] = fate;
    }
    Plan { fates }
}

/// The order the pass looks at the candidates in: the one that has waited past its level's
/// `max_wait` with the earliest deadline first, then the others as given.
fn order(candidates: &[Candidate], rules: &Rules, now: Millis) -> impl Iterator<Item = usize> {
    let deadline = |c: &Candidate| rules.deadline(c.priority, c.enqueued_at);
    let first = (0..candidates.len())
        .filter(|&i| deadline(&candidates[i]) <= now)
        .min_by_key(|&i| (deadline(&candidates[i]), i));
    first
        .into_iter()
        .chain((0..candidates.len()).filter(move |&i| Some(i) != first))
}

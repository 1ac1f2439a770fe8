//! The five priority levels: lower value dispatches first.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A priority level. The numeric values are those of Integr8sCode's `priority` field.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "i64")]
pub enum Priority {
    /// 0: dispatched before everything else.
    Critical,
    /// 1.
    High,
    /// 5: the default.
    #[default]
    Normal,
    /// 8.
    Low,
    /// 10: dispatched last; requeue never demotes below it.
    Background,
}

/// A priority value outside the five levels.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid priority {given}: expected one of \"critical\", \"high\", \"normal\", \"low\", \"background\" or 0, 1, 5, 8, 10")]
pub struct InvalidPriority {
    /// The value that was given, as written (a number, or a string in quotes).
    pub given: String,
}

/// How a priority is written on the wire (`wire.priority_format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityFormat {
    /// The level's name, `"normal"`: what Integr8sCode has validated since 2026-01-29.
    #[default]
    Name,
    /// The level's number, `5`: the older Integr8sCode releases.
    Number,
}

/// How many priority levels there are.
pub const LEVELS: usize = 5;

impl Priority {
    /// All levels in dispatch order.
    pub const ALL: [Priority; LEVELS] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
        Priority::Background,
    ];

    /// The wire value (0, 1, 5, 8 or 10).
    pub fn value(self) -> i64 {
        match self {
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 5,
            Priority::Low => 8,
            Priority::Background => 10,
        }
    }

    /// The level for a wire value, or a rejection naming the valid ones.
    pub fn from_value(value: i64) -> Result<Self, InvalidPriority> {
        match value {
            0 => Ok(Priority::Critical),
            1 => Ok(Priority::High),
            5 => Ok(Priority::Normal),
            8 => Ok(Priority::Low),
            10 => Ok(Priority::Background),
            _ => Err(InvalidPriority {
                given: value.to_string(),
            }),
        }
    }

    /// The level with this wire name (`"critical"` … `"background"`, any case), or a rejection
    /// naming the valid ones.
    pub fn from_name(name: &str) -> Result<Self, InvalidPriority> {
        Priority::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| InvalidPriority {
                given: format!("{name:?}"),
            })
    }

    /// Position of this level in dispatch order, 0..5.
    pub fn index(self) -> usize {
        self as usize
    }

    /// One level lower (dispatched later), never below `Background`.
    pub fn demoted(self) -> Self {
        Priority::ALL[(self.index() + 1).min(Priority::ALL.len() - 1)]
    }

    /// Lower-case name used in logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
            Priority::Background => "background",
        }
    }
}

impl TryFrom<i64> for Priority {
    type Error = InvalidPriority;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Priority::from_value(value)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        p.value()
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_order_matches_dispatch_order() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_value(p.value()), Ok(p));
        }
        let mut sorted = Priority::ALL;
        sorted.sort();
        assert_eq!(sorted, Priority::ALL);
        assert!(Priority::Critical < Priority::Background);
    }

    #[test]
    fn other_values_are_rejected_with_the_valid_set() {
        for v in [-1, 2, 3, 4, 6, 7, 9, 11, i64::MAX] {
            let err = Priority::from_value(v).unwrap_err();
            assert_eq!(err.given, v.to_string());
        }
        assert_eq!(
            Priority::from_value(3).unwrap_err().to_string(),
            "invalid priority 3: expected one of \"critical\", \"high\", \"normal\", \"low\", \"background\" or 0, 1, 5, 8, 10"
        );
    }

    #[test]
    fn names_round_trip_in_any_case_and_others_are_rejected_quoted() {
        for p in Priority::ALL {
            assert_eq!(Priority::from_name(p.name()), Ok(p));
            assert_eq!(Priority::from_name(&p.name().to_uppercase()), Ok(p));
        }
        for bad in ["urgent", "", "5", "norm al"] {
            let err = Priority::from_name(bad).unwrap_err();
            assert_eq!(err.given, format!("{bad:?}"));
        }
        assert!(Priority::from_name("urgent")
            .unwrap_err()
            .to_string()
            .starts_with("invalid priority \"urgent\": expected one of \"critical\""));
    }

    #[test]
    fn demotion_steps_one_level_and_stops_at_background() {
        assert_eq!(Priority::Critical.demoted(), Priority::High);
        assert_eq!(Priority::High.demoted(), Priority::Normal);
        assert_eq!(Priority::Normal.demoted(), Priority::Low);
        assert_eq!(Priority::Low.demoted(), Priority::Background);
        assert_eq!(Priority::Background.demoted(), Priority::Background);
    }
}

//! Months: the `YYYY-MM` a report covers, its window in UTC, and the month of an entry.

use std::fmt;
use std::str::FromStr;

/// A calendar month in UTC, written `YYYY-MM` (years 0001 to 9998).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: u16,
    month: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MonthError(String);

impl Month {
    pub fn new(year: u16, month: u8) -> Option<Month> {
        ((1..=9998).contains(&year) && (1..=12).contains(&month)).then_some(Month { year, month })
    }

    pub fn year(&self) -> u16 {
        self.year
    }

    /// 1 to 12.
    pub fn number(&self) -> u8 {
        self.month
    }

    /// The month before, if it is in range.
    pub fn previous(&self) -> Option<Month> {
        match self.month {
            1 => Month::new(self.year.checked_sub(1)?, 12),
            m => Month::new(self.year, m - 1),
        }
    }

    /// The month after (always exists: years stop at 9998).
    pub fn next(&self) -> Month {
        match self.month {
            12 => Month {
                year: self.year + 1,
                month: 1,
            },
            m => Month {
                year: self.year,
                month: m + 1,
            },
        }
    }

    /// Start of the window, inclusive: `YYYY-MM-01T00:00:00Z`.
    pub fn window_from(&self) -> String {
        format!("{self}-01T00:00:00Z")
    }

    /// End of the window, exclusive: the first instant of the next month.
    pub fn window_to(&self) -> String {
        self.next().window_from()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shape = || {
            MonthError(format!(
                "`{s}` is not a month: expected YYYY-MM, e.g. 2026-03"
            ))
        };
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' {
            return Err(shape());
        }
        let digits = |part: &[u8]| -> Option<u16> {
            part.iter().try_fold(0u16, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u16::from(d - b'0'))
            })
        };
        let (Some(year), Some(month)) = (digits(&b[..4]), digits(&b[5..])) else {
            return Err(shape());
        };
        if !(1..=12).contains(&month) {
            return Err(MonthError(format!(
                "`{s}`: month {month:02} does not exist (expected 01 to 12)"
            )));
        }
        if !(1..=9998).contains(&year) {
            return Err(MonthError(format!(
                "`{s}`: year {year:04} is out of range (0001 to 9998)"
            )));
        }
        Month::new(year, month as u8).ok_or_else(shape)
    }
}

/// The month of an entry: the first seven characters of its body's `occurred_at`, which the
/// writer always formats as RFC 3339 in UTC with six fractional digits
/// (`YYYY-MM-DDTHH:MM:SS.ffffffZ`). `None` for anything else.
pub fn entry_month(occurred_at: &str) -> Option<Month> {
    let b = occurred_at.as_bytes();
    let shape_ok = b.len() == 27
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            26 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return None;
    }
    occurred_at[..7].parse().ok()
}

//! Progress of long commands (issue 12, item 9): on a terminal, one line redrawn in place with
//! the count, the rate and, when the total is known, the percentage and the time left; when
//! stderr is not a terminal (a log, CI), a plain line every few seconds. Nothing on stdout,
//! which carries the command's result.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn, and how often a plain line is written.
const REDRAW: Duration = Duration::from_millis(200);
const PLAIN_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    what: &'static str,
    unit: &'static str,
    total: Option<u64>,
    tty: bool,
    started: Instant,
    shown: Option<Instant>,
    done: u64,
}

impl Progress {
    /// `what` is the task ("verifying"), `unit` what is counted ("entries").
    pub fn new(what: &'static str, unit: &'static str, total: Option<u64>) -> Progress {
        Progress {
            what,
            unit,
            total: total.filter(|t| *t > 0),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            shown: None,
            done: 0,
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total).filter(|t| *t > 0);
    }

    /// `done` units so far.
    pub fn update(&mut self, done: u64) {
        self.done = done;
        let every = if self.tty { REDRAW } else { PLAIN_EVERY };
        if self.shown.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.shown = Some(Instant::now());
        self.show(false);
    }

    /// The last line: the count and how long it took.
    pub fn finish(mut self, done: u64) {
        self.done = done;
        self.show(true);
    }

    /// [`Progress::finish`] at the count of the last update.
    pub fn end(self) {
        let done = self.done;
        self.finish(done);
    }

    fn show(&self, last: bool) {
        let line = render(
            self.what,
            self.unit,
            self.done,
            self.total,
            self.started.elapsed(),
            last,
        );
        let mut err = std::io::stderr().lock();
        let _ = if self.tty {
            write!(err, "\r\x1b[2K{line}{}", if last { "\n" } else { "" })
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

/// Progress over consecutive steps of one command (a report reads the log, then reads it again
/// to check what it signed): one line per step, finished when the next step begins.
#[derive(Default)]
pub struct Steps {
    current: Option<(&'static str, Progress)>,
}

impl Steps {
    /// `done` of `total` units of step `what` (a new step finishes the line of the last one).
    pub fn update(&mut self, what: &'static str, unit: &'static str, done: u64, total: u64) {
        if self.current.as_ref().is_some_and(|(w, _)| *w != what) {
            self.finish_step();
        }
        let (_, bar) = self
            .current
            .get_or_insert_with(|| (what, Progress::new(what, unit, Some(total))));
        bar.set_total(total);
        bar.update(done);
    }

    /// Finishes the last step's line.
    pub fn finish(mut self) {
        self.finish_step();
    }

    fn finish_step(&mut self) {
        if let Some((_, bar)) = self.current.take() {
            bar.end();
        }
    }
}

/// One progress line: `verifying: 120000/1000000 entries (12%), 40000/s, 22 s left`.
fn render(
    what: &str,
    unit: &str,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
    last: bool,
) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let count = match total {
        Some(t) => format!(
            "{done}/{t} {unit} ({}%)",
            (done * 100).checked_div(t).unwrap_or(0)
        ),
        None => format!("{done} {unit}"),
    };
    if last {
        return format!("{what}: {count} in {secs:.1} s");
    }
    let left = match total {
        Some(t) if rate > 0.0 && t > done => format!(", {:.0} s left", (t - done) as f64 / rate),
        _ => String::new(),
    };
    format!("{what}: {count}, {rate:.0}/s{left}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_the_count_the_rate_and_the_time_left() {
        assert_eq!(
            render(
                "verifying",
                "entries",
                250,
                Some(1000),
                Duration::from_secs(5),
                false
            ),
            "verifying: 250/1000 entries (25%), 50/s, 15 s left"
        );
        assert_eq!(
            render(
                "exporting",
                "entries",
                7,
                None,
                Duration::from_secs(1),
                false
            ),
            "exporting: 7 entries, 7/s"
        );
        assert_eq!(
            render(
                "exporting",
                "entries",
                1000,
                Some(1000),
                Duration::from_millis(2500),
                true
            ),
            "exporting: 1000/1000 entries (100%) in 2.5 s"
        );
    }
}

//! The monthly report as a PDF for people (control L6): a minimal PDF 1.4 written by hand —
//! a catalog, a page tree, A4 pages of text in the standard Type 1 fonts Helvetica,
//! Helvetica-Bold and Courier (which every reader has, so nothing is embedded), an information
//! dictionary, a cross-reference table with exact byte offsets, and the trailer.
//!
//! Page 1 answers "is anything wrong?": the environment, the verdict of the verification run
//! when the report was made (or exactly what failed), what failed or was refused, the month's
//! privileged changes and who made them, and how to re-verify. Hashes, proofs and the signature
//! are in the appendix, from page 2. Text is wrapped by the fonts' real glyph widths.
//!
//! The PDF carries the same facts as the JSON but is not signed; it says so, and names the
//! JSON file by its SHA-256 (also in the information dictionary as
//! `/PortcullisReportJsonSha256`).

use std::fmt::Write as _;

use portcullis_audit::report::{
    LogVerdict, Person, PrivilegedChange, ReportCheckpoint, SignedReport, Summary, VerdictStatus,
};
use serde_json::Value;

const PAGE_WIDTH: u32 = 595;
const PAGE_HEIGHT: u32 = 842;
const MARGIN: u32 = 56;
/// The text column's width in points.
const COLUMN: f32 = (PAGE_WIDTH - 2 * MARGIN) as f32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
    Mono,
}

impl Font {
    fn name(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
            Font::Mono => "F3",
        }
    }

    /// Advance width of `c` in thousandths of the font size (the fonts' AFM metrics; WinAnsi
    /// printable ASCII, anything else is drawn as `?`).
    fn glyph(self, c: char) -> u32 {
        const REGULAR: [u16; 95] = [
            278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556,
            556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667,
            667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722,
            667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500,
            556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278,
            556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
        ];
        const BOLD: [u16; 95] = [
            278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556,
            556, 556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722,
            722, 722, 722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722,
            667, 611, 722, 667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556,
            611, 556, 333, 611, 611, 278, 278, 556, 278, 889, 611, 611, 611, 611, 389, 556, 333,
            611, 556, 778, 556, 556, 500, 389, 280, 389, 584,
        ];
        let i = match c {
            ' '..='~' => c as usize - 32,
            _ => '?' as usize - 32,
        };
        match self {
            Font::Regular => u32::from(REGULAR[i]),
            Font::Bold => u32::from(BOLD[i]),
            Font::Mono => 600,
        }
    }

    /// Width of `text` at `size` points.
    fn width(self, text: &str, size: u32) -> f32 {
        let units: u32 = text.chars().map(|c| self.glyph(c)).sum();
        units as f32 * size as f32 / 1000.0
    }
}

/// A piece of text at a horizontal offset from the margin.
#[derive(Clone, Debug)]
struct Run {
    x: f32,
    font: Font,
    size: u32,
    /// Gray level, 0 black.
    gray: f32,
    text: String,
}

/// One line of the document.
#[derive(Clone, Debug, Default)]
struct Line {
    runs: Vec<Run>,
    /// Baseline-to-baseline advance, in points.
    height: u32,
    /// Extra space above, in points.
    gap: u32,
    /// A horizontal rule under the line.
    rule: bool,
}

#[derive(Clone, Debug)]
enum Item {
    Line(Line),
    /// Lines up to the matching [`Item::BoxEnd`] sit on a filled box of this colour.
    BoxStart([f32; 3]),
    BoxEnd,
    /// A table's header lines, repeated at the top of each page the table continues on, until
    /// [`Item::TableEnd`].
    TableStart(Vec<Line>),
    TableEnd,
    PageBreak,
}

/// Column layout of a table: offsets and widths in points.
#[derive(Clone, Copy)]
struct Col {
    x: f32,
    width: f32,
}

#[derive(Debug, Default)]
struct Doc {
    items: Vec<Item>,
}

impl Doc {
    fn line(&mut self, line: Line) {
        self.items.push(Item::Line(line));
    }

    /// `text` wrapped to the column at `indent`, each line `size + 4` high.
    fn para(&mut self, font: Font, size: u32, gray: f32, indent: f32, text: &str) {
        for piece in wrap(text, font, size, COLUMN - indent) {
            self.line(Line {
                runs: vec![Run {
                    x: indent,
                    font,
                    size,
                    gray,
                    text: piece,
                }],
                height: size + 4,
                ..Line::default()
            });
        }
    }

    fn text(&mut self, text: &str) {
        self.para(Font::Regular, 10, 0.0, 0.0, text);
    }

    fn note(&mut self, text: &str) {
        self.para(Font::Regular, 8, 0.35, 0.0, text);
    }

    fn mono(&mut self, indent: f32, text: &str) {
        self.para(Font::Mono, 8, 0.0, indent, text);
    }

    /// A command to type: Courier, wrapped with a continuation indent.
    fn command(&mut self, text: &str) {
        let pieces = wrap(text, Font::Mono, 8, COLUMN - 30.0);
        for (i, piece) in pieces.iter().enumerate() {
            self.mono(if i == 0 { 10.0 } else { 30.0 }, piece);
        }
    }

    fn heading(&mut self, text: &str) {
        self.line(Line {
            runs: vec![Run {
                x: 0.0,
                font: Font::Bold,
                size: 12,
                gray: 0.0,
                text: text.to_owned(),
            }],
            height: 17,
            gap: 9,
            rule: true,
        });
    }

    fn subheading(&mut self, text: &str) {
        self.line(Line {
            runs: vec![Run {
                x: 0.0,
                font: Font::Bold,
                size: 10,
                gray: 0.0,
                text: text.to_owned(),
            }],
            height: 14,
            gap: 6,
            rule: false,
        });
    }

    fn blank(&mut self, height: u32) {
        self.line(Line {
            height,
            ..Line::default()
        });
    }

    /// `label` in bold, then `value` wrapped beside it (hex too long for the column wraps in
    /// Courier under the label).
    fn field(&mut self, label: &str, value: &str) {
        let label_w = 170.0;
        let hex = value.len() > 40 && value.bytes().all(|b| b.is_ascii_hexdigit());
        let (font, size) = if hex {
            (Font::Mono, 8)
        } else {
            (Font::Regular, 10)
        };
        self.row(
            &[
                Col {
                    x: 0.0,
                    width: label_w - 8.0,
                },
                Col {
                    x: label_w,
                    width: COLUMN - label_w,
                },
            ],
            &[(Font::Bold, 9, label), (font, size, value)],
            0,
        );
    }

    /// A table row: each cell wrapped in its column; the row is as high as its tallest cell.
    fn row(&mut self, cols: &[Col], cells: &[(Font, u32, &str)], gap: u32) {
        let wrapped: Vec<Vec<String>> = cols
            .iter()
            .zip(cells)
            .map(|(col, (font, size, text))| wrap(text, *font, *size, col.width))
            .collect();
        let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        let height = cells.iter().map(|c| c.1).max().unwrap_or(10) + 4;
        for i in 0..lines {
            let runs = cols
                .iter()
                .zip(cells)
                .zip(&wrapped)
                .filter_map(|((col, (font, size, _)), w)| {
                    w.get(i).map(|t| Run {
                        x: col.x,
                        font: *font,
                        size: *size,
                        gray: 0.0,
                        text: t.clone(),
                    })
                })
                .collect();
            self.line(Line {
                runs,
                height,
                gap: if i == 0 { gap } else { 0 },
                rule: false,
            });
        }
    }

    /// A table: a bold header row with a rule under it, then the rows.
    fn table(&mut self, cols: &[Col], header: &[&str], rows: &[Vec<String>]) {
        let head: Vec<(Font, u32, &str)> = header.iter().map(|h| (Font::Bold, 9, *h)).collect();
        let at = self.items.len();
        self.row(cols, &head, 4);
        if let Some(Item::Line(l)) = self.items.last_mut() {
            l.rule = true;
        }
        let header_lines: Vec<Line> = self.items[at..]
            .iter()
            .filter_map(|i| match i {
                Item::Line(l) => Some(Line {
                    gap: 0,
                    ..l.clone()
                }),
                _ => None,
            })
            .collect();
        self.items.push(Item::TableStart(header_lines));
        for r in rows {
            let cells: Vec<(Font, u32, &str)> =
                r.iter().map(|c| (Font::Regular, 9, c.as_str())).collect();
            self.row(cols, &cells, 2);
        }
        self.items.push(Item::TableEnd);
    }
}

/// Wraps at spaces to lines at most `width` points wide; a word wider than that is cut.
fn wrap(text: &str, font: Font, size: u32, width: f32) -> Vec<String> {
    let fits = |s: &str| font.width(s, size) <= width;
    let mut out = vec![];
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_owned();
        while !fits(&word) {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let mut head = String::new();
            let mut rest = word.chars();
            for c in rest.by_ref() {
                head.push(c);
                if !fits(&head) {
                    head.pop();
                    break;
                }
            }
            if head.is_empty() {
                head = word.chars().take(1).collect();
            }
            word = word.chars().skip(head.chars().count()).collect();
            out.push(head);
        }
        let candidate = if line.is_empty() {
            word.clone()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && !fits(&candidate) {
            out.push(std::mem::take(&mut line));
            line = word;
        } else {
            line = candidate;
        }
    }
    out.push(line);
    out
}

/// A PDF literal string's content: `\`, `(` and `)` escaped; anything outside printable
/// ASCII (which the standard fonts' encoding would not render as written) becomes `?`.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '(' | ')' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn parse_utc(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC))
}

/// `1 March 2026, 00:00 UTC` (an unparsable value is shown as it is).
pub fn human_utc(text: &str) -> String {
    match parse_utc(text) {
        Some(t) => format!(
            "{} {} {}, {:02}:{:02} UTC",
            t.day(),
            MONTHS[usize::from(u8::from(t.month())) - 1],
            t.year(),
            t.hour(),
            t.minute()
        ),
        None => text.to_owned(),
    }
}

/// `2 Mar, 08:05` for a table of one month.
fn short_utc(text: &str) -> String {
    match parse_utc(text) {
        Some(t) => format!(
            "{} {}, {:02}:{:02}",
            t.day(),
            &MONTHS[usize::from(u8::from(t.month())) - 1][..3],
            t.hour(),
            t.minute()
        ),
        None => text.to_owned(),
    }
}

/// `March 2026` for `2026-03`.
fn month_name(month: &str) -> String {
    let parsed = month
        .split_once('-')
        .and_then(|(y, m)| Some((y, m.parse::<usize>().ok()?)))
        .and_then(|(y, m)| Some((y, *MONTHS.get(m.checked_sub(1)?)?)));
    match parsed {
        Some((y, m)) => format!("{m} {y}"),
        None => month.to_owned(),
    }
}

/// `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A JSON value in a sentence: a string as it is, anything else compactly.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k} {}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).map_or_else(|| "?".into(), value_text)
}

/// Who an actor or an identity is, as the report can say it.
fn who(summary: &Summary, kind: &str, id: Option<&str>) -> String {
    who_as(summary, kind, id, true)
}

/// [`who`], with the person's current role or without it (for the subject of a change, whose
/// role the change itself states).
fn who_as(summary: &Summary, kind: &str, id: Option<&str>, with_role: bool) -> String {
    let id = id.unwrap_or("-");
    match kind {
        "identity" => {
            let person: Option<&Person> = uuid::Uuid::parse_str(id)
                .ok()
                .and_then(|u| summary.people.get(&u));
            match person {
                Some(Person {
                    name: Some(name),
                    email,
                    role,
                    ..
                }) => {
                    let mut s = name.clone();
                    if let Some(e) = email {
                        let _ = write!(s, " <{e}>");
                    }
                    if let (Some(r), true) = (role, with_role) {
                        let _ = write!(s, ", {r}");
                    }
                    s
                }
                _ => format!("identity {id} (name not opened: no longer a member)"),
            }
        }
        "system" => "system (Portcullis CLI or a background job)".into(),
        "api_token" => format!("API token {id}"),
        "operator_token" => format!("operator token {id}"),
        "anonymous" => "anonymous (not signed in)".into(),
        other => format!("{other} {id}"),
    }
}

/// One privileged change as a sentence.
fn describe(summary: &Summary, c: &PrivilegedChange) -> String {
    let target = || who_as(summary, &c.target_type, c.target_id.as_deref(), false);
    let text = match c.action.as_str() {
        "member.role_changed" => format!(
            "Role of {} changed from {} to {}",
            target(),
            at(&c.before, "/role"),
            at(&c.after, "/role")
        ),
        "member.removed" => format!(
            "{} removed from the environment (was {})",
            target(),
            at(&c.before, "/role")
        ),
        "ownership.transferred" => format!("Ownership transferred: {}", value_text(&c.after)),
        "role.created" | "role.updated" | "role.deleted" => {
            let verb = c.action.trim_start_matches("role.");
            let def = if c.after.is_null() {
                &c.before
            } else {
                &c.after
            };
            format!("Custom role \"{}\" {verb}", at(def, "/name"))
        }
        "project.grant_set" => format!(
            "Project grant: {} gets {} on project {}",
            who_as(
                summary,
                "identity",
                c.after.pointer("/identity_id").and_then(Value::as_str),
                false
            ),
            at(&c.after, "/role"),
            c.target_id.as_deref().unwrap_or("?")
        ),
        "keys.rotated" => format!(
            "Data keys rotated to version {} ({})",
            at(&c.after, "/version"),
            at(&c.after, "/reason")
        ),
        "keys.retired" => format!(
            "Old data-key versions retired (oldest still readable: {})",
            at(&c.after, "/min_decrypt_version")
        ),
        "keys.kek_changed" => format!(
            "Key-encryption key changed from {} to {}",
            value_text(&c.before),
            value_text(&c.after)
        ),
        "keys.root_rotated" => format!(
            "Master key rotated from {} to {}",
            value_text(&c.before),
            value_text(&c.after)
        ),
        "audit.exported" => format!("Audit log exported as {}", at(&c.after, "/format")),
        "subject.erased" => format!("Personal data of {} erased", target()),
        "token.created" => format!(
            "API token \"{}\" created with role {}",
            at(&c.after, "/name"),
            at(&c.after, "/role")
        ),
        "environment.deleted" => "Environment deleted".into(),
        other => format!(
            "{other} on {} {}",
            c.target_type,
            c.target_id.as_deref().unwrap_or("")
        ),
    };
    if c.outcome == "success" {
        text
    } else {
        format!("{text} (outcome: {})", c.outcome)
    }
}

fn verdict_box(doc: &mut Doc, v: &LogVerdict) {
    let ok = v.status == VerdictStatus::Verified;
    doc.items.push(Item::BoxStart(if ok {
        [0.88, 0.96, 0.88]
    } else {
        [0.99, 0.87, 0.86]
    }));
    doc.line(Line {
        runs: vec![Run {
            x: 10.0,
            font: Font::Bold,
            size: 14,
            gray: 0.0,
            text: if ok {
                "VERIFIED: no anomalies found".into()
            } else {
                format!(
                    "FAILED: the audit log does not verify ({})",
                    plural(v.anomalies.len() as u64, "anomaly", "anomalies")
                )
            },
        }],
        height: 20,
        gap: 4,
        rule: false,
    });
    let indent = 10.0;
    let line = |doc: &mut Doc, text: &str| doc.para(Font::Regular, 10, 0.0, indent, text);
    if ok {
        line(
            doc,
            &format!(
                "Hash chain verified through entry {} of {} (the whole log when the report was made).",
                count(v.verified_through),
                count(v.log_size)
            ),
        );
    } else {
        line(
            doc,
            &format!(
                "Hash chain verified through entry {} of {}. What failed:",
                count(v.verified_through),
                count(v.log_size)
            ),
        );
        for a in &v.anomalies {
            let place = a
                .seq
                .map(|s| format!(" at entry {}", count(s)))
                .unwrap_or_default();
            doc.para(
                Font::Bold,
                10,
                0.0,
                indent + 10.0,
                &format!("- {}{place}: {}", a.kind, a.detail),
            );
        }
    }
    let tail = v.log_size.saturating_sub(v.covered_through);
    let checkpoints = plural(
        v.checkpoints_verified,
        "signed checkpoint",
        "signed checkpoints",
    );
    let coverage = if ok {
        match (v.covered_through, tail) {
                (0, _) => "; no checkpoint covers the log yet".to_owned(),
                (c, 0) => format!("; the latest covers entry {}, the end of the log", count(c)),
                (c, t) => format!(
                    "; the latest covers entry {} ({} after it are protected by the hash chain alone until the next checkpoint)",
                    count(c),
                    plural(t, "newer entry", "newer entries")
                ),
            }
    } else {
        " before verification stopped at the first failure".to_owned()
    };
    line(doc, &format!("{checkpoints} verified{coverage}."));
    line(
        doc,
        &match v.anchors.kind.as_str() {
            "s3_object_lock" => format!(
                "Checkpoints anchored write-once in S3 Object Lock (compliance mode): {}",
                v.anchors.location
            ),
            _ => format!(
                "Checkpoints anchored write-once in a local directory on the server: {} (an anchor on the database's host does not stop its administrator; use S3 Object Lock in production)",
                v.anchors.location
            ),
        },
    );
    if ok {
        line(doc, "0 anomalies.");
    }
    doc.blank(7);
    doc.items.push(Item::BoxEnd);
}

fn checkpoint(doc: &mut Doc, cp: &ReportCheckpoint) {
    doc.field("Entries covered", &count(cp.tree_size));
    doc.field("Merkle root", &cp.root_hash);
    doc.field("Chain head (last entry's hash)", &cp.head_hash);
    let issued = time::OffsetDateTime::from_unix_timestamp(cp.issued_at)
        .map(|t| human_utc(&super::utc_seconds(t)))
        .unwrap_or_default();
    doc.field("Issued", &format!("{issued} (unix time {})", cp.issued_at));
    doc.field("Signed by key", &cp.key_id);
}

fn first_page(doc: &mut Doc, report: &SignedReport, summary: &Summary, json_name: &str) {
    let b = &report.body;
    let v = &summary.verdict;
    let a = &summary.activity;

    doc.heading("This month");
    let n = |k: &str| a.by_outcome.get(k).copied().unwrap_or(0);
    let others: u64 = a
        .by_outcome
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "success" | "failure" | "denied"))
        .map(|(_, c)| c)
        .sum();
    let mut sentence = format!(
        "{} logged: {} succeeded, {} failed, {} refused",
        plural(b.entries.count, "entry", "entries"),
        count(n("success")),
        count(n("failure")),
        count(n("denied")),
    );
    if others > 0 {
        let _ = write!(sentence, ", {} with another outcome", count(others));
    }
    sentence.push('.');
    if a.denials_suppressed > 0 {
        let _ = write!(
            sentence,
            " A further {} were not logged one by one: the rate limit counts them in the next refusal's entry.",
            plural(a.denials_suppressed, "refusal", "refusals")
        );
    }
    doc.text(&sentence);

    doc.subheading("Failures and refusals");
    if a.not_successful.is_empty() {
        doc.text("None.");
    } else {
        let cols = [
            Col {
                x: 0.0,
                width: 250.0,
            },
            Col {
                x: 260.0,
                width: 100.0,
            },
            Col {
                x: 370.0,
                width: 80.0,
            },
        ];
        let rows: Vec<Vec<String>> = a
            .not_successful
            .iter()
            .flat_map(|(action, by)| {
                by.iter()
                    .map(move |(outcome, c)| vec![action.clone(), outcome.clone(), count(*c)])
            })
            .collect();
        doc.table(&cols, &["Action", "Outcome", "Entries"], &rows);
    }
    if !a.top_denied_actors.is_empty() {
        doc.subheading("Most refused callers");
        let cols = [
            Col {
                x: 0.0,
                width: 360.0,
            },
            Col {
                x: 370.0,
                width: 80.0,
            },
        ];
        let rows: Vec<Vec<String>> = a
            .top_denied_actors
            .iter()
            .map(|d| {
                let id = d.actor_id.map(|u| u.to_string());
                vec![who(summary, &d.actor_type, id.as_deref()), count(d.denials)]
            })
            .collect();
        doc.table(&cols, &["Caller", "Refusals"], &rows);
    }

    let changes = &summary.privileged.changes;
    doc.heading(&format!(
        "Privileged changes ({})",
        count(changes.len() as u64)
    ));
    if changes.is_empty() {
        doc.text(
            "None this month: no role, membership, key, export, erasure or admin-token change.",
        );
    } else {
        let cols = [
            Col {
                x: 0.0,
                width: 62.0,
            },
            Col {
                x: 66.0,
                width: 222.0,
            },
            Col {
                x: 294.0,
                width: COLUMN - 294.0,
            },
        ];
        let rows: Vec<Vec<String>> = changes
            .iter()
            .map(|c| {
                let actor = c.actor_id.map(|u| u.to_string());
                let failing = summary
                    .verdict
                    .anomalies
                    .iter()
                    .any(|a| a.seq == Some(c.seq));
                vec![
                    short_utc(&c.occurred_at),
                    format!(
                        "{} (entry {}{})",
                        describe(summary, c),
                        count(c.seq),
                        if failing {
                            ", which fails verification: as it reads now"
                        } else {
                            ""
                        }
                    ),
                    who(summary, &c.actor_type, actor.as_deref()),
                ]
            })
            .collect();
        doc.table(&cols, &["When (UTC)", "Change", "By"], &rows);
        let unopened = summary.people.values().any(|p| p.name.is_none());
        if unopened {
            doc.note("Names are opened from their sealed form when the report is made; a person who is no longer a member is shown by identity id.");
        }
    }

    doc.heading("Re-verify");
    doc.text(if v.status == VerdictStatus::Verified {
        "Anyone can check this report independently of the verdict above. On a node with access to the database:"
    } else {
        "Investigate before relying on this month's figures: the verification above failed. On a node with access to the database:"
    });
    let env = b.environment_id.hyphenated().to_string();
    doc.command(&format!("portcullis audit verify --environment {env}"));
    doc.command(&format!(
        "portcullis audit verify-report {json_name} --environment {env}"
    ));
    doc.text("Offline, with an export and the published keys (https://<host>/.well-known/portcullis/audit-keys.json):");
    doc.command(&format!(
        "portcullis audit export --environment {env} --format bundle --output audit.bundle.jsonl"
    ));
    doc.command(&format!(
        "portcullis audit verify-report {json_name} --bundle audit.bundle.jsonl --keys audit-keys.json"
    ));
    doc.note(&format!(
        "This PDF is a rendering for people and is not signed. The signed report is the JSON file {json_name}; its SHA-256 is in the appendix."
    ));
}

fn appendix(doc: &mut Doc, report: &SignedReport, json_name: &str, json_sha256: &str) {
    let b = &report.body;
    doc.items.push(Item::PageBreak);
    doc.line(Line {
        runs: vec![Run {
            x: 0.0,
            font: Font::Bold,
            size: 14,
            gray: 0.0,
            text: "Appendix: hashes, proofs and signature".into(),
        }],
        height: 20,
        ..Line::default()
    });
    doc.note("For an auditor or a verifier program; the same facts as the signed JSON file.");

    doc.heading("The signed file");
    doc.field("File", json_name);
    doc.field("SHA-256 of the file", json_sha256);
    doc.field("Format", &b.format);
    doc.field("Environment id", &b.environment_id.hyphenated().to_string());
    doc.field(
        "Window (UTC, end excluded)",
        &format!("{} to {}", b.window.from, b.window.to),
    );
    doc.field("Generated at", &b.generated_at);

    doc.heading("Entries in the window");
    doc.field("Entries", &count(b.entries.count));
    let seq = |s: Option<u64>| s.map_or("none (no entries this month)".into(), count);
    doc.field("First entry", &seq(b.entries.first_seq));
    doc.field("Last entry", &seq(b.entries.last_seq));
    doc.field(
        "Log size at the end of the month",
        &count(b.log_size_at_close),
    );
    doc.field(
        "SHA-256 of the window's canonical JSONL",
        &b.entries.jsonl_sha256,
    );

    doc.subheading("Entries by action");
    if b.counts_by_action.is_empty() {
        doc.text("No entries were logged this month.");
    } else {
        let cols = [
            Col {
                x: 0.0,
                width: 360.0,
            },
            Col {
                x: 370.0,
                width: 80.0,
            },
        ];
        let rows: Vec<Vec<String>> = b
            .counts_by_action
            .iter()
            .map(|(a, c)| vec![a.clone(), count(*c)])
            .collect();
        doc.table(&cols, &["Action", "Entries"], &rows);
    }

    doc.heading("Closing checkpoint");
    match &b.closing_checkpoint {
        Some(cp) => checkpoint(doc, cp),
        None if b.log_size_at_close == 0 => {
            doc.text("None: nothing had been logged by the end of the month.")
        }
        None => doc.text("None: no checkpoint covers the month, and none is cut over a log that does not verify."),
    }

    match &b.previous {
        Some(prev) => {
            doc.heading(&format!("Previous month ({})", month_name(&prev.month)));
            doc.field(
                "Log size at the end of that month",
                &count(prev.log_size_at_close),
            );
            doc.subheading("Its closing checkpoint");
            checkpoint(doc, &prev.checkpoint);
            doc.field(
                "Consistency proof to this month's closing checkpoint",
                &plural(prev.consistency_proof.len() as u64, "hash", "hashes"),
            );
            for h in &prev.consistency_proof {
                doc.mono(170.0, h);
            }
        }
        None => {
            doc.heading("Previous month");
            doc.text("None: nothing was logged before this month began.");
        }
    }

    if let Some(summary) = &b.summary {
        doc.heading("Privileged changes: the rules");
        doc.text("An entry is listed as a privileged change when its action is one of:");
        let rules: Vec<String> = summary
            .privileged
            .rules
            .iter()
            .map(|r| match &r.only_if {
                None => r.action.clone(),
                Some(c) => format!(
                    "{} when {} is {}",
                    r.action,
                    c.pointer,
                    c.any_of
                        .iter()
                        .map(value_text)
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            })
            .collect();
        doc.para(Font::Mono, 8, 0.0, 10.0, &rules.join(", "));
    }

    doc.heading("Signature");
    doc.field(
        "Algorithm",
        &format!(
            "{} over the canonical JSON of the report without its signature member",
            report.signature.algorithm
        ),
    );
    doc.field("Key id", &report.signature.key_id);
    doc.field("Signature", &report.signature.value);
}

fn document(report: &SignedReport, json_name: &str, json_sha256: &str) -> Doc {
    let b = &report.body;
    let mut doc = Doc::default();
    doc.line(Line {
        runs: vec![Run {
            x: 0.0,
            font: Font::Bold,
            size: 20,
            gray: 0.0,
            text: format!("Monthly audit report: {}", month_name(&b.month)),
        }],
        height: 24,
        ..Line::default()
    });
    let name = b
        .summary
        .as_ref()
        .and_then(|s| s.environment_name.clone())
        .unwrap_or_else(|| "(environment name not available)".into());
    doc.para(Font::Bold, 13, 0.0, 0.0, &name);
    doc.para(
        Font::Regular,
        9,
        0.35,
        0.0,
        &format!(
            "Environment {} - period {} to {} (end excluded) - generated {}",
            b.environment_id.hyphenated(),
            human_utc(&b.window.from),
            human_utc(&b.window.to),
            human_utc(&b.generated_at)
        ),
    );
    doc.blank(6);
    match &b.summary {
        Some(summary) => {
            verdict_box(&mut doc, &summary.verdict);
            first_page(&mut doc, report, summary, json_name);
        }
        None => doc.text(
            "This report is of format 1, which carries no verdict or summary: see the appendix, and run portcullis audit verify-report on the JSON file.",
        ),
    }
    appendix(&mut doc, report, json_name, json_sha256);
    doc
}

/// Draws `line` with its baseline at `y`.
fn draw(fg: &mut String, line: &Line, y: u32) {
    for run in &line.runs {
        if run.gray > 0.0 {
            let _ = writeln!(fg, "{:.2} g", run.gray);
        }
        let _ = writeln!(
            fg,
            "BT /{} {} Tf {:.1} {} Td ({}) Tj ET",
            run.font.name(),
            run.size,
            MARGIN as f32 + run.x,
            y,
            escape(&run.text)
        );
        if run.gray > 0.0 {
            let _ = writeln!(fg, "0 g");
        }
    }
    if line.rule {
        let _ = writeln!(
            fg,
            "0.6 G 0.5 w {} {} m {} {} l S 0 G",
            MARGIN,
            y - 4,
            PAGE_WIDTH - MARGIN,
            y - 4
        );
    }
}

/// Lays the document out on pages: the content stream of each.
fn layout(doc: &Doc, footer: &str) -> Vec<String> {
    let top = PAGE_HEIGHT - MARGIN;
    let bottom = MARGIN + 20;
    let mut pages: Vec<String> = vec![];
    let mut bg = String::new();
    let mut fg = String::new();
    let mut y = top;
    let mut box_top: Option<([f32; 3], u32)> = None;
    let mut repeat: Option<&Vec<Line>> = None;
    let flush_box = |bg: &mut String, from: u32, to: u32, fill: [f32; 3]| {
        let _ = writeln!(
            bg,
            "{:.2} {:.2} {:.2} rg {} {} {} {} re f 0 g",
            fill[0],
            fill[1],
            fill[2],
            MARGIN - 6,
            to,
            PAGE_WIDTH - 2 * MARGIN + 12,
            from.saturating_sub(to)
        );
    };
    for item in &doc.items {
        match item {
            Item::PageBreak => {
                pages.push(format!("{bg}{}", std::mem::take(&mut fg)));
                bg.clear();
                y = top;
            }
            Item::BoxStart(fill) => box_top = Some((*fill, y)),
            Item::BoxEnd => {
                if let Some((fill, from)) = box_top.take() {
                    flush_box(&mut bg, from, y, fill);
                }
            }
            Item::TableStart(header) => repeat = Some(header),
            Item::TableEnd => repeat = None,
            Item::Line(line) => {
                let advance = line.gap + line.height;
                if y < bottom + advance {
                    if let Some((fill, from)) = box_top {
                        flush_box(&mut bg, from, y, fill);
                        box_top = Some((fill, top));
                    }
                    pages.push(format!("{bg}{}", std::mem::take(&mut fg)));
                    bg.clear();
                    y = top;
                    for h in repeat.into_iter().flatten() {
                        y -= h.height;
                        draw(&mut fg, h, y);
                    }
                }
                y -= advance;
                draw(&mut fg, line, y);
            }
        }
    }
    pages.push(format!("{bg}{fg}"));
    let count = pages.len();
    pages
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let number = format!("Page {} of {count}", i + 1);
            let x = PAGE_WIDTH as f32 - MARGIN as f32 - Font::Regular.width(&number, 8);
            format!(
                "{body}0.35 g\nBT /F1 8 Tf {MARGIN} {} Td ({}) Tj ET\nBT /F1 8 Tf {x:.1} {} Td ({number}) Tj ET\n0 g\n",
                MARGIN - 20,
                escape(footer),
                MARGIN - 20,
            )
        })
        .collect()
}

/// The PDF bytes of `report`, naming the JSON file and its SHA-256.
pub fn render(report: &SignedReport, json_name: &str, json_sha256: &str) -> Vec<u8> {
    let doc = document(report, json_name, json_sha256);
    let name = report
        .body
        .summary
        .as_ref()
        .and_then(|s| s.environment_name.clone())
        .unwrap_or_else(|| report.body.environment_id.hyphenated().to_string());
    let footer = format!(
        "Portcullis monthly audit report - {name} - {} - the signed JSON file is authoritative",
        month_name(&report.body.month)
    );
    let pages = layout(&doc, &truncate_to(&footer, Font::Regular, 8, COLUMN - 70.0));
    let count = pages.len();

    // Objects: 1 catalog, 2 page tree, 3 to 5 fonts, 6 info, then a page and its content
    // stream per page.
    let page_id = |i: usize| 7 + 2 * i;
    let kids: Vec<String> = (0..count).map(|i| format!("{} 0 R", page_id(i))).collect();
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {count} >>",
            kids.join(" ")
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Courier /Encoding /WinAnsiEncoding >>"
            .to_vec(),
        format!(
            "<< /Title ({}) /Producer (Portcullis) /Subject ({}) /PortcullisReportJsonSha256 ({}) >>",
            escape(&format!(
                "Audit report {} {}",
                report.body.environment_id.hyphenated(),
                report.body.month
            )),
            escape(&format!(
                "Rendering of the signed JSON report {json_name}, SHA-256 {json_sha256}"
            )),
            escape(json_sha256)
        )
        .into_bytes(),
    ];
    for (i, stream) in pages.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R /F3 5 0 R >> >> /Contents {} 0 R >>",
                page_id(i) + 1
            )
            .into_bytes(),
        );
        let mut obj = format!("<< /Length {} >>\nstream\n", stream.len()).into_bytes();
        obj.extend_from_slice(stream.as_bytes());
        obj.extend_from_slice(b"\nendstream");
        objects.push(obj);
    }

    // The binary comment on line 2 tells transfer tools the file is not text.
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, obj) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(obj);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    let size = objects.len() + 1;
    let mut table = format!("xref\n0 {size}\n0000000000 65535 f \n");
    for offset in offsets {
        // Each entry is exactly 20 bytes, ending in space + newline.
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let _ = write!(
        table,
        "trailer\n<< /Size {size} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    );
    out.extend_from_slice(table.as_bytes());
    out
}

/// `text`, cut with `...` to fit `width` points.
fn truncate_to(text: &str, font: Font, size: u32, width: f32) -> String {
    if font.width(text, size) <= width {
        return text.to_owned();
    }
    let mut t = String::new();
    for c in text.chars() {
        t.push(c);
        if font.width(&format!("{t}..."), size) > width {
            t.pop();
            break;
        }
    }
    t.push_str("...");
    t
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use portcullis_audit::checkpoint::{Checkpoint, SigningKey};
    use portcullis_audit::report::{
        default_rules, Activity, AnchorPlace, Anomaly, DeniedActor, LogVerdict, PreviousMonth,
        Privileged, ReportBody, Window, WindowEntries,
    };
    use serde_json::json;

    fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    }

    fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).rposition(|w| w == needle)
    }

    /// Checks the structure a PDF reader relies on and returns the page count and every page's
    /// content stream: the header, the xref table's offsets (each must point at `N 0 obj`),
    /// the trailer, `startxref`, `%%EOF`, and each stream's `/Length`.
    pub(crate) fn check_structure(pdf: &[u8]) -> (usize, Vec<String>) {
        assert!(pdf.starts_with(b"%PDF-1.4\n"), "header");
        assert!(pdf.ends_with(b"%%EOF\n"), "trailer end");
        let sx = rfind(pdf, b"startxref\n").expect("startxref");
        let rest = std::str::from_utf8(&pdf[sx + 10..]).unwrap();
        let xref: usize = rest.lines().next().unwrap().parse().unwrap();
        assert_eq!(
            &pdf[xref..xref + 5],
            b"xref\n",
            "startxref points at the table"
        );
        let table = std::str::from_utf8(&pdf[xref..sx]).unwrap();
        let mut lines = table.lines();
        assert_eq!(lines.next(), Some("xref"));
        let (first, n) = lines.next().unwrap().split_once(' ').unwrap();
        assert_eq!(first, "0");
        let n: usize = n.parse().unwrap();
        // Entries are 20 bytes each, so the table's length is fixed by its size.
        let entries_at = xref + "xref\n".len() + format!("0 {n}\n").len();
        assert_eq!(&pdf[entries_at..entries_at + 20], b"0000000000 65535 f \n");
        for i in 1..n {
            let entry = &pdf[entries_at + 20 * i..entries_at + 20 * (i + 1)];
            let entry = std::str::from_utf8(entry).unwrap();
            assert!(entry.ends_with(" 00000 n \n"), "entry {i}: {entry:?}");
            let offset: usize = entry[..10].parse().unwrap();
            let expected = format!("{i} 0 obj\n");
            assert_eq!(
                &pdf[offset..offset + expected.len()],
                expected.as_bytes(),
                "object {i} offset"
            );
        }
        let trailer = &table[table.find("trailer").expect("trailer")..];
        assert!(trailer.contains(&format!("/Size {n} ")), "{trailer}");
        assert!(trailer.contains("/Root 1 0 R"), "{trailer}");
        let catalog_at = find(pdf, b"1 0 obj\n", 0).unwrap();
        assert!(pdf[catalog_at..].starts_with(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>"));

        // Streams: /Length is the byte count between `stream\n` and `\nendstream`.
        let mut streams = vec![];
        let mut at = 0;
        while let Some(s) = find(pdf, b"stream\n", at) {
            if pdf[..s].ends_with(b"end") {
                at = s + 1;
                continue;
            }
            let dict_start = rfind(&pdf[..s], b"/Length ").unwrap();
            let len: usize = std::str::from_utf8(&pdf[dict_start + 8..s])
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let body = &pdf[s + 7..s + 7 + len];
            assert!(
                pdf[s + 7 + len..].starts_with(b"\nendstream"),
                "stream length"
            );
            streams.push(String::from_utf8(body.to_vec()).unwrap());
            at = s + 7 + len;
        }
        let text = String::from_utf8_lossy(pdf);
        let count: usize = text
            .split("/Type /Pages /Kids [")
            .nth(1)
            .and_then(|r| r.split("/Count ").nth(1))
            .and_then(|r| r.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(text.matches("/Type /Page ").count(), count);
        assert_eq!(streams.len(), count);
        (count, streams)
    }

    fn summary(env: uuid::Uuid, actions: usize, failed: bool) -> Summary {
        let ada = uuid::Uuid::parse_str("0190f3c4-0000-7000-8000-00000000000a").unwrap();
        let bob = uuid::Uuid::parse_str("0190f3c4-0000-7000-8000-00000000000b").unwrap();
        let gone = uuid::Uuid::parse_str("0190f3c4-0000-7000-8000-00000000000c").unwrap();
        let change = |seq: u64,
                      action: &str,
                      actor: uuid::Uuid,
                      target: Option<&str>,
                      before: Value,
                      after: Value| {
            PrivilegedChange {
                seq,
                occurred_at: format!("2026-03-{:02}T14:05:00.000000Z", 1 + seq % 28),
                action: action.into(),
                outcome: "success".into(),
                actor_type: "identity".into(),
                actor_id: Some(actor),
                target_type: if action.starts_with("member.") {
                    "identity".into()
                } else {
                    "keyring".into()
                },
                target_id: target.map(str::to_owned),
                before,
                after,
            }
        };
        let mut changes = vec![
            change(
                11,
                "member.role_changed",
                ada,
                Some(&bob.to_string()),
                json!({"role": "admin"}),
                json!({"role": "viewer"}),
            ),
            change(
                12,
                "keys.rotated",
                ada,
                Some(&env.to_string()),
                Value::Null,
                json!({"version": 2, "reason": "requested"}),
            ),
            change(
                13,
                "audit.exported",
                gone,
                Some(&env.to_string()),
                Value::Null,
                json!({"format": "bundle"}),
            ),
        ];
        for i in 0..actions {
            changes.push(change(
                100 + i as u64,
                "keys.rotated",
                ada,
                None,
                Value::Null,
                json!({"version": i, "reason": "scheduled"}),
            ));
        }
        let mut people = std::collections::BTreeMap::new();
        people.insert(
            ada,
            Person {
                name: Some("Ada Lovelace".into()),
                email: Some("ada@example.com".into()),
                role: Some("owner".into()),
                note: None,
            },
        );
        people.insert(
            bob,
            Person {
                name: Some("Bob (Robert) Tables".into()),
                email: Some("bob@example.com".into()),
                role: Some("viewer".into()),
                note: None,
            },
        );
        people.insert(
            gone,
            Person {
                name: None,
                email: None,
                role: None,
                note: Some("no longer a member".into()),
            },
        );
        let mut not_successful = std::collections::BTreeMap::new();
        not_successful.insert(
            "authorization.denied".to_owned(),
            [("denied".to_owned(), 7)].into_iter().collect(),
        );
        not_successful.insert(
            "auth.login_failed".to_owned(),
            [("failure".to_owned(), 2)].into_iter().collect(),
        );
        Summary {
            environment_name: Some("Acme Robotics (production)".into()),
            verdict: LogVerdict {
                status: if failed {
                    VerdictStatus::Failed
                } else {
                    VerdictStatus::Verified
                },
                log_size: 10_050,
                verified_through: if failed { 5 } else { 10_050 },
                checkpoints_verified: 11,
                covered_through: 10_000,
                anchors: AnchorPlace {
                    kind: "s3_object_lock".into(),
                    location: "s3://acme-audit-anchors/portcullis/".into(),
                },
                anomalies: if failed {
                    vec![Anomaly { kind: "Changed".into(), seq: Some(6), detail: "the entry's content does not hash to its stored entry_hash: it was edited after it was written".into() }]
                } else {
                    vec![]
                },
            },
            activity: Activity {
                by_outcome: [
                    ("success".to_owned(), 90),
                    ("failure".to_owned(), 2),
                    ("denied".to_owned(), 7),
                ]
                .into_iter()
                .collect(),
                not_successful,
                denials_suppressed: 30,
                top_denied_actors: vec![DeniedActor {
                    actor_type: "identity".into(),
                    actor_id: Some(bob),
                    denials: 7,
                }],
            },
            privileged: Privileged {
                rules: default_rules(),
                changes,
            },
            people,
        }
    }

    pub(crate) fn sample_report(actions: usize) -> SignedReport {
        sample_report_with(actions, false)
    }

    pub(crate) fn sample_report_with(actions: usize, failed: bool) -> SignedReport {
        let key = SigningKey::from_seed(&[9; 32]).unwrap();
        let env = uuid::Uuid::parse_str("0190f3c4-5b6a-7d8e-9f01-23456789abcd").unwrap();
        let cp = |size: u64| {
            ReportCheckpoint::from_signed(&key.sign(&Checkpoint {
                environment_id: env,
                tree_size: size,
                root_hash: [size as u8; 32],
                last_entry_hash: [0xee; 32],
                issued_at: 1_780_000_000,
            }))
        };
        let mut counts = std::collections::BTreeMap::new();
        for i in 0..actions {
            counts.insert(format!("action.number_{i:04}"), 1 + i as u64);
        }
        counts.insert(r"odd(name)\with) parens".into(), 1);
        ReportBody {
            format: portcullis_audit::report::REPORT_FORMAT.into(),
            environment_id: env,
            month: "2026-03".into(),
            window: Window {
                from: "2026-03-01T00:00:00Z".into(),
                to: "2026-04-01T00:00:00Z".into(),
            },
            entries: WindowEntries {
                count: counts.values().sum(),
                first_seq: Some(10),
                last_seq: Some(10_000),
                jsonl_sha256: "ab".repeat(32),
            },
            counts_by_action: counts,
            log_size_at_close: 10_000,
            closing_checkpoint: Some(cp(10_000)),
            previous: Some(PreviousMonth {
                month: "2026-02".into(),
                log_size_at_close: 9,
                checkpoint: cp(9),
                consistency_proof: vec!["cd".repeat(32), "ef".repeat(32)],
            }),
            generated_at: "2026-04-02T03:04:05Z".into(),
            summary: Some(summary(env, actions.min(40), failed)),
        }
        .sign(&key)
        .unwrap()
    }

    /// The text shown on each page (the strings of its `Tj` operators, unescaped), one string
    /// per drawn line.
    pub(crate) fn page_texts(streams: &[String]) -> Vec<Vec<String>> {
        streams
            .iter()
            .map(|s| {
                s.lines()
                    .filter_map(|l| {
                        let start = l.find(" Td (")? + 5;
                        let end = l.rfind(") Tj ET")?;
                        Some(
                            l[start..end]
                                .replace("\\(", "(")
                                .replace("\\)", ")")
                                .replace("\\\\", "\\"),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// Control L6: the PDF is structurally valid and carries the report's facts; page 1 reads
    /// for a person and the hashes are in the appendix.
    #[test]
    fn l6_pdf_is_well_formed_and_states_the_facts() {
        let report = sample_report(3);
        let sha = "12".repeat(32);
        let pdf = render(&report, "x.report.json", &sha);
        let (pages, streams) = check_structure(&pdf);
        assert!((2..=4).contains(&pages), "{pages} pages");
        let texts = page_texts(&streams);
        let first = texts[0].join(" ");
        for fact in [
            "Monthly audit report: March 2026",
            "Acme Robotics (production)",
            "period 1 March 2026, 00:00 UTC to 1 April 2026, 00:00 UTC",
            "generated 2 April 2026, 03:04 UTC",
            "VERIFIED: no anomalies found",
            "Hash chain verified through entry 10,050 of 10,050",
            "11 signed checkpoints verified; the latest covers entry 10,000 (50 newer entries",
            "S3 Object Lock (compliance mode): s3://acme-audit-anchors/portcullis/",
            "0 anomalies.",
            "refused",
            "authorization.denied",
            "Bob (Robert) Tables <bob@example.com>, viewer",
            "Privileged changes (6)",
            "Role of Bob (Robert) Tables",
            "changed from admin to viewer",
            "Data keys rotated to version 2 (requested)",
            "Audit log exported as bundle",
            "Ada Lovelace <ada@example.com>, owner",
            "(name not opened: no longer a member)",
            "portcullis audit verify --environment 0190f3c4-5b6a-7d8e-9f01-23456789abcd",
            "portcullis audit verify-report x.report.json --bundle audit.bundle.jsonl --keys",
            "Page 1 of",
        ] {
            assert!(first.contains(fact), "page 1 lacks {fact:?}:\n{first}");
        }
        // Hashes and the signature are not on page 1.
        assert!(!first.contains(&"ab".repeat(32)), "{first}");
        assert!(!first.contains(&report.signature.value[..32]));
        let rest = texts[1..].concat().join(" ");
        for fact in [
            "Appendix: hashes, proofs and signature",
            "2026-03-01T00:00:00Z to 2026-04-01T00:00:00Z",
            &"ab".repeat(32),
            &report.body.closing_checkpoint.as_ref().unwrap().root_hash,
            &report.body.previous.as_ref().unwrap().checkpoint.root_hash,
            &report.signature.key_id,
            &sha,
            "x.report.json",
            "action.number_0002",
            r"odd(name)\with) parens",
            "token.created when /after/role is owner or admin",
        ] {
            let flat = rest.replace('\n', "");
            assert!(
                rest.contains(fact) || flat.contains(fact),
                "appendix lacks {fact}"
            );
        }
        let all = streams.join("");
        assert!(
            String::from_utf8_lossy(&pdf).contains(&format!("/PortcullisReportJsonSha256 ({sha})"))
        );
        // No unescaped parenthesis from the odd action name.
        assert!(!all.contains("odd(name") && all.contains(r"odd\(name\)\\with\) parens"));
    }

    /// Control L3/L6: a report whose verification failed says so on page 1, with what failed
    /// and where, and never says verified.
    #[test]
    fn l3_l6_pdf_of_a_failed_verdict_says_what_failed_on_page_one() {
        let report = sample_report_with(0, true);
        let pdf = render(&report, "x.report.json", &"00".repeat(32));
        let (_, streams) = check_structure(&pdf);
        let first = page_texts(&streams)[0].join(" ");
        assert!(
            first.contains("FAILED: the audit log does not verify (1 anomaly)"),
            "{first}"
        );
        assert!(
            first.contains("- Changed at entry 6: the entry's content does not hash"),
            "{first}"
        );
        assert!(
            first.contains("Hash chain verified through entry 5 of 10,050"),
            "{first}"
        );
        assert!(first.contains("Investigate before relying"), "{first}");
        assert!(
            !first.contains("VERIFIED") && !first.contains("0 anomalies"),
            "{first}"
        );
        // The box behind the verdict is red, not green.
        assert!(streams[0].contains("0.99 0.87 0.86 rg"));
        assert!(!streams[0].contains("0.88 0.96 0.88 rg"));
    }

    /// Control L6: long lists flow onto further pages, every row kept, every line inside the
    /// margins, each page numbered.
    #[test]
    fn l6_pdf_paginates_long_action_lists() {
        let report = sample_report(300);
        let pdf = render(&report, "x.report.json", &"00".repeat(32));
        let (pages, streams) = check_structure(&pdf);
        assert!(pages >= 5, "{pages} pages");
        let all = streams.join("");
        for i in 0..300 {
            assert!(all.contains(&format!("(action.number_{i:04})")), "row {i}");
        }
        for (i, s) in streams.iter().enumerate() {
            assert!(
                s.contains(&format!("(Page {} of {pages})", i + 1)),
                "page {i}"
            );
            // A table continued on this page repeats its header first.
            if s.contains("(action.number_") {
                let header = s.find("(Action) Tj").expect("the header on every page");
                assert!(header < s.find("(action.number_").unwrap(), "page {i}");
            }
        }
        for s in &streams {
            for line in s
                .lines()
                .filter(|l| l.starts_with("BT /F") && !l.contains(" 8 Tf 56 36 "))
            {
                let parts: Vec<&str> = line.split(' ').collect();
                let (font, size) = (parts[1], parts[2].parse::<u32>().unwrap());
                let x: f32 = parts[4].parse().unwrap();
                let y: u32 = parts[5].parse().unwrap();
                if y == MARGIN - 20 {
                    continue; // the footer
                }
                assert!(y >= MARGIN + 20, "{line}");
                let text = &line[line.find(" Td (").unwrap() + 5..line.rfind(") Tj ET").unwrap()];
                let font = match font {
                    "/F1" => Font::Regular,
                    "/F2" => Font::Bold,
                    _ => Font::Mono,
                };
                let unescaped = text
                    .replace("\\(", "(")
                    .replace("\\)", ")")
                    .replace("\\\\", "\\");
                let right = x + font.width(&unescaped, size);
                assert!(
                    right <= (PAGE_WIDTH - MARGIN) as f32 + 0.5,
                    "overflows: {line}"
                );
            }
        }
        // A second opinion where qpdf happens to be installed (CI does not need it).
        let path = std::env::temp_dir().join(format!("pc-report-{}.pdf", std::process::id()));
        std::fs::write(&path, &pdf).unwrap();
        if let Ok(out) = std::process::Command::new("qpdf")
            .arg("--check")
            .arg(&path)
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn l6_pdf_strings_are_escaped_and_wrapped() {
        assert_eq!(escape(r"a(b)c\d"), r"a\(b\)c\\d");
        assert_eq!(escape("caf\u{e9} \u{2014}"), "caf? ?");
        let lines = wrap(&"word ".repeat(50), Font::Regular, 10, 100.0);
        assert!(lines.len() > 5);
        assert!(
            lines.iter().all(|l| Font::Regular.width(l, 10) <= 100.0),
            "{lines:?}"
        );
        let long = wrap(&"x".repeat(50), Font::Mono, 10, 60.0);
        assert_eq!(long.len(), 5, "{long:?}");
        assert!(long.iter().all(|l| l.len() == 10));
        // Wider glyphs wrap sooner: W is wider than i in Helvetica.
        assert!(
            wrap(&"W".repeat(40), Font::Bold, 10, 100.0).len()
                > wrap(&"i".repeat(40), Font::Bold, 10, 100.0).len()
        );
    }

    /// Writes the sample PDFs to `target/report-samples/` (to look at them:
    /// `cargo test -p portcullis-service --lib write_sample_pdfs -- --ignored`).
    #[test]
    #[ignore]
    fn write_sample_pdfs() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/report-samples");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, report) in [
            ("verified", sample_report(3)),
            ("failed", sample_report_with(0, true)),
            ("long", sample_report(60)),
        ] {
            std::fs::write(
                dir.join(format!("{name}.pdf")),
                render(&report, "x.report.json", &"12".repeat(32)),
            )
            .unwrap();
        }
    }

    #[test]
    fn l6_dates_and_numbers_read_as_words() {
        assert_eq!(human_utc("2026-03-01T00:00:00Z"), "1 March 2026, 00:00 UTC");
        assert_eq!(
            human_utc("2026-12-31T23:59:59.999999Z"),
            "31 December 2026, 23:59 UTC"
        );
        assert_eq!(human_utc("not a date"), "not a date");
        assert_eq!(short_utc("2026-03-02T08:05:00.000000Z"), "2 Mar, 08:05");
        assert_eq!(month_name("2026-03"), "March 2026");
        assert_eq!(month_name("2026-13"), "2026-13");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}

//! The monthly report as a PDF for people (control L6): a minimal PDF 1.4 written by hand —
//! a catalog, a page tree, A4 pages of text in the standard Type 1 fonts Helvetica and
//! Helvetica-Bold (which every reader has, so nothing is embedded), an information dictionary,
//! a cross-reference table with exact byte offsets, and the trailer.
//!
//! The PDF carries the same facts as the JSON but is not signed; it says so, and names the
//! JSON file by its SHA-256 (also in the information dictionary as
//! `/PortcullisReportJsonSha256`).

use std::fmt::Write as _;

use portcullis_audit::report::{ReportCheckpoint, SignedReport};

const PAGE_WIDTH: u32 = 595;
const PAGE_HEIGHT: u32 = 842;
const MARGIN: u32 = 56;
/// Characters per wrapped line at 10 pt (Helvetica averages about half an em).
const WRAP: usize = 92;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Font {
    Regular,
    Bold,
}

impl Font {
    fn name(self) -> &'static str {
        match self {
            Font::Regular => "F1",
            Font::Bold => "F2",
        }
    }
}

/// One line of the document: pieces of text at horizontal offsets.
#[derive(Clone, Debug)]
struct Line {
    font: Font,
    size: u32,
    cells: Vec<(u32, String)>,
    /// Extra space above, in points.
    gap: u32,
}

#[derive(Debug, Default)]
struct Doc {
    lines: Vec<Line>,
}

impl Doc {
    fn heading(&mut self, text: &str) {
        self.lines.push(Line {
            font: Font::Bold,
            size: 12,
            cells: vec![(0, text.to_owned())],
            gap: 10,
        });
    }

    fn text(&mut self, text: &str) {
        for piece in wrap(text, WRAP) {
            self.lines.push(Line {
                font: Font::Regular,
                size: 10,
                cells: vec![(0, piece)],
                gap: 0,
            });
        }
    }

    /// `label: value`, with hex too long for one line split in halves under the label.
    fn field(&mut self, label: &str, value: &str) {
        if value.len() > 64 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.text(&format!("{label}:"));
            for chunk in value.as_bytes().chunks(64) {
                self.text(&format!("    {}", String::from_utf8_lossy(chunk)));
            }
        } else {
            self.text(&format!("{label}: {value}"));
        }
    }

    fn row(&mut self, font: Font, left: &str, right: &str) {
        self.lines.push(Line {
            font,
            size: 10,
            cells: vec![(0, truncate(left, 80)), (400, right.to_owned())],
            gap: 0,
        });
    }

    fn blank(&mut self) {
        self.lines.push(Line {
            font: Font::Regular,
            size: 10,
            cells: vec![],
            gap: 0,
        });
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 3).collect();
        t.push_str("...");
        t
    }
}

/// Wraps at spaces to at most `width` characters; longer words are cut.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut out = vec![];
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word = word.to_owned();
        while word.chars().count() > width {
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            let head: String = word.chars().take(width).collect();
            word = word.chars().skip(width).collect();
            out.push(head);
        }
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&word);
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

fn checkpoint(doc: &mut Doc, cp: &ReportCheckpoint) {
    doc.field("Tree size (entries covered)", &cp.tree_size.to_string());
    doc.field("Merkle root", &cp.root_hash);
    doc.field("Chain head (hash of the last covered entry)", &cp.head_hash);
    doc.field("Issued at (unix seconds)", &cp.issued_at.to_string());
    doc.field("Signed by key", &cp.key_id);
}

fn document(report: &SignedReport, json_name: &str, json_sha256: &str) -> Doc {
    let b = &report.body;
    let mut doc = Doc::default();
    doc.lines.push(Line {
        font: Font::Bold,
        size: 16,
        cells: vec![(0, "Portcullis monthly audit report".into())],
        gap: 0,
    });
    doc.blank();
    doc.field("Environment", &b.environment_id.hyphenated().to_string());
    doc.field("Month", &b.month);
    doc.field(
        "Window (UTC, end exclusive)",
        &format!("{} to {}", b.window.from, b.window.to),
    );
    doc.field("Generated at", &b.generated_at);
    doc.field("Format", &b.format);
    doc.blank();
    doc.text(&format!(
        "This PDF is a rendering for people. The authoritative, signed artifact is the JSON file {json_name}; \
         its SHA-256 is given below. Check it with: portcullis audit verify-report {json_name} \
         --bundle <export bundle> --keys <audit-keys.json>"
    ));
    doc.field("SHA-256 of the JSON file", json_sha256);

    doc.heading("Entries in the window");
    doc.field("Entries", &b.entries.count.to_string());
    let seq = |s: Option<u64>| s.map_or("none (no entries this month)".into(), |s| s.to_string());
    doc.field("First seq", &seq(b.entries.first_seq));
    doc.field("Last seq", &seq(b.entries.last_seq));
    doc.field(
        "Log size at the end of the month",
        &b.log_size_at_close.to_string(),
    );
    doc.field(
        "SHA-256 of the window's canonical JSONL",
        &b.entries.jsonl_sha256,
    );

    doc.heading("Entries by action");
    if b.counts_by_action.is_empty() {
        doc.text("No entries were logged this month.");
    } else {
        doc.row(Font::Bold, "action", "entries");
        for (action, count) in &b.counts_by_action {
            doc.row(Font::Regular, action, &count.to_string());
        }
    }

    doc.heading("Closing checkpoint");
    match &b.closing_checkpoint {
        Some(cp) => checkpoint(&mut doc, cp),
        None => doc.text("None: nothing had been logged by the end of the month."),
    }

    match &b.previous {
        Some(prev) => {
            doc.heading(&format!("Previous month ({})", prev.month));
            doc.field(
                "Log size at the end of that month",
                &prev.log_size_at_close.to_string(),
            );
            doc.text("Its closing checkpoint:");
            checkpoint(&mut doc, &prev.checkpoint);
            doc.field(
                "Consistency proof to this month's closing checkpoint",
                &format!("{} hashes", prev.consistency_proof.len()),
            );
            for h in &prev.consistency_proof {
                doc.text(&format!("    {h}"));
            }
        }
        None => {
            doc.heading("Previous month");
            doc.text("None: nothing was logged before this month began.");
        }
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
    doc
}

/// The PDF bytes of `report`, naming the JSON file and its SHA-256.
pub fn render(report: &SignedReport, json_name: &str, json_sha256: &str) -> Vec<u8> {
    let doc = document(report, json_name, json_sha256);
    let footer = format!(
        "Portcullis audit report {} {} - the signed JSON file is authoritative",
        report.body.environment_id.hyphenated(),
        report.body.month
    );

    // Lay lines out on pages.
    let top = PAGE_HEIGHT - MARGIN;
    let bottom = MARGIN + 20;
    let mut pages: Vec<String> = vec![];
    let mut content = String::new();
    let mut y = top;
    for line in &doc.lines {
        let advance = line.gap + line.size + 4;
        if y < bottom + advance {
            pages.push(std::mem::take(&mut content));
            y = top;
        }
        y -= advance;
        for (x, text) in &line.cells {
            let _ = writeln!(
                content,
                "BT /{} {} Tf {} {} Td ({}) Tj ET",
                line.font.name(),
                line.size,
                MARGIN + x,
                y,
                escape(text)
            );
        }
    }
    pages.push(content);
    let count = pages.len();
    let pages: Vec<String> = pages
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            format!(
                "{body}BT /F1 8 Tf {MARGIN} {} Td ({}) Tj ET\nBT /F1 8 Tf {} {} Td (Page {} of {count}) Tj ET\n",
                MARGIN - 20,
                escape(&footer),
                PAGE_WIDTH - MARGIN - 50,
                MARGIN - 20,
                i + 1
            )
        })
        .collect();

    // Objects: 1 catalog, 2 page tree, 3 and 4 fonts, 5 info, then a page and its content
    // stream per page.
    let page_id = |i: usize| 6 + 2 * i;
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
                 /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
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
        "trailer\n<< /Size {size} /Root 1 0 R /Info 5 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    );
    out.extend_from_slice(table.as_bytes());
    out
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use portcullis_audit::checkpoint::{Checkpoint, SigningKey};
    use portcullis_audit::report::{PreviousMonth, ReportBody, Window, WindowEntries};

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

    pub(crate) fn sample_report(actions: usize) -> SignedReport {
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
        }
        .sign(&key)
        .unwrap()
    }

    /// Control L6: the PDF is structurally valid and carries the report's facts.
    #[test]
    fn l6_pdf_is_well_formed_and_states_the_facts() {
        let report = sample_report(3);
        let sha = "12".repeat(32);
        let pdf = render(&report, "x.report.json", &sha);
        let (pages, streams) = check_structure(&pdf);
        assert!((1..=2).contains(&pages), "{pages} pages");
        let all = streams.join("");
        for fact in [
            "0190f3c4-5b6a-7d8e-9f01-23456789abcd",
            "2026-03-01T00:00:00Z to 2026-04-01T00:00:00Z",
            "First seq: 10",
            "Last seq: 10000",
            &"ab".repeat(32),
            &report.body.closing_checkpoint.as_ref().unwrap().root_hash,
            &report.body.previous.as_ref().unwrap().checkpoint.root_hash,
            &report.signature.key_id,
            &report.signature.value[..64],
            &report.signature.value[64..],
            &sha,
            "authoritative, signed artifact",
            "x.report.json",
            "action.number_0002",
            r"odd\(name\)\\with\) parens",
        ] {
            assert!(all.contains(fact), "missing {fact}");
        }
        assert!(
            String::from_utf8_lossy(&pdf).contains(&format!("/PortcullisReportJsonSha256 ({sha})"))
        );
        // No unescaped parenthesis from the odd action name.
        assert!(!all.contains("odd(name"));
    }

    /// Control L6: long action lists flow onto further pages, every row kept.
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
        assert!(all.contains(&format!("(Page {pages} of {pages})")));
        // Nothing is drawn below the bottom margin except the footer.
        for s in &streams {
            for line in s.lines().filter(|l| l.contains(" 10 Tf ")) {
                let y: u32 = line.split(' ').nth(5).unwrap().parse().unwrap();
                assert!(y >= MARGIN + 20, "{line}");
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
        let lines = wrap(&"word ".repeat(50), 20);
        assert!(lines.iter().all(|l| l.len() <= 20));
        let long = wrap(&"x".repeat(50), 20);
        assert_eq!(long.len(), 3);
    }
}

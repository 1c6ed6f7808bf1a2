// SPDX-License-Identifier: Apache-2.0
//! The report as a person reads it: the verdict first, then the rates, then tables with the problems at
//! the top. Plain text, no colours, fixed-width columns.

use std::fmt::Write as _;

use super::Statement;
use crate::verify::{PathStatus, RateResult, Verdict, Window};

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(out: &mut String, indent: &str, headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::from(indent);
        let mut cells = cells.peekable();
        let mut i = 0;
        while let Some(cell) = cells.next() {
            text.push_str(cell);
            if cells.peek().is_some() {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                text.extend(std::iter::repeat_n(' ', pad));
            }
            i += 1;
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}

fn window_text(w: &Window) -> String {
    let bound = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or("(unbounded)".to_owned(), crate::observation::format_time)
    };
    format!("{} .. {}", bound(w.from), bound(w.to))
}

fn rate_line(rate: &RateResult) -> String {
    let mut text = rate.describe();
    if let Some(min) = rate.min {
        let _ = write!(
            text,
            "  min {min}  {}",
            if rate.pass == Some(true) {
                "ok"
            } else {
                "FAIL"
            }
        );
    }
    text
}

/// Problems first, optional paths last, otherwise map order.
fn rank(status: PathStatus) -> u8 {
    match status {
        PathStatus::BinaryMismatch => 0,
        PathStatus::Unresolvable => 1,
        PathStatus::Unobserved => 2,
        PathStatus::Observed => 3,
    }
}

/// Renders a report for a terminal. `max_rows` caps the path table (problems are listed first, so the
/// cut drops observed paths before anything else); `None` lists every path.
pub fn render_text(statement: &Statement, max_rows: Option<usize>) -> String {
    let p = &statement.predicate;
    let mut out = String::new();
    let verdict = match p.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
    };
    let _ = writeln!(
        out,
        "{verdict}  {}: {} of {} required paths observed",
        p.function_map.service, p.observation_rate.observed, p.observation_rate.total
    );
    let mut summary = vec![
        (
            "subject".to_owned(),
            statement
                .subject
                .first()
                .map(|s| s.name.clone())
                .unwrap_or_default(),
        ),
        ("window".to_owned(), window_text(&p.window)),
        ("rate".to_owned(), rate_line(&p.observation_rate)),
    ];
    summary.extend(
        p.per_tag
            .iter()
            .map(|(tag, rate)| (format!("tag {tag}"), rate_line(rate))),
    );
    let key_width = summary.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in summary {
        let _ = writeln!(out, "{key:key_width$}  {value}");
    }
    for (title, findings) in [("reasons", &p.reasons), ("warnings", &p.warnings)] {
        if !findings.is_empty() {
            let _ = writeln!(out, "{title}:");
            for f in findings {
                let _ = writeln!(out, "  - {} [{}]", f.message, f.code);
            }
        }
    }

    out.push('\n');
    let mut paths: Vec<_> = p.paths.iter().collect();
    paths.sort_by_key(|path| (path.optional, rank(path.status)));
    let shown = max_rows.unwrap_or(paths.len()).min(paths.len());
    let hidden = &paths[shown..];
    let rows: Vec<Vec<String>> = paths[..shown]
        .iter()
        .map(|path| {
            vec![
                path.status.as_str().to_owned(),
                if path.optional {
                    format!("{} (optional)", path.id)
                } else {
                    path.id.clone()
                },
                if path.tags.is_empty() {
                    "-".to_owned()
                } else {
                    path.tags.join(",")
                },
                path.count.to_string(),
                path.calls
                    .iter()
                    .find_map(|c| c.detail.clone())
                    .unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &mut out,
        "",
        &["STATUS", "PATH", "TAGS", "COUNT", "DETAIL"],
        &rows,
    );
    if !hidden.is_empty() {
        let observed = hidden
            .iter()
            .filter(|p| p.status == PathStatus::Observed)
            .count();
        let _ = writeln!(
            out,
            "... {} more paths not listed ({observed} of them observed); --max-rows 0 lists all",
            hidden.len()
        );
    }

    if !p.unexpected_symbols.is_empty() {
        let _ = writeln!(
            out,
            "\nunexpected symbols ({}):",
            p.unexpected_symbols.len()
        );
        let listed = max_rows
            .unwrap_or(p.unexpected_symbols.len())
            .min(p.unexpected_symbols.len());
        let rows: Vec<Vec<String>> = p.unexpected_symbols[..listed]
            .iter()
            .map(|u| {
                vec![
                    u.count.to_string(),
                    u.symbol.clone(),
                    u.binary.clone(),
                    u.build_id.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &mut out,
            "  ",
            &["COUNT", "SYMBOL", "BINARY", "BUILD-ID"],
            &rows,
        );
        if listed < p.unexpected_symbols.len() {
            let _ = writeln!(
                out,
                "  ... {} more not listed; --max-rows 0 lists all",
                p.unexpected_symbols.len() - listed
            );
        }
        if let Some(o) = p.unexpected_omitted {
            let _ = writeln!(
                out,
                "  ... and {} more records ({} calls) not listed",
                o.records, o.calls
            );
        }
    }
    if !p.probe_failures.is_empty() {
        let _ = writeln!(out, "\nprobe failures ({}):", p.probe_failures.len());
        let rows: Vec<Vec<String>> = p
            .probe_failures
            .iter()
            .map(|f| {
                vec![
                    f.status.as_str().to_owned(),
                    f.symbol
                        .clone()
                        .unwrap_or_else(|| "(whole file)".to_owned()),
                    f.binary.clone(),
                    f.records.to_string(),
                    f.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(
            &mut out,
            "  ",
            &["STATUS", "SYMBOL", "BINARY", "RECORDS", "DETAIL"],
            &rows,
        );
        if let Some(o) = p.probe_failures_omitted {
            let _ = writeln!(out, "  ... and {} more records not listed", o.records);
        }
    }
    let o = &p.observations;
    let _ = writeln!(
        out,
        "\nobservations: {} records, {} outside the window, {} without build-id, {} events dropped",
        o.records, o.ignored, o.unidentified, o.dropped
    );
    out
}

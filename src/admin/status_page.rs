//! The status page on `/`: one self-contained HTML document, one row per job.
//!
//! No scripts and no external assets: the page is readable in any browser,
//! in `curl`, and from a machine without internet access. Every piece of text
//! is HTML-escaped; times are shown relative to the moment of rendering, with
//! the absolute UTC time in a tooltip.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::problem::EntityProblem;
use crate::scheduler::JobStatus;

/// The most config problems the page lists (the rest are counted).
const MAX_PROBLEMS: usize = 1000;

/// The most bytes of a problem's reason the page shows.
const MAX_REASON: usize = 1024;

/// The header of the page.
#[derive(Debug)]
pub(crate) struct Summary<'a> {
    pub bot: &'a str,
    pub version: &'a str,
    pub uptime: Duration,
    /// `Ok(())` when ready, else why not.
    pub readiness: Result<(), &'a str>,
    pub value_series: usize,
    /// The entities' config problems at the last refresh.
    pub problems: &'a [EntityProblem],
    /// Whether the backend answered the last refresh; `None` without one.
    pub backend: Option<bool>,
}

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f5f6f8}\
header{background:#1d2330;color:#fff;padding:14px 24px}\
header h1{font-size:20px;margin:0 0 6px}\
header dl{display:flex;flex-wrap:wrap;gap:4px 24px;margin:0}\
header dt{opacity:.65;display:inline}header dd{display:inline;margin:0 0 0 6px;font-weight:600}\
main{padding:16px 24px}\
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 3px rgba(0,0,0,.12)}\
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e3e6eb;vertical-align:top}\
th{background:#eceff3;font-weight:600;position:sticky;top:0}\
tr.error td{background:#fff3f2}\
td.err{color:#b3261e;font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-word}\
code{font-family:ui-monospace,monospace}time{white-space:nowrap}\
.lbl{display:inline-block;background:#e8eefc;border-radius:3px;padding:0 5px;margin:1px 2px;font-family:ui-monospace,monospace;font-size:12px}\
.ok{color:#1e7b34}.bad{color:#ffb4ab}.run{color:#8a5a00;font-weight:600}\
footer{padding:0 24px 16px;color:#667}footer a{color:#345}";

/// Renders the whole page.
pub(crate) fn render(summary: &Summary<'_>, rows: &[JobStatus], now: SystemTime) -> String {
    let mut out = String::with_capacity(4096 + rows.len() * 512);
    let title = format!("{} — Grafolean bot", summary.bot);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">");
    out.push_str("<meta http-equiv=\"refresh\" content=\"10\"><title>");
    escape(&mut out, &title);
    let _ = write!(
        out,
        "</title><style>{STYLE}</style></head><body>\n<header><h1>"
    );
    escape(&mut out, summary.bot);
    out.push_str("</h1><dl>");
    item(&mut out, "version", summary.version);
    item(&mut out, "uptime", &human(summary.uptime));
    item(&mut out, "jobs", &rows.len().to_string());
    let failing = rows.iter().filter(|r| r.last_error.is_some()).count();
    item(&mut out, "failing", &failing.to_string());
    item(&mut out, "value series", &summary.value_series.to_string());
    item(
        &mut out,
        "config problems",
        &summary.problems.len().to_string(),
    );
    if let Some(reachable) = summary.backend {
        let (class, text) = match reachable {
            true => ("ok", "reachable"),
            false => ("bad", "not reachable (jobs run on; values wait)"),
        };
        let _ = write!(
            out,
            "<div><dt>backend</dt><dd id=\"backend\" class=\"{class}\">{text}</dd></div>"
        );
    }
    let _ = match summary.readiness {
        Ok(()) => write!(
            out,
            "<div><dt>status</dt><dd id=\"ready\" class=\"ok\">ready</dd></div>"
        ),
        Err(why) => {
            out.push_str("<div><dt>status</dt><dd id=\"ready\" class=\"bad\">not ready: ");
            escape(&mut out, why);
            write!(out, "</dd></div>")
        }
    };
    out.push_str("</dl></header>\n<main>");
    problems_html(&mut out, summary.problems);
    out.push_str("<table id=\"jobs\"><thead><tr><th>Job</th><th>Labels</th>");
    out.push_str("<th>Intervals</th><th>Last run</th><th>Duration</th><th>Next firing</th>");
    out.push_str("<th>Last error</th></tr></thead><tbody>\n");
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"7\">No jobs are scheduled.</td></tr>\n");
    }
    for row in rows {
        row_html(&mut out, row, now);
    }
    out.push_str("</tbody></table></main>\n<footer>Rendered ");
    when(&mut out, Some(now), now);
    out.push_str(" · refreshes every 10 s · <a href=\"metrics\">metrics</a> · ");
    out.push_str(
        "<a href=\"live\">live</a> · <a href=\"ready\">ready</a></footer>\n</body></html>\n",
    );
    out
}

/// The entities that could not be used, and why: a table before the jobs,
/// when there are any.
fn problems_html(out: &mut String, problems: &[EntityProblem]) {
    if problems.is_empty() {
        return;
    }
    out.push_str("<table id=\"problems\"><thead><tr><th>Account</th><th>Entity</th>");
    out.push_str("<th>Name</th><th>Cause</th><th>Config problem</th></tr></thead><tbody>\n");
    for p in problems.iter().take(MAX_PROBLEMS) {
        let _ = write!(out, "<tr class=\"error\"><td>{}</td><td><code>", p.account);
        escape(out, p.raw_id.as_deref().unwrap_or("(its entity list)"));
        out.push_str("</code></td><td>");
        escape(out, p.name.as_deref().unwrap_or(""));
        let _ = write!(out, "</td><td>{}</td><td class=\"err\">", p.cause);
        let mut end = p.reason.len().min(MAX_REASON);
        while !p.reason.is_char_boundary(end) {
            end -= 1;
        }
        escape(out, &p.reason[..end]);
        if end < p.reason.len() {
            out.push('…');
        }
        out.push_str("</td></tr>\n");
    }
    if problems.len() > MAX_PROBLEMS {
        let _ = writeln!(
            out,
            "<tr><td colspan=\"5\">and {} more (see the log)</td></tr>",
            problems.len() - MAX_PROBLEMS
        );
    }
    out.push_str("</tbody></table><br>\n");
}

fn item(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<div><dt>{name}</dt><dd>");
    escape(out, value);
    out.push_str("</dd></div>");
}

fn row_html(out: &mut String, row: &JobStatus, now: SystemTime) {
    out.push_str(if row.last_error.is_some() {
        "<tr class=\"job error\"><td><code>"
    } else {
        "<tr class=\"job\"><td><code>"
    });
    escape(out, row.id.as_str());
    out.push_str("</code>");
    if row.running {
        out.push_str(" <span class=\"run\">running</span>");
    }
    out.push_str("</td><td>");
    for (name, value) in &row.labels {
        out.push_str("<span class=\"lbl\">");
        escape(out, name);
        out.push('=');
        // Bounded as on /metrics: a 5 MB entity name is not a 5 MB page.
        escape(out, &crate::exposition::capped_label_value(value));
        out.push_str("</span>");
    }
    out.push_str("</td><td>");
    escape(out, &row.intervals.to_string());
    out.push_str("</td><td>");
    when(out, row.last_run, now);
    out.push_str("</td><td>");
    match row.last_duration {
        Some(d) => escape(out, &human_precise(d)),
        None => out.push('—'),
    }
    out.push_str("</td><td>");
    when(out, row.next_firing, now);
    out.push_str("</td><td class=\"err\">");
    if let Some(err) = &row.last_error {
        escape(out, err);
    }
    out.push_str("</td></tr>\n");
}

/// Writes "12 s ago" / "in 3 s" with the UTC time as a tooltip, or "—".
fn when(out: &mut String, at: Option<SystemTime>, now: SystemTime) {
    let Some(at) = at else {
        out.push('—');
        return;
    };
    let _ = write!(out, "<time datetime=\"{0}\" title=\"{0}\">", utc(at));
    match now.duration_since(at) {
        Ok(ago) if ago < Duration::from_secs(1) => out.push_str("now"),
        Ok(ago) => {
            let _ = write!(out, "{} ago", human(ago));
        }
        Err(e) if e.duration() < Duration::from_secs(1) => out.push_str("now"),
        Err(e) => {
            let _ = write!(out, "in {}", human(e.duration()));
        }
    }
    out.push_str("</time>");
}

/// A coarse duration, by humantime: "45s", "3m 5s", "2h 10m", "3days 4h".
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    let coarse = match s {
        0..3600 => s,
        3600..86400 => s - s % 60,
        _ => s - s % 3600,
    };
    humantime::format_duration(Duration::from_secs(coarse)).to_string()
}

/// A run duration: "850 µs", "12 ms", "1.25 s", or coarse beyond a minute.
fn human_precise(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        human(d)
    }
}

/// RFC 3339 UTC time with second precision, such as `2024-03-01T12:00:05Z`
/// (humantime; a time before 1970, which no job has, shows as 1970).
pub(crate) fn utc(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at.max(UNIX_EPOCH)).to_string()
}

/// Appends `text` with `& < > " '` escaped.
pub(crate) fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Summary<'static> {
        Summary {
            bot: "ping<bot>",
            version: "0.1.0",
            uptime: Duration::from_secs(3725),
            readiness: Err("config not loaded yet"),
            value_series: 3,
            problems: &[],
            backend: None,
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_294_405);
        assert_eq!(utc(t), "2024-03-01T12:00:05Z");
        assert_eq!(
            utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut out = String::new();
        when(&mut out, Some(now - Duration::from_secs(75)), now);
        assert!(out.ends_with(">1m 15s ago</time>"), "{out}");
        out.clear();
        when(&mut out, Some(now + Duration::from_secs(4)), now);
        assert!(out.ends_with(">in 4s</time>"), "{out}");
        out.clear();
        when(&mut out, Some(now + Duration::from_millis(300)), now);
        assert!(out.ends_with(">now</time>"), "{out}");
        out.clear();
        when(&mut out, None, now);
        assert_eq!(out, "—");
        assert_eq!(human(Duration::from_secs(90_000)), "1day 1h");
        assert_eq!(human(Duration::from_secs(7_265)), "2h 1m");
        assert_eq!(human_precise(Duration::from_micros(850)), "850 µs");
        assert_eq!(human_precise(Duration::from_millis(1250)), "1.25 s");
    }

    #[test]
    fn page_escapes_everything_and_lists_rows() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let rows = vec![
            JobStatus {
                labels: vec![("target".into(), "a\"&b".into())],
                last_run: Some(now - Duration::from_secs(3)),
                last_duration: Some(Duration::from_millis(12)),
                next_firing: Some(now + Duration::from_secs(7)),
                last_error: Some("timeout <after 5 s>".into()),
                running: true,
                ..JobStatus::new("ping.<script>")
            },
            JobStatus {
                ..JobStatus::new("ping.ok")
            },
        ];
        let page = render(&summary(), &rows, now);
        assert!(!page.contains("<script>"));
        assert!(
            page.contains("<code>ping.&lt;script&gt;</code> <span class=\"run\">running</span>")
        );
        assert!(page.contains("<span class=\"lbl\">target=a&quot;&amp;b</span>"));
        assert!(page.contains(">3s ago</time>"));
        assert!(page.contains(">in 7s</time>"));
        assert!(page.contains("<td>12 ms</td>"));
        assert!(page.contains("timeout &lt;after 5 s&gt;"));
        assert!(page.contains("<h1>ping&lt;bot&gt;</h1>"));
        assert!(page.contains("not ready: config not loaded yet"));
        assert!(page.contains("<dt>uptime</dt><dd>1h 2m</dd>"));
        assert_eq!(page.matches("<tr class=\"job").count(), 2);
        assert_eq!(page.matches("<tr class=\"job error\"").count(), 1);
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }

    #[test]
    fn empty_page_says_so() {
        let page = render(&summary(), &[], UNIX_EPOCH);
        assert!(page.contains("No jobs are scheduled."));
    }
}

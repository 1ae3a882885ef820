//! The status page on `/`: one self-contained HTML document, a page of jobs
//! at a time (100 by default), failing jobs first, with a search by job id,
//! entity or any label value (`?q=`), a filter by state (`?state=failing`
//! or `ok`) and pages (`?page=2`, `?per_page=` up to 1,000). `/api/jobs`
//! answers the same query in JSON, for scripts.
//!
//! No scripts and no external assets: the page (its search form included)
//! works in any browser, in `curl`, and from a machine without internet
//! access. Every piece of text is HTML-escaped; times are shown relative to
//! the moment of rendering, with the absolute UTC time in a tooltip.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::problem::EntityProblem;
use crate::scheduler::JobStatus;

/// The most config problems the page lists (the rest are counted).
const MAX_PROBLEMS: usize = 1000;

/// The most bytes of a problem's reason the page shows.
const MAX_REASON: usize = 1024;

/// Jobs per page unless `per_page` says otherwise.
pub(crate) const PER_PAGE: usize = 100;

/// The most jobs one page or answer may hold.
pub(crate) const MAX_PER_PAGE: usize = 1000;

/// The most values shown per job (the rest are counted).
pub(crate) const MAX_VALUES: usize = 5;

/// The longest search text kept, in characters.
const MAX_SEARCH: usize = 200;

/// Which jobs a query wants by their last run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StateFilter {
    /// Every job.
    #[default]
    All,
    /// Jobs whose last run failed.
    Failing,
    /// Jobs whose last run did not fail (or that have not run yet).
    Ok,
}

impl StateFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::All => "",
            Self::Failing => "failing",
            Self::Ok => "ok",
        }
    }
}

/// What `/?...` and `/api/jobs?...` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobQuery {
    pub state: StateFilter,
    /// The search text, as given (matched without regard to case).
    pub q: String,
    /// From 1.
    pub page: usize,
    pub per_page: usize,
}

impl Default for JobQuery {
    fn default() -> Self {
        Self {
            state: StateFilter::All,
            q: String::new(),
            page: 1,
            per_page: PER_PAGE,
        }
    }
}

impl JobQuery {
    /// Reads a query string leniently: what cannot be read is left at its
    /// default, so a hand-typed URL always shows something.
    pub(crate) fn parse(query: Option<&str>) -> Self {
        let mut out = Self::default();
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match &*key {
                "state" => {
                    out.state = match &*value {
                        "failing" => StateFilter::Failing,
                        "ok" => StateFilter::Ok,
                        _ => StateFilter::All,
                    }
                }
                "q" => out.q = value.trim().chars().take(MAX_SEARCH).collect(),
                "page" => out.page = value.parse().ok().filter(|&p| p >= 1).unwrap_or(1),
                "per_page" => {
                    out.per_page = value
                        .parse::<usize>()
                        .map_or(PER_PAGE, |n| n.clamp(1, MAX_PER_PAGE));
                }
                _ => {}
            }
        }
        out
    }

    /// The query string of this query's `page`.
    fn href(&self, page: usize) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            s.append_pair("q", &self.q);
        }
        if self.state != StateFilter::All {
            s.append_pair("state", self.state.as_str());
        }
        if self.per_page != PER_PAGE {
            s.append_pair("per_page", &self.per_page.to_string());
        }
        s.append_pair("page", &page.to_string());
        format!("?{}", s.finish())
    }
}

/// One page of the jobs a query matched.
#[derive(Debug)]
pub(crate) struct Selection {
    /// Every job scheduled.
    pub total: usize,
    /// Of them, those whose last run failed.
    pub failing: usize,
    /// Those the query matched.
    pub matched: usize,
    /// The page shown (from 1; the last one when the query asked for more).
    pub page: usize,
    /// How many pages the matched jobs fill (at least 1).
    pub pages: usize,
    /// The page's jobs: failing first, then by id.
    pub rows: Vec<JobStatus>,
}

/// The page of `rows` (sorted by id) that `query` asks for.
pub(crate) fn select(mut rows: Vec<JobStatus>, query: &JobQuery) -> Selection {
    let total = rows.len();
    let failing = rows.iter().filter(|r| r.last_error.is_some()).count();
    let needle = query.q.to_lowercase();
    rows.retain(|r| {
        let state = match query.state {
            StateFilter::All => true,
            StateFilter::Failing => r.last_error.is_some(),
            StateFilter::Ok => r.last_error.is_none(),
        };
        state
            && (needle.is_empty()
                || contains(r.id.as_str(), &needle)
                || r.labels.iter().any(|(_, v)| contains(v, &needle)))
    });
    // Failing first, each part in the ids' natural order (ping.999 before
    // ping.1000).
    rows.sort_by_cached_key(|r| (r.last_error.is_none(), natural(r.id.as_str())));
    let matched = rows.len();
    let pages = matched.div_ceil(query.per_page).max(1);
    let page = query.page.min(pages);
    let rows = rows
        .into_iter()
        .skip((page - 1) * query.per_page)
        .take(query.per_page)
        .collect();
    Selection {
        total,
        failing,
        matched,
        page,
        pages,
        rows,
    }
}

/// A sort key that orders runs of digits by their number: `ping.999` before
/// `ping.1000`, `10.0.0.9` before `10.0.0.10`. (Ten lines, so no crate.)
fn natural(id: &str) -> Vec<(u8, u128, String)> {
    let mut key = Vec::new();
    let mut rest = id;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (run, tail) = if digits > 0 {
            rest.split_at(digits)
        } else {
            rest.split_at(
                rest.find(|c: char| c.is_ascii_digit())
                    .unwrap_or(rest.len()),
            )
        };
        // A number beyond u128 sorts by its text, after the others.
        key.push(match run.parse::<u128>() {
            Ok(n) if digits > 0 => (0, n, run.to_string()),
            _ => (1, 0, run.to_string()),
        });
        rest = tail;
    }
    key
}

/// Whether `haystack` holds `needle` (lower case) regardless of case.
fn contains(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        n.len() <= h.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
    } else {
        haystack.to_lowercase().contains(needle)
    }
}

/// A job's last values: up to [`MAX_VALUES`] `(series, value)` and how
/// many there are.
pub(crate) type JobValues<'a> = &'a dyn Fn(&crate::job::JobId) -> (Vec<(String, f64)>, usize);

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
footer{padding:0 24px 16px;color:#667}footer a{color:#345}\
form#search{margin:0 0 8px}form#search input{width:22em;padding:4px 6px}#count{margin:4px 0 8px;color:#445}\
nav#pages{margin:10px 0}td.val{font-size:12px;word-break:break-all}";

/// Renders the whole page: the header, the config problems, the search
/// form and one page of jobs.
pub(crate) fn render(
    summary: &Summary<'_>,
    query: &JobQuery,
    selection: &Selection,
    values: JobValues<'_>,
    now: SystemTime,
) -> String {
    let mut out = String::with_capacity(8192 + selection.rows.len() * 768);
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
    item(&mut out, "jobs", &selection.total.to_string());
    item(&mut out, "failing", &selection.failing.to_string());
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
    search_html(&mut out, query, selection);
    out.push_str("<table id=\"jobs\"><thead><tr><th>Job</th><th>Labels</th>");
    out.push_str("<th>Intervals</th><th>Last run</th><th>Duration</th><th>Next firing</th>");
    out.push_str("<th>Last values</th><th>Last error</th></tr></thead><tbody>\n");
    if selection.rows.is_empty() {
        let why = if selection.total == 0 {
            "No jobs are scheduled."
        } else {
            "No job matches."
        };
        let _ = writeln!(out, "<tr><td colspan=\"8\">{why}</td></tr>");
    }
    for row in &selection.rows {
        row_html(&mut out, row, values, now);
    }
    out.push_str("</tbody></table>");
    pager_html(&mut out, query, selection);
    out.push_str("</main>\n<footer>Rendered ");
    when(&mut out, Some(now), now);
    out.push_str(" · refreshes every 10 s · <a href=\"metrics\">metrics</a> · ");
    out.push_str("<a href=\"api/jobs\">api/jobs</a> · ");
    out.push_str(
        "<a href=\"live\">live</a> · <a href=\"ready\">ready</a></footer>\n</body></html>\n",
    );
    out
}

/// The search form (a plain GET form: no script needed) and the count.
fn search_html(out: &mut String, query: &JobQuery, selection: &Selection) {
    out.push_str(
        "<form id=\"search\" method=\"get\" action=\"\"><input type=\"search\" name=\"q\" value=\"",
    );
    escape(out, &query.q);
    out.push_str("\" placeholder=\"entity, job id or label\" aria-label=\"search\"> <select name=\"state\" aria-label=\"state\">");
    for (value, text) in [("", "all jobs"), ("failing", "failing"), ("ok", "ok")] {
        let selected = if query.state.as_str() == value {
            " selected"
        } else {
            ""
        };
        let _ = write!(out, "<option value=\"{value}\"{selected}>{text}</option>");
    }
    out.push_str("</select> <button>Search</button>");
    if query != &JobQuery::default() {
        out.push_str(" <a href=\"?\">clear</a>");
    }
    out.push_str("</form>\n");
    let first = if selection.rows.is_empty() {
        0
    } else {
        (selection.page - 1) * query.per_page + 1
    };
    let last = first + selection.rows.len().saturating_sub(1);
    let _ = write!(
        out,
        "<p id=\"count\">Jobs {first}–{last} of {} matching",
        selection.matched
    );
    if selection.matched != selection.total {
        let _ = write!(out, " (of {} in all)", selection.total);
    }
    out.push_str(", failing first.</p>\n");
}

/// Links to the previous and next pages.
fn pager_html(out: &mut String, query: &JobQuery, selection: &Selection) {
    if selection.pages <= 1 {
        return;
    }
    out.push_str("<nav id=\"pages\">");
    if selection.page > 1 {
        out.push_str("<a rel=\"prev\" href=\"");
        escape(out, &query.href(selection.page - 1));
        out.push_str("\">← previous</a> ");
    }
    let _ = write!(out, "page {} of {}", selection.page, selection.pages);
    if selection.page < selection.pages {
        out.push_str(" <a rel=\"next\" href=\"");
        escape(out, &query.href(selection.page + 1));
        out.push_str("\">next →</a>");
    }
    out.push_str("</nav>\n");
}

/// `/api/jobs`: the same selection as the page, in JSON.
pub(crate) fn render_json(
    query: &JobQuery,
    selection: &Selection,
    values: JobValues<'_>,
) -> String {
    let time = |t: Option<SystemTime>| t.map(utc);
    let jobs: Vec<serde_json::Value> = selection
        .rows
        .iter()
        .map(|r| {
            let (shown, count) = values(&r.id);
            let labels: serde_json::Map<String, serde_json::Value> = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
                .collect();
            serde_json::json!({
                "id": r.id.as_str(),
                "state": if r.last_error.is_some() { "failing" } else { "ok" },
                "labels": labels,
                "intervals": r.intervals.iter().collect::<Vec<u32>>(),
                "running": r.running,
                "last_run": time(r.last_run),
                "last_duration_seconds": r.last_duration.map(|d| d.as_secs_f64()),
                "next_firing": time(r.next_firing),
                "last_error": r.last_error,
                "values": shown.iter().map(|(series, value)| serde_json::json!({
                    "series": series,
                    // JSON has no NaN or infinities: those are null.
                    "value": value.is_finite().then_some(*value),
                })).collect::<Vec<_>>(),
                "value_count": count,
            })
        })
        .collect();
    let mut out = serde_json::to_string(&serde_json::json!({
        "total": selection.total,
        "failing": selection.failing,
        "matched": selection.matched,
        "page": selection.page,
        "pages": selection.pages,
        "per_page": query.per_page,
        "jobs": jobs,
    }))
    .unwrap_or_default();
    out.push('\n');
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

fn row_html(out: &mut String, row: &JobStatus, values: JobValues<'_>, now: SystemTime) {
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
    out.push_str("</td><td class=\"val\">");
    let (shown, count) = values(&row.id);
    for (series, value) in &shown {
        out.push_str("<div><code>");
        escape(out, series);
        let _ = write!(out, "</code> {value}</div>");
    }
    if count > shown.len() {
        let _ = write!(out, "<div>and {} more</div>", count - shown.len());
    }
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

    fn no_values(_: &crate::job::JobId) -> (Vec<(String, f64)>, usize) {
        (Vec::new(), 0)
    }

    fn page(rows: &[JobStatus], query: &JobQuery, now: SystemTime) -> String {
        let selection = select(rows.to_vec(), query);
        render(&summary(), query, &selection, &no_values, now)
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
        let page = page(&rows, &JobQuery::default(), now);
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

    /// 1,000 jobs, every 100th failing, with entity labels.
    fn many() -> Vec<JobStatus> {
        (0..1000)
            .map(|i| JobStatus {
                labels: vec![("entity".into(), format!("Router-{i:04}"))],
                last_error: (i % 100 == 7).then(|| format!("timeout {i}")),
                ..JobStatus::new(&format!("ping.{i:04}"))
            })
            .collect()
    }

    #[test]
    fn failing_jobs_come_first_then_pages() {
        let rows = many();
        let s = select(rows.clone(), &JobQuery::default());
        assert_eq!((s.total, s.failing, s.matched), (1000, 10, 1000));
        assert_eq!((s.page, s.pages, s.rows.len()), (1, 10, 100));
        let ids: Vec<&str> = s.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids[0], "ping.0007");
        assert_eq!(ids[9], "ping.0907");
        assert_eq!(ids[10], "ping.0000", "then the rest, by id");
        assert!(s.rows[..10].iter().all(|r| r.last_error.is_some()));

        let last = select(
            rows.clone(),
            &JobQuery {
                page: 99,
                ..JobQuery::default()
            },
        );
        assert_eq!(last.page, 10, "past the end: the last page");
        assert_eq!(last.rows.last().unwrap().id.as_str(), "ping.0999");

        let html = page(&rows, &JobQuery::default(), UNIX_EPOCH);
        assert!(html.contains("Jobs 1–100 of 1000 matching, failing first."));
        assert!(html.contains("<a rel=\"next\" href=\"?page=2\">next →</a>"));
        assert!(!html.contains("rel=\"prev\""));
        assert_eq!(html.matches("<tr class=\"job").count(), 100);
    }

    #[test]
    fn ids_in_natural_order() {
        let mut ids = vec![
            "ping.1000",
            "ping.999",
            "snmp.10.0.0.10",
            "snmp.10.0.0.9",
            "a",
            "ping.0999x",
        ];
        ids.sort_by_key(|id| natural(id));
        assert_eq!(
            ids,
            [
                "a",
                "ping.0999x",
                "ping.999",
                "ping.1000",
                "snmp.10.0.0.9",
                "snmp.10.0.0.10"
            ],
            "equal numbers by their text"
        );
    }

    #[test]
    fn search_and_state_filter() {
        let rows = many();
        let q = JobQuery::parse(Some("q=router-012&state=&page=1"));
        let s = select(rows.clone(), &q);
        assert_eq!(s.matched, 10, "an entity label, without regard to case");
        assert_eq!(s.rows[0].id.as_str(), "ping.0120");
        let s = select(rows.clone(), &JobQuery::parse(Some("q=PING.0500")));
        assert_eq!(s.matched, 1, "a job id");
        let s = select(rows.clone(), &JobQuery::parse(Some("state=failing")));
        assert_eq!((s.matched, s.rows.len()), (10, 10));
        let s = select(
            rows.clone(),
            &JobQuery::parse(Some("state=ok&per_page=5000")),
        );
        assert_eq!(
            (s.matched, s.rows.len()),
            (990, 990),
            "per_page is capped at 1000"
        );
        let q = JobQuery::parse(Some("q=%3Cscript%3E&state=failing&page=x&per_page=-1"));
        assert_eq!(
            (q.q.as_str(), q.state, q.page, q.per_page),
            ("<script>", StateFilter::Failing, 1, PER_PAGE),
            "what cannot be read is left at its default"
        );
        let html = page(&rows, &q, UNIX_EPOCH);
        assert!(
            html.contains("value=\"&lt;script&gt;\""),
            "the search text is escaped"
        );
        assert!(html.contains("No job matches."));
        assert!(html.contains("<option value=\"failing\" selected>"));
        // A page link keeps the query.
        let q = JobQuery::parse(Some("q=router&state=ok"));
        let html = page(&rows, &q, UNIX_EPOCH);
        assert!(
            html.contains("href=\"?q=router&amp;state=ok&amp;page=2\""),
            "{}",
            &html[html.find("<nav").unwrap()..]
        );
    }

    #[test]
    fn the_json_answer_has_the_same_selection() {
        let rows = many();
        let q = JobQuery::parse(Some("state=failing&per_page=3&page=2"));
        let s = select(rows, &q);
        let values = |_: &crate::job::JobId| (vec![("rtt{x=\"1\"}".to_string(), 0.5)], 7);
        let json: serde_json::Value = serde_json::from_str(&render_json(&q, &s, &values)).unwrap();
        assert_eq!(json["matched"], 10);
        assert_eq!(json["pages"], 4);
        assert_eq!(json["jobs"].as_array().unwrap().len(), 3);
        assert_eq!(json["jobs"][0]["id"], "ping.0307");
        assert_eq!(json["jobs"][0]["state"], "failing");
        assert_eq!(json["jobs"][0]["last_error"], "timeout 307");
        assert_eq!(json["jobs"][0]["labels"]["entity"], "Router-0307");
        assert_eq!(json["jobs"][0]["intervals"], serde_json::json!([10]));
        assert_eq!(json["jobs"][0]["values"][0]["series"], "rtt{x=\"1\"}");
        assert_eq!(json["jobs"][0]["value_count"], 7);
    }

    #[test]
    fn empty_page_says_so() {
        let page = page(&[], &JobQuery::default(), UNIX_EPOCH);
        assert!(page.contains("No jobs are scheduled."));
    }
}

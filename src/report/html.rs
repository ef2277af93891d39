//! The report as one self-contained HTML page: inline CSS and SVG, nothing loaded from
//! the network (links to the AWS console only), a few lines of inline script that sort
//! the tables, readable on a laptop and printable.
//!
//! ```text
//!  summary (policy, time, counts, controls met) │ charts: findings by severity, time to remediate
//!  controls per framework │ open exposures and refusals │ findings (sortable) │ types │ action log
//! ```
//!
//! Every text from the input is escaped (finding titles come from AWS). The page stays
//! small: rows leave out their optional end tags, and a finding's row holds what a
//! person scans (the full record is in the JSON and CSV exports).

use std::fmt::Write as _;

use crate::domain::alert::Response;
use crate::domain::compliance::{self, ControlStatus, OpenState};
use crate::domain::severity::SeverityBand;
use crate::domain::time::Timestamp;

use super::{Analysis, ReportInput, response_cells};

const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--head:#f6f8fa;--C:#a40e26;--H:#d1410c;--M:#9a6700;--L:#0969da;--ok:#1a7f37;--bad:#cf222e;--na:#6e7781}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--fg);background:#fff;margin:0 auto;max-width:1240px;padding:24px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 8px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 6px}
p{margin:4px 0}
.muted,.cite{color:var(--muted)}
.cite{font-size:11px;margin-top:3px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;margin:16px 0}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:22px}
.card span{color:var(--muted);font-size:12px}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
figure{margin:0;border:1px solid var(--line);border-radius:6px;padding:10px 12px}
figcaption{font-weight:600;margin-bottom:6px}
svg{display:block;max-width:100%;height:auto}
svg text{font:12px system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;fill:var(--fg)}
.wrap{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 6px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--head);position:sticky;top:0;white-space:nowrap}
table.sort th{cursor:pointer}
table.sort th::after{content:" \2195";color:var(--muted);font-size:11px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.b{display:inline-block;min-width:62px;border-radius:3px;padding:0 5px;color:#fff;font-size:11px;font-weight:600;text-align:center}
.C{background:var(--C)}.H{background:var(--H)}.M{background:var(--M)}.L{background:var(--L)}
.s{font-weight:600;white-space:nowrap}
.Met{color:var(--ok)}.NotMet{color:var(--bad)}.NotApplicable{color:var(--na)}
.unv{font-size:11px;color:var(--M);font-weight:600}
.n{text-align:right;white-space:nowrap}
@media (max-width:820px){.charts{grid-template-columns:1fr}body{padding:12px}}
@media print{body{max-width:none;padding:0;font-size:10pt}th{position:static}table.sort th::after{content:""}.card,figure,tr{break-inside:avoid}thead{display:table-header-group}h2,h3{break-after:avoid}a{color:inherit;text-decoration:none}.b{color:#000;border:1px solid #000;background:none}}
"#;

/// Sorts a table by the column clicked (again: the other way), by `data-s` when both
/// cells have one, else by text.
const SCRIPT: &str = r#"
(function(){document.querySelectorAll("table.sort").forEach(function(t){var h=t.tHead.rows[0].cells;Array.prototype.forEach.call(h,function(th,i){th.tabIndex=0;var go=function(){var b=t.tBodies[0],r=Array.prototype.slice.call(b.rows),d=th.getAttribute("aria-sort")==="descending"?1:-1;Array.prototype.forEach.call(h,function(x){x.removeAttribute("aria-sort")});th.setAttribute("aria-sort",d>0?"ascending":"descending");r.sort(function(x,y){var p=x.cells[i],q=y.cells[i],u=p.getAttribute("data-s"),v=q.getAttribute("data-s");if(u!==null&&v!==null)return d*(parseFloat(u)-parseFloat(v));return d*p.textContent.localeCompare(q.textContent)});var f=document.createDocumentFragment();r.forEach(function(x){f.appendChild(x)});b.appendChild(f)};th.addEventListener("click",go);th.addEventListener("keydown",function(e){if(e.key==="Enter"){go()}})})})})();
"#;

/// The page being written: raw markup, and text that is escaped.
struct Page(String);

impl Page {
    fn raw(&mut self, markup: &str) -> &mut Page {
        self.0.push_str(markup);
        self
    }

    fn text(&mut self, text: &str) -> &mut Page {
        for c in text.chars() {
            match c {
                '&' => self.0.push_str("&amp;"),
                '<' => self.0.push_str("&lt;"),
                '>' => self.0.push_str("&gt;"),
                '"' => self.0.push_str("&quot;"),
                '\'' => self.0.push_str("&#39;"),
                c => self.0.push(c),
            }
        }
        self
    }

    fn num(&mut self, n: impl std::fmt::Display) -> &mut Page {
        let _ = write!(self.0, "{n}");
        self
    }
}

/// `45s`, `4m 10s`, `2h 5m`, `3d 4h`.
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn band_class(band: SeverityBand) -> &'static str {
    match band {
        SeverityBand::Critical => "C",
        SeverityBand::High => "H",
        SeverityBand::Medium => "M",
        SeverityBand::Low => "L",
    }
}

fn band_colour(band: SeverityBand) -> &'static str {
    match band {
        SeverityBand::Critical => "#a40e26",
        SeverityBand::High => "#d1410c",
        SeverityBand::Medium => "#9a6700",
        SeverityBand::Low => "#0969da",
    }
}

fn ec2_group_url(region: &str, group: &str) -> String {
    format!(
        "https://{region}.console.aws.amazon.com/ec2/home?region={region}#SecurityGroup:groupId={group}"
    )
}

/// The whole page.
pub fn html(input: &ReportInput<'_>) -> String {
    let analysis = Analysis::of(input);
    let mut page = Page(String::with_capacity(
        4096 + 260 * input.responses.len() + 200 * analysis.actions.len(),
    ));
    page.raw("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
        .raw("<meta name=\"generator\" content=\"guardduty-operator ")
        .raw(env!("CARGO_PKG_VERSION"))
        .raw("\"><title>GuardDuty report: ")
        .text(input.policy)
        .raw("</title><style>")
        .raw(STYLE)
        .raw("</style></head><body>\n");
    summary(&mut page, input, &analysis);
    charts(&mut page, &analysis);
    controls(&mut page, input);
    open_exposures(&mut page, &analysis);
    findings(&mut page, input, &analysis);
    types(&mut page, &analysis);
    action_log(&mut page, input, &analysis);
    failures(&mut page, input);
    page.raw("<footer class=\"muted\"><p>Generated by guardduty-operator ")
        .raw(env!("CARGO_PKG_VERSION"))
        .raw(" at ")
        .text(&input.generated_at.to_string())
        .raw(". Exports of the same facts: <code>--output json</code>, <code>csv</code>, <code>ocsf</code>.</p></footer>\n<script>")
        .raw(SCRIPT)
        .raw("</script></body></html>\n");
    page.0
}

fn card(page: &mut Page, value: &str, label: &str) {
    page.raw("<div class=\"card\"><b>")
        .text(value)
        .raw("</b><span>")
        .text(label)
        .raw("</span></div>");
}

fn summary(page: &mut Page, input: &ReportInput<'_>, analysis: &Analysis<'_>) {
    let report = input.report;
    page.raw(
        "<header><h1>GuardDuty findings and remediation report</h1><p class=\"muted\">Policy <b>",
    )
    .text(input.policy)
    .raw("</b> · mode ")
    .text(&report.mode.to_string())
    .raw(" · regions ")
    .text(&report.regions.join(", "))
    .raw(" · generated ")
    .text(&input.generated_at.to_string())
    .raw(
        "</p><p class=\"muted\">Times to remediate run from each finding's first sighting \
              (service.eventFirstSeen) to the recorded change that closed its port; the report's \
              own clock is not used.</p></header>\n<section class=\"cards\">",
    );
    card(page, &input.responses.len().to_string(), "findings");
    for (band, count) in &analysis.by_band {
        card(page, &count.to_string(), &band.to_string());
    }
    card(
        page,
        &analysis.remediations.len().to_string(),
        "remediated (timed)",
    );
    let median = analysis.spread.median.map_or("–".to_string(), duration);
    let p90 = analysis.spread.p90.map_or("–".to_string(), duration);
    card(page, &median, "median time to remediate");
    card(page, &p90, "p90 time to remediate");
    card(page, &analysis.open.len().to_string(), "open exposures");
    card(page, &analysis.refusals().count().to_string(), "refusals");
    card(
        page,
        &analysis.actions.len().to_string(),
        "recorded actions",
    );
    for framework in input.compliance {
        let applicable = framework.controls.len() - framework.count(ControlStatus::NotApplicable);
        card(
            page,
            &format!("{}/{}", framework.count(ControlStatus::Met), applicable),
            &format!(
                "controls met: {}",
                short_name(&framework.id, &framework.name)
            ),
        );
    }
    page.raw("</section>\n");
    if !report.failures.is_empty() {
        page.raw("<p class=\"NotMet\"><b>The pass was incomplete:</b> ")
            .num(report.failures.len())
            .raw(" step(s) failed; see Failures below.</p>\n");
    }
}

fn short_name<'a>(id: &str, name: &'a str) -> &'a str {
    match id {
        "apra-cps-234" => "APRA CPS 234",
        "mas-trm" => "MAS TRM",
        "nist-800-53-r5" => "NIST 800-53 r5",
        _ => name,
    }
}

/// Horizontal bars: one per severity band.
fn severity_chart(page: &mut Page, analysis: &Analysis<'_>) {
    let max = analysis
        .by_band
        .iter()
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
        .max(1);
    let (width, bar_space, row) = (520, 360.0, 34);
    let height = row * analysis.by_band.len() + 8;
    let _ = write!(
        page.0,
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"Findings by severity band\">"
    );
    for (k, (band, count)) in analysis.by_band.iter().enumerate() {
        let y = k * row + 4;
        let bar = (*count as f64 / max as f64 * bar_space).round();
        let _ = write!(
            page.0,
            "<text x=\"0\" y=\"{}\">{band}</text><rect x=\"90\" y=\"{y}\" width=\"{bar}\" \
             height=\"24\" rx=\"3\" fill=\"{}\"></rect><text x=\"{}\" y=\"{}\">{count}</text>",
            y + 16,
            band_colour(*band),
            96.0 + bar,
            y + 16
        );
    }
    page.raw("</svg>");
}

/// The buckets of the time-to-remediate chart: upper bounds in seconds and labels.
const BUCKETS: [(i64, &str); 7] = [
    (5 * 60, "≤ 5m"),
    (15 * 60, "≤ 15m"),
    (3600, "≤ 1h"),
    (6 * 3600, "≤ 6h"),
    (86_400, "≤ 24h"),
    (7 * 86_400, "≤ 7d"),
    (i64::MAX, "> 7d"),
];

/// How many remediated findings fall in each bucket.
pub fn buckets(seconds: impl IntoIterator<Item = i64>) -> [usize; 7] {
    let mut counts = [0; 7];
    for s in seconds {
        let k = BUCKETS
            .iter()
            .position(|(bound, _)| s <= *bound)
            .unwrap_or(6);
        counts[k] += 1;
    }
    counts
}

/// Vertical bars: remediated findings per time-to-remediate bucket.
fn remediation_chart(page: &mut Page, analysis: &Analysis<'_>) {
    if analysis.remediations.is_empty() {
        page.raw("<p class=\"muted\">No remediated finding has a recorded change yet.</p>");
        return;
    }
    let counts = buckets(analysis.remediations.iter().map(|r| r.seconds));
    let max = counts.iter().copied().max().unwrap_or(0).max(1);
    let (width, height, base, column) = (520, 170, 140.0, 72);
    let _ = write!(
        page.0,
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" \
         aria-label=\"Remediated findings by time to remediate\">\
         <line x1=\"0\" y1=\"{base}\" x2=\"{width}\" y2=\"{base}\" stroke=\"#d1d9e0\"></line>"
    );
    for (k, ((_, label), count)) in BUCKETS.iter().zip(counts).enumerate() {
        let x = k * column + 8;
        let bar = (count as f64 / max as f64 * 110.0).round();
        let _ = write!(
            page.0,
            "<rect x=\"{x}\" y=\"{}\" width=\"52\" height=\"{bar}\" rx=\"3\" fill=\"#1a7f37\"></rect>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{count}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            base - bar,
            x + 26,
            base - bar - 4.0,
            x + 26,
            base + 18.0
        );
    }
    page.raw("</svg>");
}

fn charts(page: &mut Page, analysis: &Analysis<'_>) {
    page.raw("<section class=\"charts\"><figure><figcaption>Findings by severity</figcaption>");
    severity_chart(page, analysis);
    page.raw("</figure><figure><figcaption>Time to remediate</figcaption>");
    remediation_chart(page, analysis);
    let spread = analysis.spread;
    page.raw("<p class=\"muted\">")
        .num(spread.count)
        .raw(" remediated finding(s) timed");
    if let (Some(median), Some(p90), Some(max)) = (spread.median, spread.p90, spread.max) {
        page.raw(": median ")
            .text(&duration(median))
            .raw(", p90 ")
            .text(&duration(p90))
            .raw(", longest ")
            .text(&duration(max))
            .raw(" (nearest rank)");
    }
    page.raw(".</p></figure></section>\n");
}

fn controls(page: &mut Page, input: &ReportInput<'_>) {
    let catalogue = compliance::catalogue();
    page.raw(
        "<section id=\"controls\"><h2>Controls</h2><p class=\"muted\">A control is met only \
              when every setting it depends on holds; the reason names the setting to change.</p>",
    );
    for framework in input.compliance {
        let source = catalogue.frameworks.iter().find(|f| f.id == framework.id);
        page.raw("<h3>").text(&framework.name);
        if let Some(source) = source {
            page.raw(" <span class=\"muted\">(")
                .text(&source.edition)
                .raw(")</span>");
        }
        page.raw("</h3><p class=\"muted\">")
            .num(framework.count(ControlStatus::Met))
            .raw(" met, ")
            .num(framework.count(ControlStatus::NotMet))
            .raw(" not met, ")
            .num(framework.count(ControlStatus::NotApplicable))
            .raw(
                " not applicable.</p><div class=\"wrap\"><table class=\"sort\"><thead><tr>\
                  <th>Control<th>Title<th>State<th>Reason<th>Evidence</thead><tbody>\n",
            );
        for state in &framework.controls {
            let control = catalogue.control(&framework.id, &state.id);
            page.raw("<tr><td class=\"s\">").text(&state.id);
            if state.unverified {
                page.raw(
                    " <span class=\"unv\" title=\"the framework's text could not be read: \
                          id and title from secondary sources\">unverified</span>",
                );
            }
            page.raw("<td>")
                .text(&state.title)
                .raw("<td class=\"s ")
                .raw(match state.state {
                    ControlStatus::Met => "Met\">Met",
                    ControlStatus::NotMet => "NotMet\">Not met",
                    ControlStatus::NotApplicable => "NotApplicable\">Not applicable",
                })
                .raw("<td>")
                .text(&state.reason)
                .raw("<td>");
            if let Some(control) = control {
                page.text(&control.evidence)
                    .raw("<div class=\"cite\">")
                    .text(&control.citation)
                    .raw("</div>");
            }
            page.raw("\n");
        }
        page.raw("</tbody></table></div>");
    }
    page.raw("</section>\n");
}

fn open_exposures(page: &mut Page, analysis: &Analysis<'_>) {
    page.raw("<section id=\"open\"><h2>Open exposures and refusals</h2>");
    if analysis.open.is_empty() {
        page.raw("<p>No security group a finding concerns admits its port from a public source.</p></section>\n");
        return;
    }
    page.raw(
        "<div class=\"wrap\"><table class=\"sort\"><thead><tr><th>Group<th>Account<th>Region\
              <th>Ports<th>Public sources<th>State<th>Reason<th>Findings</thead><tbody>\n",
    );
    for open in &analysis.open {
        let ports: Vec<String> = open.exposures.iter().map(ToString::to_string).collect();
        let findings: Vec<String> = open.findings.iter().map(ToString::to_string).collect();
        page.raw("<tr><td><a href=\"")
            .text(&ec2_group_url(&open.region, open.group.as_str()))
            .raw("\"><code>")
            .text(open.group.as_str())
            .raw("</code></a><td>")
            .text(open.account.as_deref().unwrap_or("(this account)"))
            .raw("<td>")
            .text(&open.region)
            .raw("<td>")
            .text(&ports.join(", "))
            .raw("<td>");
        if open.sources.is_empty() {
            page.raw("<span class=\"muted\">not named by the plan</span>");
        } else {
            page.text(&open.sources.join(", "));
        }
        page.raw("<td class=\"s ")
            .raw(match open.state {
                OpenState::Refused | OpenState::Failed => "NotMet",
                OpenState::NotApplied | OpenState::Exempt => "NotApplicable",
            })
            .raw("\">")
            .text(&open.state.to_string())
            .raw("<td>")
            .text(&open.reason)
            .raw("<td><code>")
            .text(&findings.join(" "))
            .raw("</code>\n");
    }
    page.raw("</tbody></table></div></section>\n");
}

fn findings(page: &mut Page, input: &ReportInput<'_>, analysis: &Analysis<'_>) {
    page.raw("<section id=\"findings\"><h2>Findings</h2>");
    if input.responses.is_empty() {
        page.raw("<p>The pass listed no finding.</p></section>\n");
        return;
    }
    page.raw(
        "<p class=\"muted\">Most severe first; click a column to sort.</p><div class=\"wrap\">\
              <table class=\"sort\" id=\"findings-table\"><thead><tr><th aria-sort=\"descending\">\
              Severity<th>Type<th>Finding<th>Account<th>Region<th>Instance<th>Ports<th>Response\
              <th>Detail<th>Time to remediate</thead><tbody>\n",
    );
    for seen in input.responses {
        let f = &seen.finding;
        let band = f.band();
        let (kind, detail) = response_cells(&seen.response);
        let _ = write!(
            page.0,
            "<tr><td data-s=\"{:.1}\"><span class=\"b {}\">{band}</span> {:.1}<td>",
            f.severity.value(),
            band_class(band),
            f.severity.value()
        );
        page.text(&f.finding_type)
            .raw("<td><code>")
            .text(f.id.as_str());
        if f.sample {
            page.raw("</code> (sample)");
        } else {
            page.raw("</code>");
        }
        page.raw("<td>")
            .text(&f.account_id)
            .raw("<td>")
            .text(&f.region)
            .raw("<td>")
            .text(f.instance.as_deref().unwrap_or(""))
            .raw("<td>");
        for (k, port) in f.ports.iter().enumerate() {
            if k > 0 {
                page.raw(" ");
            }
            page.num(port);
        }
        page.raw("<td class=\"s ")
            .raw(match &seen.response {
                Response::Closed { .. } => "Met",
                Response::Refused { .. } | Response::Failed { .. } => "NotMet",
                _ => "NotApplicable",
            })
            .raw("\">")
            .raw(kind)
            .raw("<td>");
        if !f.title.is_empty() && kind != "closed" {
            page.text(&f.title).raw(": ");
        }
        page.text(&detail);
        match analysis.remediation(&f.id) {
            Some(r) => {
                let _ = write!(page.0, "<td class=\"n\" data-s=\"{}\">", r.seconds);
                page.text(&duration(r.seconds));
            }
            None => {
                page.raw("<td class=\"n\" data-s=\"-1\">");
            }
        }
        page.raw("\n");
    }
    page.raw("</tbody></table></div></section>\n");
}

fn types(page: &mut Page, analysis: &Analysis<'_>) {
    if analysis.by_type.is_empty() {
        return;
    }
    page.raw(
        "<section id=\"types\"><h2>Findings by type</h2><div class=\"wrap\"><table class=\"sort\">\
              <thead><tr><th>Type<th>Findings<th>Highest severity<th>Closed</thead><tbody>\n",
    );
    for t in &analysis.by_type {
        page.raw("<tr><td>")
            .text(t.finding_type)
            .raw("<td class=\"n\" data-s=\"")
            .num(t.findings)
            .raw("\">")
            .num(t.findings);
        let _ = write!(
            page.0,
            "<td data-s=\"{:.1}\"><span class=\"b {}\">{}</span> {:.1}",
            t.max_severity.value(),
            band_class(t.max_severity.band()),
            t.max_severity.band(),
            t.max_severity.value()
        );
        page.raw("<td class=\"n\" data-s=\"")
            .num(t.closed)
            .raw("\">")
            .num(t.closed)
            .raw("\n");
    }
    page.raw("</tbody></table></div></section>\n");
}

fn action_log(page: &mut Page, input: &ReportInput<'_>, analysis: &Analysis<'_>) {
    page.raw("<section id=\"actions\"><h2>Action log</h2>");
    if analysis.actions.is_empty() {
        page.raw("<p>The change record holds no action.</p></section>\n");
        return;
    }
    page.raw(
        "<p class=\"muted\">Every rule the operator revoked or authorized, at the time it \
              recorded",
    );
    if input.record.truncated {
        page.raw("; the record reached its bound and dropped its oldest entries");
    }
    page.raw(
        ".</p><div class=\"wrap\"><table class=\"sort\"><thead><tr><th>Time<th>Action\
              <th>Group<th>Region<th>Traffic<th>Source<th>Rule<th>Finding</thead><tbody>\n",
    );
    for action in &analysis.actions {
        let rule = action.rule;
        page.raw("<tr><td data-s=\"")
            .num(action.at.map_or(-1, Timestamp::seconds))
            .raw("\">")
            .text(&action.at.map(|t| t.to_string()).unwrap_or_default())
            .raw("<td>")
            .raw(action.kind.as_str())
            .raw("<td><code>")
            .text(&rule.group)
            .raw("</code><td>")
            .text(rule.region.as_deref().unwrap_or(""))
            .raw("<td>")
            .text(&action.what())
            .raw("<td>")
            .text(&rule.cidr)
            .raw("<td><code>")
            .text(rule.rule_id.as_deref().unwrap_or(""))
            .raw("</code><td><code>")
            .text(rule.finding.as_deref().unwrap_or(""))
            .raw("</code>\n");
    }
    page.raw("</tbody></table></div></section>\n");
}

fn failures(page: &mut Page, input: &ReportInput<'_>) {
    if input.report.failures.is_empty() {
        return;
    }
    page.raw("<section id=\"failures\"><h2>Failures</h2><ul>");
    for failure in &input.report.failures {
        page.raw("<li>").text(&failure.to_string()).raw("</li>");
    }
    page.raw("</ul></section>\n");
}

#[cfg(test)]
mod tests {
    use super::super::sample::Sample;
    use super::*;

    /// The page's visible text, tags and scripts removed, entities decoded: what a
    /// reader sees (`&lt;` reads as `<`).
    fn visible_text(page: &str) -> String {
        let body = &page[page.find("<body>").unwrap()..page.rfind("<script>").unwrap()];
        let mut text = String::new();
        let mut in_tag = false;
        for c in body.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&amp;", "&")
    }

    #[test]
    fn every_text_from_aws_is_escaped() {
        let sample = Sample::realistic();
        let page = html(&sample.input());
        assert!(
            !page.contains("<script>alert"),
            "f8's title must not become markup"
        );
        assert!(page.contains(
            "EC2 instance i-8 &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;Tor&#39; nodes"
        ));
        assert_eq!(
            page.matches("<script>").count(),
            1,
            "only the sorting script"
        );
        let text = visible_text(&page);
        assert!(text.contains("EC2 instance i-8 <script>alert(\"x\")</script> & 'Tor' nodes"));
    }

    #[test]
    fn the_page_loads_nothing_from_the_network_and_links_only_to_the_console() {
        let sample = Sample::realistic();
        let page = html(&sample.input());
        for banned in [
            "src=",
            "<link",
            "@import",
            "url(",
            "<img",
            "<iframe",
            "fetch(",
            "XMLHttpRequest",
        ] {
            assert!(!page.contains(banned), "{banned}");
        }
        let hrefs: Vec<&str> = page.split("href=\"").skip(1).collect();
        assert!(!hrefs.is_empty());
        for href in hrefs {
            assert!(
                href.starts_with("https://us-east-1.console.aws.amazon.com/"),
                "{}",
                &href[..60.min(href.len())]
            );
        }
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("@media print"));
        assert!(page.contains("<svg"), "inline charts");
    }

    #[test]
    fn the_page_shows_the_summary_controls_exposures_findings_and_actions() {
        let sample = Sample::realistic();
        let page = html(&sample.input());
        let text = visible_text(&page);
        for fact in [
            "security/prod",
            "2026-03-03T09:00:00Z",
            "IR-4(1)",
            "SC-7(5)",
            "CPS 234 para 35",
            "12.2",
            "Not met",
            "to meet: close the open exposures",
            "unverified",
            "sg-6",
            "allows all traffic",
            "not applied",
            "exempt",
            "Recon:EC2/PortProbeUnprotectedPort",
            "f10",
            "2026-03-02T10:04:10Z",
            "4m 10s",
            "median 20m 0s",
            "p90 2h 0m",
            "Findings by severity",
            "Time to remediate",
        ] {
            assert!(text.contains(fact), "{fact:?} missing from the page");
        }
        // Sortable by severity: every finding row carries its severity to sort on.
        let table = &page[page.find("id=\"findings-table\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(
            table.matches("<tr><td data-s=\"").count(),
            sample.responses.len()
        );
        // The charts count what the analysis counts.
        assert_eq!(
            buckets([60, 300, 301, 3600, 90_000, 700_000]),
            [2, 1, 1, 0, 0, 1, 1]
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration(45), "45s");
        assert_eq!(duration(250), "4m 10s");
        assert_eq!(duration(7500), "2h 5m");
        assert_eq!(duration(3 * 86_400 + 4 * 3600 + 59), "3d 4h");
        assert_eq!(duration(-5), "0s");
    }

    /// The benchmark target's size bound: 10,000 findings and 1,000 changes make a
    /// page under 5 MiB (the size is deterministic; the time is measured by
    /// `cargo run --release --example report`).
    #[test]
    fn ten_thousand_findings_and_a_thousand_changes_fit_in_five_mebibytes() {
        let sample = Sample::large(10_000, 1_000);
        let page = html(&sample.input());
        assert!(
            page.len() < 5 * 1024 * 1024,
            "{} bytes for 10,000 findings",
            page.len()
        );
        let table = &page[page.find("id=\"findings-table\"").unwrap()..];
        let table = &table[..table.find("</table>").unwrap()];
        assert_eq!(table.matches("<tr><td data-s=\"").count(), 10_000);
    }
}

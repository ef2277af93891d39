//! The report as CSV (RFC 4180): a header row, then one row per finding with what the
//! operator did about it and, when it was remediated, when and how fast.

use std::fmt::Write as _;

use super::{Analysis, ReportInput, response_cells};

/// The columns, in order.
pub const HEADER: [&str; 19] = [
    "finding",
    "type",
    "title",
    "severity",
    "band",
    "account",
    "region",
    "instance",
    "security_groups",
    "ports",
    "remote_ips",
    "first_seen",
    "last_seen",
    "count",
    "sample",
    "response",
    "detail",
    "remediated_at",
    "time_to_remediate_seconds",
];

/// One row per finding, CRLF line ends, a field quoted when it holds a comma, a quote
/// or a line break (quotes doubled).
pub fn csv(input: &ReportInput<'_>) -> String {
    let analysis = Analysis::of(input);
    let mut out = String::with_capacity(256 * (input.responses.len() + 1));
    push_row(&mut out, HEADER.iter().map(|h| h.to_string()));
    for seen in input.responses {
        let f = &seen.finding;
        let (response, detail) = response_cells(&seen.response);
        let remediation = analysis.remediation(&f.id);
        let ports: Vec<String> = f.ports.iter().map(u16::to_string).collect();
        let ips: Vec<String> = f.remote_ips.iter().map(ToString::to_string).collect();
        push_row(
            &mut out,
            [
                f.id.to_string(),
                f.finding_type.clone(),
                f.title.clone(),
                format!("{:.1}", f.severity.value()),
                f.band().to_string(),
                f.account_id.clone(),
                f.region.clone(),
                f.instance.clone().unwrap_or_default(),
                f.security_groups.join(" "),
                ports.join(" "),
                ips.join(" "),
                f.first_seen.clone().unwrap_or_default(),
                f.last_seen.clone().unwrap_or_default(),
                f.count.map(|c| c.to_string()).unwrap_or_default(),
                f.sample.to_string(),
                response.to_string(),
                detail,
                remediation
                    .map(|r| r.closed_at.to_string())
                    .unwrap_or_default(),
                remediation
                    .map(|r| r.seconds.to_string())
                    .unwrap_or_default(),
            ],
        );
    }
    out
}

fn push_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    for (k, cell) in cells.into_iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            let _ = write!(out, "\"{}\"", cell.replace('"', "\"\""));
        } else {
            out.push_str(&cell);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::sample::Sample;
    use super::*;

    /// A small RFC 4180 reader: what a spreadsheet sees.
    fn parse(text: &str) -> Vec<Vec<String>> {
        let mut rows = Vec::new();
        let mut row = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cell.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => cell.push(c),
                (false, '"') if cell.is_empty() => quoted = true,
                (false, ',') => row.push(std::mem::take(&mut cell)),
                (false, '\r') if chars.peek() == Some(&'\n') => {
                    chars.next();
                    row.push(std::mem::take(&mut cell));
                    rows.push(std::mem::take(&mut row));
                }
                (false, c) => {
                    assert!(c != '\n' && c != '\r', "a bare line break outside quotes");
                    cell.push(c);
                }
            }
        }
        assert!(
            !quoted && cell.is_empty() && row.is_empty(),
            "a row left open"
        );
        rows
    }

    #[test]
    fn each_finding_is_one_row_under_the_header_with_its_response_and_time() {
        let sample = Sample::realistic();
        let text = csv(&sample.input());
        let rows = parse(&text);
        assert_eq!(rows[0], HEADER);
        assert_eq!(rows.len(), sample.responses.len() + 1);
        assert!(rows.iter().all(|r| r.len() == HEADER.len()));
        let column = |name: &str| HEADER.iter().position(|h| *h == name).unwrap();
        let f1 = rows.iter().find(|r| r[0] == "f1").unwrap();
        assert_eq!(f1[column("response")], "closed");
        assert_eq!(f1[column("remediated_at")], "2026-03-02T10:04:10Z");
        assert_eq!(f1[column("time_to_remediate_seconds")], "250");
        assert_eq!(f1[column("band")], "MEDIUM");
        let f5 = rows.iter().find(|r| r[0] == "f5").unwrap();
        assert_eq!(f5[column("response")], "planned");
        assert_eq!(f5[column("time_to_remediate_seconds")], "");
        let f2 = rows.iter().find(|r| r[0] == "f2").unwrap();
        assert_eq!(f2[column("ports")], "22 3389");
    }

    #[test]
    fn cells_with_commas_quotes_and_line_breaks_are_quoted_and_read_back_exactly() {
        let mut sample = Sample::realistic();
        let tricky = "probe, \"deep\"\r\nsecond line, 'quoted'";
        sample.responses[0].finding.title = tricky.to_string();
        let text = csv(&sample.input());
        let first_row = text.split("\r\n").nth(1).unwrap();
        assert!(
            first_row.contains("\"probe, \"\"deep\"\""),
            "quoted, quotes doubled: {first_row}"
        );
        let rows = parse(&text);
        assert_eq!(rows[1][2], tricky, "read back exactly");
        assert_eq!(rows.len(), sample.responses.len() + 1);
        // The markup of f8's title is plain text here, untouched.
        let f8 = rows.iter().find(|r| r[0] == "f8").unwrap();
        assert_eq!(
            f8[2],
            "EC2 instance i-8 <script>alert(\"x\")</script> & 'Tor' nodes"
        );
        assert!(
            text.contains("\"EC2 instance i-8 <script>alert(\"\"x\"\")</script> & 'Tor' nodes\"")
        );
        // A plain cell is not quoted.
        assert!(text.starts_with("finding,type,title,"));
    }
}

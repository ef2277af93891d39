//! The HTML report in a real browser: headless Chromium (the Debian package `chromium`,
//! which scripts/test.sh installs and names in GDO_CHROMIUM) loads the page without a
//! console message, runs its sorting script, its DOM holds the controls and the
//! findings, and a screenshot of it is not blank.
//!
//! The README's screenshot is made the same way, by hand (not by a test):
//!
//! ```text
//! cargo run --example report -- sample target/report.html
//! chromium --headless=new --disable-gpu --no-sandbox --hide-scrollbars \
//!     --window-size=1280,1600 --screenshot=docs/report.png "file://$PWD/target/report.html"
//! ```

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use guardduty_operator::report::{self, sample::Sample};

/// Decodes an 8-bit RGB or RGBA PNG with Python's standard library (zlib) and prints
/// `WIDTH HEIGHT DISTINCT_COLOURS SHARE_NOT_BACKGROUND`.
const PNG_STATS: &str = r#"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, ihdr = 8, [], None
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    pos += 12 + length
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat.append(body)
    elif kind == b"IEND":
        break
width, height, depth, colour, _, _, interlace = ihdr
channels = {2: 3, 6: 4}.get(colour)
assert depth == 8 and channels and not interlace, f"unsupported PNG {ihdr}"
raw = zlib.decompress(b"".join(idat))
stride = width * channels
prev, at, colours, other, background = bytearray(stride), 0, set(), 0, None
for _ in range(height):
    kind, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
    at += 1 + stride
    if kind == 1:
        for i in range(channels, stride):
            line[i] = (line[i] + line[i - channels]) & 255
    elif kind == 2:
        line = bytearray((a + b) & 255 for a, b in zip(line, prev))
    elif kind == 3:
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
    elif kind == 4:
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], (prev[i - channels] if i >= channels else 0)
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if background is None:
        background = bytes(line[:3])
    for x in range(0, stride, channels):
        px = bytes(line[x:x + 3])
        colours.add(px)
        other += px != background
    prev = line
print(width, height, len(colours), other / (width * height))
"#;

/// The browser: GDO_CHROMIUM, else `chromium` or `chromium-browser` on PATH.
fn chromium() -> PathBuf {
    if let Some(path) = std::env::var_os("GDO_CHROMIUM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no headless Chromium found (GDO_CHROMIUM unset, no chromium or chromium-browser on \
         PATH): run the tests with scripts/test.sh, which installs the Debian package chromium, \
         or install it yourself (apt-get install chromium)"
    )
}

fn python() -> PathBuf {
    match std::env::var_os("GDO_VENV").filter(|p| !p.is_empty()) {
        Some(venv) => Path::new(&venv).join("bin/python"),
        None => PathBuf::from("python3"),
    }
}

/// Runs a command to its end, killed after `limit`.
fn run(command: &mut Command, limit: Duration) -> Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let started = Instant::now();
    // Drain the pipes while waiting, so a chatty browser never blocks on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut buf).ok();
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut buf).ok();
        buf
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            child.wait().ok();
            panic!("{command:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Headless Chromium on `page` with a profile of its own, logging to stderr.
fn browser(profile: &Path, page: &Path, extra: &[&str]) -> Output {
    let output = run(
        Command::new(chromium())
            .args([
                "--headless=new",
                "--disable-gpu",
                "--no-sandbox",
                "--no-first-run",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(format!("file://{}", page.display())),
        Duration::from_secs(120),
    );
    assert!(
        output.status.success(),
        "chromium failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The page's console messages (errors, warnings, logs, uncaught exceptions), as
/// Chromium logs them on stderr: `…:INFO:CONSOLE:1] "message", source: … (1)`.
fn console_messages(stderr: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_string)
        .collect()
}

fn write_page(dir: &Path) -> (Sample, PathBuf) {
    let sample = Sample::realistic();
    let path = dir.join("report.html");
    std::fs::write(&path, report::html(&sample.input())).unwrap();
    (sample, path)
}

#[test]
fn the_html_report_loads_in_chromium_without_console_messages_and_shows_controls_and_findings() {
    let dir = tempfile::tempdir().unwrap();
    // The check itself works: a page with a script error is caught.
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><title>x</title><p>x</p><script>notDefinedAnywhere()</script>",
    )
    .unwrap();
    let output = browser(&dir.path().join("profile-broken"), &broken, &["--dump-dom"]);
    let messages = console_messages(&output.stderr);
    assert!(
        messages.iter().any(|m| m.contains("notDefinedAnywhere")),
        "a script error must show on stderr: {messages:?}"
    );

    let (sample, page) = write_page(dir.path());
    let output = browser(&dir.path().join("profile"), &page, &["--dump-dom"]);
    assert_eq!(
        console_messages(&output.stderr),
        Vec::<String>::new(),
        "the page logs nothing"
    );
    let dom = String::from_utf8(output.stdout).unwrap();
    assert!(
        dom.contains("<h1>GuardDuty findings and remediation report</h1>"),
        "{dom:.300}"
    );
    // The sorting script ran: it made every header cell focusable.
    assert!(
        dom.contains("<th tabindex=\"0\""),
        "the sorting script did not run"
    );
    for framework in &sample.compliance {
        assert!(dom.contains(&framework.name), "{}", framework.name);
        for control in &framework.controls {
            let id = control.id.replace('&', "&amp;");
            assert!(dom.contains(&format!(">{id}")), "control {id} missing");
        }
    }
    for seen in &sample.responses {
        assert!(
            dom.contains(&format!("<code>{}</code>", seen.finding.id)),
            "finding {} missing",
            seen.finding.id
        );
    }
    // A finding title with markup is text in the DOM, not an element.
    assert!(dom.contains("i-8 &lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; 'Tor' nodes"));
    assert!(!dom.contains("<script>alert"));
}

#[test]
fn a_screenshot_of_the_html_report_is_not_blank() {
    let dir = tempfile::tempdir().unwrap();
    let (_, page) = write_page(dir.path());
    let shot = dir.path().join("report.png");
    browser(
        &dir.path().join("profile"),
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let output = run(
        Command::new(python()).arg("-c").arg(PNG_STATS).arg(&shot),
        Duration::from_secs(120),
    );
    assert!(
        output.status.success(),
        "the screenshot could not be decoded: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stats = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<&str> = stats.split_whitespace().collect();
    let [width, height, colours, share] = fields[..] else {
        panic!("unexpected answer: {stats}");
    };
    assert_eq!((width, height), ("1280", "2000"));
    let colours: usize = colours.parse().unwrap();
    let share: f64 = share.parse().unwrap();
    // Text, the severity colours and the charts: many colours, a real share of the
    // page drawn on (a blank or one-colour page has 1 colour and share 0).
    assert!(
        colours >= 32,
        "{colours} distinct colours: the page looks blank"
    );
    assert!(
        share > 0.03,
        "only {share} of the pixels differ from the background"
    );
}

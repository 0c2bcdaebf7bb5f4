//! Opens a page in a real headless Chromium (Debian's `chromium-headless-shell`), takes a
//! screenshot and says what went wrong on the page: console errors, uncaught exceptions,
//! errors the browser logged (a resource that failed to load, a blocked request) and every
//! URL the page fetched besides itself.
//!
//! Chromium's `--enable-logging` prints console messages without their level (a
//! `console.log` and a `console.error` look the same), so the page is driven over the
//! DevTools protocol instead, on the pipe Chromium opens with `--remote-debugging-pipe`
//! (file descriptors 3 and 4, NUL-terminated JSON messages; no port, no WebSocket):
//! `Runtime.consoleAPICalled` gives each console call with its level,
//! `Runtime.exceptionThrown` each uncaught exception, `Log.entryAdded` the browser's own
//! errors and `Network.requestWillBeSent` each request.
//!
//! ```no_run
//! use std::path::Path;
//! let check = swarm_chaos::browser::check_page(
//!     Path::new("report.html"),
//!     Path::new("report.png"),
//!     (1280, 1600),
//! )?;
//! assert!(check.console_errors.is_empty(), "{:#?}", check.console_errors);
//! # Ok::<(), swarm_chaos::browser::BrowserError>(())
//! ```

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Value};

/// Browser executables tried, in order, on `PATH`: Debian's headless shell, then a full
/// Chromium (which runs headless with `--headless`).
pub const BROWSERS: [&str; 2] = ["chromium-headless-shell", "chromium"];

/// Longest wait for the whole check: start, load, screenshot.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How long events are still collected after the load event, for errors raised just
/// after it (a timer, a late resource).
pub const SETTLE: Duration = Duration::from_millis(300);

/// One thing that went wrong on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleError {
    /// `console` (`console.error`, a failed `console.assert`), `exception` (uncaught) or
    /// `browser` (an error Chromium logged: a resource that failed to load, ...).
    pub source: &'static str,
    /// What it said.
    pub text: String,
}

/// What the check saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCheck {
    /// Console errors, uncaught exceptions and browser errors, in order.
    pub console_errors: Vec<ConsoleError>,
    /// URLs the page requested other than itself (a self-contained page has none;
    /// `data:` URLs are not requests and are left out).
    pub requests: Vec<String>,
    /// Size of the screenshot file, bytes.
    pub png_bytes: usize,
    /// Screenshot width and height, pixels: the viewport's width, and the page's full
    /// height (at least the viewport's).
    pub png_size: (u32, u32),
}

/// Why the page could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// No browser on `PATH`.
    #[error(
        "no headless Chromium found (looked for {} on PATH): install Debian's chromium-headless-shell (apt-get install chromium-headless-shell)",
        BROWSERS.join(", ")
    )]
    NotInstalled,
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Chromium answered a protocol command with an error, or something unexpected.
    #[error("DevTools protocol: {message} (Chromium's log: {log})")]
    Protocol {
        /// What went wrong.
        message: String,
        /// The end of Chromium's stderr.
        log: String,
    },
    /// Chromium did not answer in time, or exited.
    #[error("{what} (within {after:?}; Chromium's log: {log})")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
        /// The end of Chromium's stderr.
        log: String,
    },
    /// The screenshot is not a PNG of the requested size.
    #[error("the screenshot is not usable: {0}")]
    BadPng(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BrowserError {
    let what = what.into();
    move |source| BrowserError::Io { what, source }
}

/// The first of [`BROWSERS`] on `PATH`.
pub fn find_browser() -> Result<PathBuf, BrowserError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    BROWSERS
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
        .ok_or(BrowserError::NotInstalled)
}

/// Loads `html` (a file) in a `size.0` x `size.1` viewport (CSS pixels, scale 1), writes a
/// PNG screenshot of the whole page (the viewport's width, the page's height if taller) to
/// `screenshot`, and reports what went wrong on the page. Runs as root
/// (`--no-sandbox`), with a fresh profile in a temporary directory that is removed
/// afterwards. Fails when Chromium is missing ([`BrowserError::NotInstalled`]), does not
/// answer within [`DEADLINE`], or the screenshot is not a PNG of `size`.
pub fn check_page(
    html: &Path,
    screenshot: &Path,
    size: (u32, u32),
) -> Result<PageCheck, BrowserError> {
    let browser = find_browser()?;
    let page = std::fs::canonicalize(html).map_err(io(format!("{}", html.display())))?;
    let url = format!("file://{}", page.display());
    let profile = TempDir::new()?;
    let mut session = Session::start(&browser, &profile.0, size)?;
    let result = session.check(&url, size);
    session.close();
    let (check, png) = result?;
    std::fs::write(screenshot, &png).map_err(io(format!("{}", screenshot.display())))?;
    Ok(check)
}

/// A running Chromium and its protocol pipe.
struct Session {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    /// Messages read while waiting for another: events, in order.
    pending: VecDeque<Value>,
    next_id: u64,
    log: PathBuf,
    deadline: Instant,
    console_errors: Vec<ConsoleError>,
    requests: Vec<String>,
}

impl Session {
    fn start(browser: &Path, profile: &Path, size: (u32, u32)) -> Result<Self, BrowserError> {
        let log = profile.join("chromium.log");
        let stderr = File::create(&log).map_err(io("chromium.log"))?;
        // Chromium reads commands from fd 3 and writes answers to fd 4: the shell maps
        // this process's pipes there (std cannot map other descriptors without unsafe
        // code), then gives Chromium /dev/null for stdin and stdout.
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", size.0, size.1))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(io(format!("starting {}", browser.display())))?;
        let (Some(to_browser), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(BrowserError::Protocol {
                message: "no pipe to Chromium".into(),
                log: String::new(),
            });
        };
        let (tx, from_browser) = mpsc::channel();
        // A blocking reader on its own thread, so waits can time out.
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Ok(Self {
            child,
            to_browser,
            from_browser,
            pending: VecDeque::new(),
            next_id: 0,
            log,
            deadline: Instant::now() + DEADLINE,
            console_errors: Vec::new(),
            requests: Vec::new(),
        })
    }

    /// The last lines of Chromium's stderr, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    fn timeout(&self, what: &str) -> BrowserError {
        BrowserError::Timeout {
            what: what.to_owned(),
            after: DEADLINE,
            log: self.log_tail(),
        }
    }

    fn protocol(&self, message: String) -> BrowserError {
        BrowserError::Protocol {
            message,
            log: self.log_tail(),
        }
    }

    /// The next message, until `until`; `None` at `until`.
    fn next(&mut self, until: Instant) -> Result<Option<Value>, BrowserError> {
        let wait = until.saturating_duration_since(Instant::now());
        match self.from_browser.recv_timeout(wait) {
            Ok(v) => Ok(Some(v)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => {
                Err(self.timeout("Chromium closed its DevTools pipe (it exited)"))
            }
        }
    }

    /// Sends a command (to the page when `session` is given) and waits for its answer;
    /// events that arrive meanwhile are recorded.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, BrowserError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = msg.to_string().into_bytes();
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .and_then(|()| self.to_browser.flush())
            .map_err(io(format!("sending {method} to Chromium")))?;
        loop {
            let Some(v) = self.next(self.deadline)? else {
                return Err(self.timeout(&format!("no answer to {method}")));
            };
            if v.get("id").and_then(Value::as_u64) == Some(id) {
                if let Some(e) = v.get("error") {
                    return Err(self.protocol(format!("{method}: {e}")));
                }
                return Ok(v.get("result").cloned().unwrap_or(Value::Null));
            }
            self.pending.push_back(v);
        }
    }

    /// Records what an event says; returns its method.
    fn record(&mut self, event: &Value, page_url: &str) -> String {
        let method = event
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let p = &event["params"];
        match method.as_str() {
            "Runtime.consoleAPICalled" => {
                let kind = p["type"].as_str().unwrap_or_default();
                if kind == "error" || kind == "assert" {
                    let args: Vec<String> = p["args"]
                        .as_array()
                        .map(|args| args.iter().map(remote_object_text).collect())
                        .unwrap_or_default();
                    self.console_errors.push(ConsoleError {
                        source: "console",
                        text: args.join(" "),
                    });
                }
            }
            "Runtime.exceptionThrown" => {
                let d = &p["exceptionDetails"];
                let text = d["exception"]["description"]
                    .as_str()
                    .or_else(|| d["text"].as_str())
                    .unwrap_or("uncaught exception");
                self.console_errors.push(ConsoleError {
                    source: "exception",
                    text: text.to_owned(),
                });
            }
            "Log.entryAdded" => {
                let entry = &p["entry"];
                if entry["level"].as_str() == Some("error") {
                    let text = entry["text"].as_str().unwrap_or_default();
                    let text = match entry["url"].as_str() {
                        Some(url) if !url.is_empty() => format!("{text} ({url})"),
                        _ => text.to_owned(),
                    };
                    self.console_errors.push(ConsoleError {
                        source: "browser",
                        text,
                    });
                }
            }
            "Network.requestWillBeSent" => {
                let url = p["request"]["url"].as_str().unwrap_or_default();
                if url != page_url && !url.starts_with("data:") {
                    self.requests.push(url.to_owned());
                }
            }
            _ => {}
        }
        method
    }

    /// Loads the page and takes the screenshot.
    fn check(&mut self, url: &str, size: (u32, u32)) -> Result<(PageCheck, Vec<u8>), BrowserError> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let target_id = target["targetId"].as_str().unwrap_or_default().to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        )?;
        let Some(sid) = attached["sessionId"].as_str().map(str::to_owned) else {
            return Err(self.protocol(format!("no session in {attached}")));
        };
        let s = Some(sid.as_str());
        for domain in ["Page", "Runtime", "Log", "Network"] {
            self.call(s, &format!("{domain}.enable"), json!({}))?;
        }
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": size.0, "height": size.1, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        // Events of the blank page before navigation are not the page's.
        self.pending.clear();
        self.console_errors.clear();
        self.requests.clear();
        let nav = self.call(s, "Page.navigate", json!({ "url": url }))?;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            return Err(self.protocol(format!("loading {url}: {e}")));
        }
        // Until the load event, then SETTLE more.
        let mut loaded_at: Option<Instant> = None;
        loop {
            let until = loaded_at.map_or(self.deadline, |t| (t + SETTLE).min(self.deadline));
            let event = match self.pending.pop_front() {
                Some(e) => e,
                None => match self.next(until)? {
                    Some(e) => e,
                    None if loaded_at.is_some() => break,
                    None => return Err(self.timeout(&format!("no load event for {url}"))),
                },
            };
            if self.record(&event, url) == "Page.loadEventFired" && event["sessionId"].as_str() == s
            {
                loaded_at.get_or_insert_with(Instant::now);
            }
        }
        // The whole page, not only the viewport: its height from the layout.
        let metrics = self.call(s, "Page.getLayoutMetrics", json!({}))?;
        let content_height = metrics["cssContentSize"]["height"]
            .as_f64()
            .map_or(size.1, |h| h.ceil() as u32)
            .max(size.1);
        let shot = self.call(
            s,
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": size.0, "height": content_height, "scale": 1 },
            }),
        )?;
        // Events that arrived while waiting for the screenshot still count.
        while let Some(e) = self.pending.pop_front() {
            self.record(&e, url);
        }
        let data = shot["data"].as_str().unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| BrowserError::BadPng(format!("not base64: {e}")))?;
        let png_size = png_dimensions(&png)?;
        if png_size != (size.0, content_height) {
            return Err(BrowserError::BadPng(format!(
                "{}x{} pixels, not the {}x{content_height} of the page",
                png_size.0, png_size.1, size.0
            )));
        }
        Ok((
            PageCheck {
                console_errors: std::mem::take(&mut self.console_errors),
                requests: std::mem::take(&mut self.requests),
                png_bytes: png.len(),
                png_size,
            },
            png,
        ))
    }

    /// Asks Chromium to quit; kills it (our child, by its handle) if it does not.
    fn close(&mut self) {
        let _ = self.call(None, "Browser.close", json!({}));
        crate::cmd::wait_or_kill(&mut self.child, Duration::from_secs(5));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // After close() this finds it exited; on an early error it ends it.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A console argument as text: its value, else its description (an Error's stack).
fn remote_object_text(o: &Value) -> String {
    match (o.get("value"), o.get("description")) {
        (Some(Value::String(s)), _) => s.clone(),
        (Some(v), _) => v.to_string(),
        (None, Some(Value::String(d))) => d.clone(),
        _ => o["type"].as_str().unwrap_or_default().to_owned(),
    }
}

/// Width and height of a PNG, from its IHDR chunk (PNG spec: the 8-byte signature, then
/// IHDR's length and type, then width and height as big-endian u32).
pub fn png_dimensions(png: &[u8]) -> Result<(u32, u32), BrowserError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 24 || !png.starts_with(SIGNATURE) || &png[12..16] != b"IHDR" {
        return Err(BrowserError::BadPng(format!(
            "{} bytes without a PNG signature and IHDR",
            png.len()
        )));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (w, h) = (be(&png[16..20]), be(&png[20..24]));
    if w == 0 || h == 0 {
        return Err(BrowserError::BadPng(format!("{w}x{h} pixels")));
    }
    Ok((w, h))
}

/// A private directory for the browser profile, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<Self, BrowserError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "swarm-chaos-browser-{}-{nanos}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io(format!("{}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

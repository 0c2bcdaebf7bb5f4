//! The browser check sees what it claims to see: a deliberate `console.error`, an uncaught
//! exception and a fetched resource are caught; a plain page has none. Needs Debian's
//! `chromium-headless-shell` (`.ci/run` installs it): without it these tests fail, saying
//! so, rather than pass unchecked.

use std::path::{Path, PathBuf};

use swarm_chaos::browser::{check_page, png_dimensions, PageCheck};

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "swarm-chaos-browser-test-{}-{name}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn check(name: &str, body: &str) -> (PageCheck, PathBuf) {
    let d = dir(name);
    let html = d.join("page.html");
    std::fs::write(
        &html,
        format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>t</title></head><body>{body}</body></html>"),
    )
    .expect("write page");
    let png = d.join("shot.png");
    let result = check_page(&html, &png, (640, 480)).unwrap_or_else(|e| panic!("{e}"));
    (result, png)
}

fn cleanup(png: &Path) {
    if let Some(d) = png.parent() {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn a_plain_page_has_no_errors_and_a_screenshot_of_the_viewport() {
    let (c, png) = check("plain", "<h1>Hello</h1><p>No script at all.</p>");
    assert!(c.console_errors.is_empty(), "{:#?}", c.console_errors);
    assert!(c.requests.is_empty(), "{:#?}", c.requests);
    assert_eq!(c.png_size, (640, 480));
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert_eq!(bytes.len(), c.png_bytes);
    assert_eq!(png_dimensions(&bytes).expect("a PNG"), (640, 480));
    cleanup(&png);
}

#[test]
fn a_deliberate_console_error_is_caught_and_a_console_log_is_not() {
    let (c, png) = check(
        "console",
        "<script>console.log('just a log'); console.warn('a warning'); console.error('deliberate', 42);</script>",
    );
    assert_eq!(c.console_errors.len(), 1, "{:#?}", c.console_errors);
    assert_eq!(c.console_errors[0].source, "console");
    assert_eq!(c.console_errors[0].text, "deliberate 42");
    cleanup(&png);
}

#[test]
fn an_uncaught_exception_is_caught() {
    let (c, png) = check("exception", "<script>undefinedFunction();</script>");
    assert!(
        c.console_errors
            .iter()
            .any(|e| e.source == "exception" && e.text.contains("undefinedFunction")),
        "{:#?}",
        c.console_errors
    );
    cleanup(&png);
}

#[test]
fn an_error_raised_just_after_load_is_caught() {
    let (c, png) = check(
        "late",
        "<script>addEventListener('load', () => setTimeout(() => { throw new Error('late one'); }, 50));</script>",
    );
    assert!(
        c.console_errors.iter().any(|e| e.text.contains("late one")),
        "{:#?}",
        c.console_errors
    );
    cleanup(&png);
}

#[test]
fn a_fetched_resource_is_listed_and_its_failure_caught() {
    // Port 9 (discard) on loopback refuses at once: the load is not held up.
    let (c, png) = check("fetch", "<img src=\"http://127.0.0.1:9/x.png\" alt=\"x\">");
    assert_eq!(c.requests, ["http://127.0.0.1:9/x.png"], "{c:#?}");
    assert!(
        c.console_errors.iter().any(|e| e.source == "browser"),
        "{:#?}",
        c.console_errors
    );
    cleanup(&png);
}

#[test]
fn a_long_page_is_shot_whole() {
    let (c, png) = check("long", "<div style=\"height: 2000px\">tall</div>");
    assert!(c.console_errors.is_empty(), "{:#?}", c.console_errors);
    assert_eq!(c.png_size.0, 640);
    assert!(c.png_size.1 >= 2000, "{:?}", c.png_size);
    cleanup(&png);
}

//! Standard output for every command: lines for people ([`outln!`]) and `--json` lines
//! ([`emit`]), both ending quietly when the reader went away (`ferry status DIR | head -1`).
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe fails with EPIPE and `println!` would panic.
//! Here the first broken pipe closes stdout for the rest of the run instead: a command that
//! prints as it goes (a fetch's progress lines) carries on with its work and exits with its own
//! status, and nothing is printed about it.
//!
//! `--json` lines are one JSON object each, with `event` (what the line is), `schema` (the
//! version of these lines' format, [`SCHEMA`]) and `ts` (RFC 3339 UTC, milliseconds).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The version of the `--json` line format. Raised when a field changes meaning or goes away;
/// new fields may appear within a version.
pub const SCHEMA: u32 = 1;

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to stdout, unless the reader has gone.
pub fn line(text: &str) {
    raw(&format!("{text}\n"));
}

/// Writes `text` as it is to stdout, unless the reader has gone.
pub fn raw(text: &str) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = written {
        // Broken pipe or any other failure to write stdout: stop writing, keep working.
        CLOSED.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            tracing::warn!("cannot write to stdout: {e}; no more output there");
        }
    }
}

/// `println!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::line("")
    };
    ($($arg:tt)*) => {
        $crate::output::line(&format!($($arg)*))
    };
}

/// The JSON line for `event`: `event`, `schema` and `ts`, and `fields` (an object; anything
/// else goes under `data`).
pub fn json_line(event: &str, fields: serde_json::Value) -> String {
    let mut line = serde_json::Map::new();
    line.insert("event".into(), event.into());
    line.insert("schema".into(), SCHEMA.into());
    line.insert("ts".into(), now().into());
    match fields {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                if !line.contains_key(&k) {
                    line.insert(k, v);
                }
            }
        }
        serde_json::Value::Null => {}
        other => {
            line.insert("data".into(), other);
        }
    }
    serde_json::Value::Object(line).to_string()
}

/// Prints one `--json` line.
pub fn emit(event: &str, fields: serde_json::Value) {
    line(&json_line(event, fields));
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_event_schema_and_time_first() {
        let l = json_line(
            "progress",
            serde_json::json!({"bytes_done": 5, "event": "x"}),
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["event"], "progress", "the event is not overwritten");
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["bytes_done"], 5);
        let ts = v["ts"].as_str().unwrap();
        humantime::parse_rfc3339(ts).unwrap();
    }
}

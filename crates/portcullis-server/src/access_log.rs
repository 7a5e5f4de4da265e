//! The access log: one line per request, written in batches.
//!
//! Each line is formatted on the request's thread into a shared buffer; a
//! background thread writes the buffer to stderr [`FLUSH_INTERVAL`] after
//! its first line, or at once when it holds [`FLUSH_BYTES`] — nginx's
//! `access_log … buffer=… flush=…`. Before this, every request made its
//! own `write(2)` to stderr and went through `tracing`'s generic
//! formatter: together about a fifth of an authenticated request's cost.
//!
//! The lines look exactly as `tracing-subscriber`'s formatter wrote them
//! (text: `… INFO portcullis::access: request request_id=… status=200 …`;
//! JSON: `{"timestamp":…,"level":"INFO","fields":{…},"target":"portcullis::access"}`),
//! so log shippers parse them as before. What changes: an access line may
//! reach stderr up to [`FLUSH_INTERVAL`] after the request, so it can
//! appear after a later non-access line; [`flush`] runs when the server
//! stops, and a process killed outright (SIGKILL) loses at most that much.
//!
//! `LOG` still governs the access log: a filter that turns off
//! `portcullis::access` at `info` (e.g. `LOG=warn`) turns it off.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::Version;

/// The longest a line waits in the buffer.
pub(crate) const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A buffer this full is written at once, not at the next interval.
const FLUSH_BYTES: usize = 64 * 1024;

/// A buffer this full is written by the request's own thread: if stderr
/// cannot keep up, requests wait for it as they did before batching,
/// rather than the buffer growing without bound.
const MAX_BYTES: usize = 4 * 1024 * 1024;

/// The `target` every access line carries.
pub(crate) const TARGET: &str = "portcullis::access";

/// How the lines are written (`ACCESS_LOG=text|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Text,
    Json,
}

/// What one line says about one request. Never headers, cookies, bodies
/// or the query string: only what identifies the request.
#[derive(Debug)]
pub(crate) struct Entry<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) route: &'a str,
    pub(crate) version: Version,
    pub(crate) status: u16,
    pub(crate) duration_ms: u64,
}

/// The process's buffer and the thread that empties it.
struct Log {
    buffer: Mutex<Vec<u8>>,
    flusher: Thread,
}

static LOG: OnceLock<Option<Log>> = OnceLock::new();

/// The shared log, its flushing thread started on first use; `None` if
/// the thread cannot be started (lines are then written at once).
fn log() -> Option<&'static Log> {
    LOG.get_or_init(|| {
        std::thread::Builder::new()
            .name("access-log".to_owned())
            .spawn(|| {
                loop {
                    // Idle until a line arrives in an empty buffer: an idle
                    // server's log thread does not wake at all.
                    std::thread::park();
                    // The batch gathers; a full buffer cuts it short.
                    std::thread::park_timeout(FLUSH_INTERVAL);
                    flush();
                }
            })
            .ok()
            .map(|handle| Log {
                buffer: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
                flusher: handle.thread().clone(),
            })
    })
    .as_ref()
}

fn lock(buffer: &Mutex<Vec<u8>>) -> MutexGuard<'_, Vec<u8>> {
    // A panic while appending leaves at worst a partial line: keep going.
    buffer.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Append one request's line.
pub(crate) fn record(format: Format, entry: &Entry<'_>) {
    let Some(log) = log() else {
        let mut line = Vec::with_capacity(256);
        write_line(&mut line, format, entry, wall_clock());
        write_out(&line);
        return;
    };
    let mut buffer = lock(&log.buffer);
    let first = buffer.is_empty();
    write_line(&mut buffer, format, entry, wall_clock());
    let len = buffer.len();
    if len >= MAX_BYTES {
        let full = std::mem::replace(&mut *buffer, Vec::with_capacity(FLUSH_BYTES));
        drop(buffer);
        write_out(&full);
    } else if first || len >= FLUSH_BYTES {
        // The first line starts a batch's wait; a full buffer ends it.
        drop(buffer);
        log.flusher.unpark();
    }
}

/// A log line's time is the wall clock, as tracing's own lines have it,
/// not the injected token clock (tests that move token time must not move
/// the log's).
#[expect(
    clippy::disallowed_methods,
    reason = "log timestamps are wall-clock time, like tracing's"
)]
fn wall_clock() -> SystemTime {
    SystemTime::now()
}

/// Write what is buffered now (the flushing thread's job, and the last
/// thing a stopping server does).
pub(crate) fn flush() {
    let Some(Some(log)) = LOG.get() else {
        return;
    };
    let pending = {
        let mut buffer = lock(&log.buffer);
        if buffer.is_empty() {
            return;
        }
        std::mem::replace(&mut *buffer, Vec::with_capacity(FLUSH_BYTES))
    };
    write_out(&pending);
}

fn write_out(bytes: &[u8]) {
    // Whole lines, under stderr's lock: never interleaved with another
    // log line. A failed write (stderr closed) has nowhere to be reported.
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// One line, ending in `\n`, as tracing-subscriber's `fmt` layer writes an
/// `info!` event with these fields (without colours).
fn write_line(out: &mut Vec<u8>, format: Format, entry: &Entry<'_>, now: SystemTime) {
    match format {
        Format::Text => {
            write_timestamp(out, now);
            out.extend_from_slice(b"  INFO portcullis::access: request request_id=");
            out.extend_from_slice(entry.request_id.as_bytes());
            out.extend_from_slice(b" remote=");
            if let Some(remote) = entry.remote {
                write_address(out, remote);
            }
            out.extend_from_slice(b" method=");
            out.extend_from_slice(entry.method.as_bytes());
            out.extend_from_slice(b" path=");
            out.extend_from_slice(entry.path.as_bytes());
            out.extend_from_slice(b" route=");
            out.extend_from_slice(entry.route.as_bytes());
            out.extend_from_slice(b" version=");
            out.extend_from_slice(version(entry.version).as_bytes());
            out.extend_from_slice(b" status=");
            write_display(out, entry.status);
            out.extend_from_slice(b" duration_ms=");
            write_display(out, entry.duration_ms);
        }
        Format::Json => {
            out.extend_from_slice(b"{\"timestamp\":\"");
            write_timestamp(out, now);
            out.extend_from_slice(
                b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"request_id\":",
            );
            write_json_str(out, entry.request_id);
            out.extend_from_slice(b",\"remote\":");
            match entry.remote {
                Some(remote) => {
                    out.push(b'"');
                    write_address(out, remote);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"\"\""),
            }
            out.extend_from_slice(b",\"method\":");
            write_json_str(out, entry.method);
            out.extend_from_slice(b",\"path\":");
            write_json_str(out, entry.path);
            out.extend_from_slice(b",\"route\":");
            write_json_str(out, entry.route);
            out.extend_from_slice(b",\"version\":\"");
            out.extend_from_slice(version(entry.version).as_bytes());
            out.extend_from_slice(b"\",\"status\":");
            write_display(out, entry.status);
            out.extend_from_slice(b",\"duration_ms\":");
            write_display(out, entry.duration_ms);
            out.extend_from_slice(b"},\"target\":\"portcullis::access\"}");
        }
    }
    out.push(b'\n');
}

fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// `ip:port` as `SocketAddr`'s `Display` writes it; IPv4 through
/// [`portcullis_http::write_ip`], IPv6 (`[::1%2]:80`) through `Display`.
fn write_address(out: &mut Vec<u8>, address: SocketAddr) {
    let SocketAddr::V4(v4) = address else {
        write_display(out, address);
        return;
    };
    let mut text = Bytes(out);
    let _ = portcullis_http::write_ip(&mut text, (*v4.ip()).into());
    let _ = write!(text, ":{}", v4.port());
}

/// Numbers, through the formatter.
fn write_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    let _ = write!(Bytes(out), "{value}");
}

/// `fmt::Write` into the line's bytes (formatting into UTF-8 text).
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A JSON string. Request ids and routes are plain ASCII by construction;
/// a path is whatever the client sent that hyper accepted, so it is
/// escaped properly.
fn write_json_str(out: &mut Vec<u8>, value: &str) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

/// RFC 3339 in UTC with microseconds, as tracing-subscriber's default
/// timer writes it: `2026-11-24T01:02:03.123456Z`. The date part is
/// computed once per second per thread.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (cached, mut text) = SECOND.get();
    if cached != seconds {
        text = date_time(seconds);
        SECOND.set((seconds, text));
    }
    out.extend_from_slice(&text);
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for a Unix time, from the days-to-civil
/// algorithm of Howard Hinnant's `chrono`-compatible date library.
fn date_time(unix: u64) -> [u8; 20] {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let of_day = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut text = String::with_capacity(20);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
    let mut out = [b'0'; 20];
    for (slot, byte) in out.iter_mut().zip(text.bytes()) {
        *slot = byte;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry<'_> {
        Entry {
            request_id: "abc-1",
            remote: Some("127.0.0.1:5000".parse().unwrap()),
            method: "GET",
            path,
            route: "/api/users/me/",
            version: Version::HTTP_11,
            status: 200,
            duration_ms: 3,
        }
    }

    fn at(unix: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix) + Duration::from_micros(u64::from(micros))
    }

    #[test]
    fn text_line() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            Format::Text,
            &entry("/api/users/me/"),
            at(1_795_482_123, 42),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-24T01:02:03.000042Z  INFO portcullis::access: request request_id=abc-1 \
             remote=127.0.0.1:5000 method=GET path=/api/users/me/ route=/api/users/me/ \
             version=HTTP/1.1 status=200 duration_ms=3\n"
        );
    }

    #[test]
    fn json_line_escapes_the_path() {
        let mut out = Vec::new();
        write_line(
            &mut out,
            Format::Json,
            &entry("/a\"b\\c"),
            at(951_782_400, 999_999),
        );
        let line = String::from_utf8(out).unwrap();
        assert_eq!(
            line,
            "{\"timestamp\":\"2000-02-29T00:00:00.999999Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\
             \"request_id\":\"abc-1\",\"remote\":\"127.0.0.1:5000\",\"method\":\"GET\",\"path\":\"/a\\\"b\\\\c\",\
             \"route\":\"/api/users/me/\",\"version\":\"HTTP/1.1\",\"status\":200,\"duration_ms\":3},\
             \"target\":\"portcullis::access\"}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["fields"]["path"], "/a\"b\\c");
    }

    /// What tracing-subscriber's formatter (the access log's writer before
    /// this module) writes for the same request, without the timestamp.
    fn tracing_line(format: Format, entry: &Entry<'_>) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone)]
        struct Capture(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let captured = Capture(Arc::new(Mutex::new(Vec::new())));
        let writer = captured.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time();
        let event = || {
            tracing::info!(
                target: "portcullis::access",
                request_id = %entry.request_id,
                remote = %entry.remote.map(|r| r.to_string()).unwrap_or_default(),
                method = %entry.method,
                path = %entry.path,
                route = %entry.route,
                version = ?entry.version,
                status = entry.status,
                duration_ms = entry.duration_ms,
                "request"
            );
        };
        match format {
            Format::Text => tracing::subscriber::with_default(builder.finish(), event),
            Format::Json => tracing::subscriber::with_default(builder.json().finish(), event),
        }
        let bytes = captured.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn lines_are_the_ones_tracing_wrote() {
        let entries = [
            entry("/api/users/me/"),
            Entry {
                remote: None,
                version: Version::HTTP_2,
                status: 404,
                ..entry("/a\"b\\c")
            },
        ];
        for entry in &entries {
            let mut ours = Vec::new();
            write_line(&mut ours, Format::Text, entry, at(1_795_482_123, 42));
            let ours = String::from_utf8(ours).unwrap();
            // Ours minus its timestamp is tracing's minus none.
            let (stamp, rest) = ours.split_at("2026-11-24T01:02:03.000042Z ".len());
            assert_eq!(stamp, "2026-11-24T01:02:03.000042Z ");
            assert_eq!(rest, tracing_line(Format::Text, entry));

            let mut ours = Vec::new();
            write_line(&mut ours, Format::Json, entry, at(1_795_482_123, 42));
            let mut ours: serde_json::Value = serde_json::from_slice(&ours).unwrap();
            assert_eq!(
                ours.as_object_mut().unwrap().remove("timestamp").unwrap(),
                "2026-11-24T01:02:03.000042Z"
            );
            let theirs: serde_json::Value =
                serde_json::from_str(&tracing_line(Format::Json, entry)).unwrap();
            assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn addresses_as_display_writes_them() {
        for address in [
            "0.0.0.0:0",
            "10.0.100.255:65535",
            "192.168.1.9:8080",
            "[::1]:443",
            "[2001:db8::7]:1",
        ] {
            let address: SocketAddr = address.parse().unwrap();
            let mut out = Vec::new();
            write_address(&mut out, address);
            assert_eq!(String::from_utf8(out).unwrap(), address.to_string());
        }
    }

    #[test]
    fn dates_across_the_calendar() {
        for (unix, text) in [
            (0, "1970-01-01T00:00:00."),
            (951_868_799, "2000-02-29T23:59:59."),
            (4_107_542_400, "2100-03-01T00:00:00."),
            (1_798_761_599, "2026-12-31T23:59:59."),
        ] {
            assert_eq!(
                std::str::from_utf8(&date_time(unix)).unwrap(),
                text,
                "{unix}"
            );
        }
    }
}

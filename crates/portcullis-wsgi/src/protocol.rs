//! The framed protocol between the server and its workers, over one Unix
//! stream per worker thread.
//!
//! A frame is `u32` little-endian length (of what follows), one kind byte,
//! then the payload. Fields inside a payload are length-prefixed (`u16` for
//! names, `u32` for values). Nothing is escaped and nothing is parsed twice:
//! the server builds the CGI variables once, the worker turns each into a
//! Python string, and the response comes back as a head and body chunks.
//!
//! One request is in flight per stream at a time, so frames need no request
//! id: the server sends [`REQUEST`], the worker answers [`HEAD`], any number
//! of [`BODY`], and [`END`] (or [`FAILED`]). [`CANCEL`] may cross the answer
//! (the client went away); the worker stops iterating and calls `close()`.

use std::io::{self, Read, Write};

/// Server → worker: a request ([`Request::encode`]).
pub const REQUEST: u8 = 1;
/// Server → worker: the client went away; stop the response, call `close()`.
pub const CANCEL: u8 = 2;
/// Server → worker: are you alive (and is the interpreter)?
pub const PING: u8 = 3;

/// Worker → server: booted, the app imported; payload the worker's pid (`u32`).
pub const READY: u8 = 10;
/// Worker → server: the app could not be loaded; payload the reason (UTF-8).
pub const BOOT_ERROR: u8 = 11;
/// Worker → server: the response's status line and headers.
pub const HEAD: u8 = 12;
/// Worker → server: a chunk of the response body.
pub const BODY: u8 = 13;
/// Worker → server: the response is complete.
pub const END: u8 = 14;
/// Worker → server: the app failed (payload the reason, already logged).
pub const FAILED: u8 = 15;
/// Worker → server: the answer to [`PING`].
pub const PONG: u8 = 16;

/// The largest frame either side accepts: a body chunk larger than this is
/// sent as several frames.
pub const MAX_FRAME: usize = 16 << 20;

/// A frame that does not parse: the peer is not a portcullis worker (or
/// server) of this version.
#[derive(Debug, thiserror::Error)]
#[error("malformed WSGI worker frame: {0}")]
pub struct Malformed(pub &'static str);

impl From<Malformed> for io::Error {
    fn from(e: Malformed) -> Self {
        Self::new(io::ErrorKind::InvalidData, e)
    }
}

/// Start a frame of `kind` in `out`; finish it with [`finish`].
pub fn begin(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Write the length of the frame begun at `at`.
pub fn finish(out: &mut [u8], at: usize) {
    let length = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&length.to_le_bytes());
    }
}

/// A whole frame of `kind` with `payload`.
#[must_use]
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    let at = begin(&mut out, kind);
    out.extend_from_slice(payload);
    finish(&mut out, at);
    out
}

/// Append a `u16`-prefixed field (names).
pub fn put_short(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes.get(..usize::from(length)).unwrap_or_default());
}

/// Append a `u32`-prefixed field (values).
pub fn put_long(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Read one frame from a blocking stream: `Ok(None)` at a clean end of
/// stream (before any byte of a frame).
pub fn read_frame(input: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut head = [0u8; 5];
    match input.read(&mut head[..1])? {
        0 => return Ok(None),
        _ => input.read_exact(&mut head[1..])?,
    }
    let [a, b, c, d, kind] = head;
    let length = u32::from_le_bytes([a, b, c, d]) as usize;
    if length == 0 || length > MAX_FRAME + 1 {
        return Err(Malformed("frame length").into());
    }
    buf.clear();
    buf.resize(length - 1, 0);
    input.read_exact(buf)?;
    Ok(Some(kind))
}

/// Write a whole frame to a blocking stream.
pub fn write_frame(output: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let length = u32::try_from(payload.len() + 1).map_err(|_| Malformed("frame too long"))?;
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&length.to_le_bytes());
    head[4] = kind;
    output.write_all(&head)?;
    output.write_all(payload)
}

/// A cursor over a payload, every read bounds-checked.
#[derive(Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("truncated field"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([
            b.first().copied().unwrap_or_default(),
            b.get(1).copied().unwrap_or_default(),
        ]))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        let mut four = [0u8; 4];
        four.copy_from_slice(b);
        Ok(u32::from_le_bytes(four))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(b);
        Ok(u64::from_le_bytes(eight))
    }

    /// A `u16`-prefixed field.
    pub fn short(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A `u32`-prefixed field.
    pub fn long(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// What is left.
    #[must_use]
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Where a request's body is: in the frame, or in a file the front spooled
/// it to (larger than its memory limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRef<'a> {
    /// The bytes themselves.
    Inline(&'a [u8]),
    /// A temporary file of `length` bytes, removed by the server once the
    /// response is complete.
    File {
        /// Its path (UTF-8: the server names it).
        path: &'a str,
        /// Its length.
        length: u64,
    },
}

/// A decoded [`REQUEST`] frame.
#[derive(Debug)]
pub struct Request<'a> {
    /// CGI and `wsgi.url_scheme` variables, names ASCII, values bytes the
    /// worker decodes as latin-1 (PEP 3333 "native strings").
    pub vars: Vec<(&'a [u8], &'a [u8])>,
    /// The body.
    pub body: BodyRef<'a>,
}

impl<'a> Request<'a> {
    /// Encode `vars` and `body` as a whole [`REQUEST`] frame.
    #[must_use]
    pub fn encode(vars: &[(&[u8], &[u8])], body: &BodyRef<'_>) -> Vec<u8> {
        let size: usize = vars.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        let inline = match body {
            BodyRef::Inline(bytes) => bytes.len(),
            BodyRef::File { path, .. } => path.len() + 10,
        };
        let mut out = Vec::with_capacity(5 + 2 + size + 5 + inline);
        let at = begin(&mut out, REQUEST);
        let count = u16::try_from(vars.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (key, value) in vars.iter().take(usize::from(count)) {
            put_short(&mut out, key);
            put_long(&mut out, value);
        }
        match body {
            BodyRef::Inline(bytes) => {
                out.push(0);
                put_long(&mut out, bytes);
            }
            BodyRef::File { path, length } => {
                out.push(1);
                put_short(&mut out, path.as_bytes());
                out.extend_from_slice(&length.to_le_bytes());
            }
        }
        finish(&mut out, at);
        out
    }

    /// Decode a [`REQUEST`] frame's payload.
    pub fn decode(payload: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader(payload);
        let count = r.u16()?;
        let mut vars = Vec::with_capacity(usize::from(count) + 16);
        for _ in 0..count {
            let key = r.short()?;
            let value = r.long()?;
            vars.push((key, value));
        }
        let body = match r.byte()? {
            0 => BodyRef::Inline(r.long()?),
            1 => {
                let path =
                    std::str::from_utf8(r.short()?).map_err(|_| Malformed("body file path"))?;
                BodyRef::File {
                    path,
                    length: r.u64()?,
                }
            }
            _ => return Err(Malformed("body kind")),
        };
        Ok(Self { vars, body })
    }
}

/// A decoded [`HEAD`] frame: `"200 OK"` and the headers, as the app gave
/// them (already checked to be latin-1 by the worker).
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// The status line (`"404 Not Found"`).
    pub status: &'a [u8],
    /// Names and values.
    pub headers: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Head<'a> {
    /// Append `status` and `headers` as a [`HEAD`] frame to `out`.
    pub fn encode_into<'h>(
        out: &mut Vec<u8>,
        status: &[u8],
        headers: impl ExactSizeIterator<Item = (&'h [u8], &'h [u8])>,
    ) {
        let at = begin(out, HEAD);
        put_short(out, status);
        let count = u16::try_from(headers.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in headers.take(usize::from(count)) {
            put_short(out, name);
            put_long(out, value);
        }
        finish(out, at);
    }

    /// Decode a [`HEAD`] payload.
    pub fn decode(payload: &'a [u8]) -> Result<Self, Malformed> {
        let mut r = Reader(payload);
        let status = r.short()?;
        let count = r.u16()?;
        let mut headers = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = r.short()?;
            let value = r.long()?;
            headers.push((name, value));
        }
        Ok(Self { status, headers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips() {
        let vars: Vec<(&[u8], &[u8])> =
            vec![(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/caf\xe9")];
        for body in [
            BodyRef::Inline(b"a=1"),
            BodyRef::File {
                path: "/tmp/x",
                length: 1 << 33,
            },
        ] {
            let frame = Request::encode(&vars, &body);
            let mut input = frame.as_slice();
            let mut buf = Vec::new();
            assert_eq!(read_frame(&mut input, &mut buf).unwrap(), Some(REQUEST));
            let request = Request::decode(&buf).unwrap();
            assert_eq!(request.vars, vars);
            assert_eq!(request.body, body);
            assert_eq!(read_frame(&mut input, &mut buf).unwrap(), None);
        }
    }

    #[test]
    fn a_head_round_trips() {
        let mut out = Vec::new();
        let headers: Vec<(&[u8], &[u8])> = vec![(b"Content-Type", b"text/plain")];
        Head::encode_into(&mut out, b"201 Created", headers.iter().copied());
        let mut buf = Vec::new();
        assert_eq!(
            read_frame(&mut out.as_slice(), &mut buf).unwrap(),
            Some(HEAD)
        );
        let head = Head::decode(&buf).unwrap();
        assert_eq!(head.status, b"201 Created");
        assert_eq!(head.headers, headers);
    }

    #[test]
    fn truncated_payloads_are_errors_not_panics() {
        let frame = Request::encode(&[(b"A", b"B")], &BodyRef::Inline(b"xyz"));
        let payload = &frame[5..];
        for cut in 0..payload.len() {
            assert!(Request::decode(&payload[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Head::decode(&[5, 0, b'2']).is_err());
        let mut buf = Vec::new();
        assert!(read_frame(&mut [0u8, 0, 0, 0, 1].as_slice(), &mut buf).is_err());
    }
}

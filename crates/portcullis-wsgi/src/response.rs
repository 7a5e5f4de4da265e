//! A response body between a worker's slot and the client, in bounded
//! memory: nginx's `proxy_buffering` with `proxy_max_temp_file_size`.
//!
//! The slot takes chunks from the worker as fast as the app makes them and
//! the client reads them at its own pace. Up to [`MEMORY_LIMIT`] bytes
//! waiting for the client stay in memory; beyond that the chunks are
//! appended to a temporary file (so the worker is still freed at once) and
//! the client is fed from it; beyond [`FILE_LIMIT`] spooled bytes the slot
//! waits for the client, as nginx then reads from its upstream at the
//! client's pace. A client that keeps up gets a generator's chunks as they
//! come: nothing waits in memory, so nothing goes to the file.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use tokio::io::{AsyncRead as _, AsyncWriteExt as _, ReadBuf};
use tokio::sync::{Notify, mpsc};

use crate::Failure;

/// Bytes of one response that may wait in memory for a slow client.
pub const MEMORY_LIMIT: u64 = 1 << 20;

/// Bytes of one response that may be spooled to its temporary file
/// (nginx's `proxy_max_temp_file_size` default).
pub const FILE_LIMIT: u64 = 1 << 30;

/// How much of the file the client is given at a time.
const READ_SIZE: usize = 64 << 10;

/// What the slot sends the body, in the response's order.
enum Chunk {
    /// Bytes in memory.
    Memory(Bytes),
    /// `length` more bytes appended to the spool file; the first of these
    /// carries the file.
    Spooled { length: u64, file: Option<Spool> },
    /// The response cannot complete (the client sees it cut).
    Failed(Failure),
}

/// The spool file as the body reads it: its own handle (and cursor), and
/// the path, removed when the body is dropped.
struct Spool {
    read: tokio::fs::File,
    _path: tempfile::TempPath,
}

/// What both ends count: the bytes sent and not yet given to the client.
#[derive(Debug, Default)]
struct Pending {
    memory: AtomicU64,
    file: AtomicU64,
    /// The sender waits for the client to read.
    waiting: AtomicBool,
    read: Notify,
}

/// Why [`BodySender::send`] stopped.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The client went away.
    Gone,
    /// The spool file could not be written (a full disk).
    Spool(std::io::Error),
}

/// The slot's end.
pub(crate) struct BodySender {
    tx: mpsc::UnboundedSender<Chunk>,
    pending: Arc<Pending>,
    /// The spool file's writing handle, once there is one.
    file: Option<tokio::fs::File>,
    spooled: u64,
}

/// The two ends of one response body.
pub(crate) fn channel() -> (BodySender, ResponseBody) {
    let (tx, rx) = mpsc::unbounded_channel();
    let pending = Arc::new(Pending::default());
    let sender = BodySender {
        tx,
        pending: Arc::clone(&pending),
        file: None,
        spooled: 0,
    };
    let body = ResponseBody {
        rx,
        pending,
        spool: None,
        file_left: 0,
        buffer: Vec::new(),
    };
    (sender, body)
}

impl BodySender {
    /// Queue `chunk` for the client: in memory while little waits, else in
    /// the spool file, else (the file is full) once the client has read.
    pub(crate) async fn send(&mut self, chunk: Bytes) -> Result<(), Stop> {
        let length = chunk.len() as u64;
        let pending = &*self.pending;
        if pending.memory.load(Ordering::SeqCst) + length > MEMORY_LIMIT {
            if self.spooled + length <= FILE_LIMIT {
                return self.spool(&chunk).await;
            }
            self.wait_for_client().await?;
        }
        pending.memory.fetch_add(length, Ordering::SeqCst);
        self.tx.send(Chunk::Memory(chunk)).map_err(|_| Stop::Gone)
    }

    async fn spool(&mut self, chunk: &[u8]) -> Result<(), Stop> {
        let mut first = None;
        if self.file.is_none() {
            let file = tempfile::Builder::new()
                .prefix("portcullis-response-")
                .tempfile()
                .map_err(Stop::Spool)?;
            let read = file.reopen().map_err(Stop::Spool)?;
            let (write, path) = file.into_parts();
            self.file = Some(tokio::fs::File::from_std(write));
            first = Some(Spool {
                read: tokio::fs::File::from_std(read),
                _path: path,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(Stop::Gone);
        };
        file.write_all(chunk).await.map_err(Stop::Spool)?;
        file.flush().await.map_err(Stop::Spool)?;
        let length = chunk.len() as u64;
        self.spooled += length;
        self.pending.file.fetch_add(length, Ordering::SeqCst);
        self.tx
            .send(Chunk::Spooled {
                length,
                file: first,
            })
            .map_err(|_| Stop::Gone)
    }

    /// Wait until what waits for the client (memory and file) is below
    /// [`MEMORY_LIMIT`], or the client is gone.
    async fn wait_for_client(&self) -> Result<(), Stop> {
        let pending = &*self.pending;
        loop {
            let read = pending.read.notified();
            pending.waiting.store(true, Ordering::SeqCst);
            if self.tx.is_closed() {
                return Err(Stop::Gone);
            }
            let waiting =
                pending.memory.load(Ordering::SeqCst) + pending.file.load(Ordering::SeqCst);
            if waiting <= MEMORY_LIMIT {
                pending.waiting.store(false, Ordering::SeqCst);
                return Ok(());
            }
            read.await;
        }
    }

    /// The response cannot complete: the client sees it cut.
    pub(crate) fn fail(&self, failure: Failure) {
        let _ = self.tx.send(Chunk::Failed(failure));
    }
}

/// A response body as the worker sends it. Dropping it (the client went
/// away) tells the worker to stop iterating and call `close()`.
pub struct ResponseBody {
    rx: mpsc::UnboundedReceiver<Chunk>,
    pending: Arc<Pending>,
    spool: Option<Spool>,
    /// Bytes announced in the file and not yet read.
    file_left: u64,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("spooled", &self.spool.is_some())
            .field("file_left", &self.file_left)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// `length` bytes given to the client: wake the sender if it waits.
    fn consumed(&self, counter: &AtomicU64, length: u64) {
        counter.fetch_sub(length, Ordering::SeqCst);
        if self.pending.waiting.load(Ordering::SeqCst) {
            self.pending.read.notify_waiters();
        }
    }

    fn poll_file(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let Some(spool) = self.spool.as_mut() else {
            return Poll::Ready(Some(Err(Failure::App)));
        };
        let want = usize::try_from(self.file_left).map_or(READ_SIZE, |left| left.min(READ_SIZE));
        self.buffer.resize(want, 0);
        let mut buf = ReadBuf::new(&mut self.buffer);
        match Pin::new(&mut spool.read).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                tracing::error!(error = %e, "reading a spooled response failed");
                Poll::Ready(Some(Err(Failure::Body)))
            }
            Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                tracing::error!("a spooled response ended early");
                Poll::Ready(Some(Err(Failure::Body)))
            }
            Poll::Ready(Ok(())) => {
                let data = Bytes::copy_from_slice(buf.filled());
                let length = data.len() as u64;
                self.file_left -= length;
                self.consumed(&self.pending.file, length);
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Failure;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Failure>>> {
        let this = &mut *self;
        loop {
            if this.file_left > 0 {
                return this.poll_file(cx);
            }
            let Some(chunk) = std::task::ready!(this.rx.poll_recv(cx)) else {
                return Poll::Ready(None);
            };
            match chunk {
                Chunk::Memory(data) => {
                    this.consumed(&this.pending.memory, data.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Chunk::Spooled { length, file } => {
                    if let Some(file) = file {
                        this.spool = Some(file);
                    }
                    this.file_left += length;
                }
                Chunk::Failed(failure) => return Poll::Ready(Some(Err(failure))),
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A sender waiting for this client must see it gone.
        self.rx.close();
        self.pending.read.notify_waiters();
    }
}

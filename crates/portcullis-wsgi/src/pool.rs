//! The server side: worker processes started, watched and replaced as
//! gunicorn's arbiter does (`gunicorn/arbiter.py`), and requests handed to
//! them.
//!
//! - Each worker is a child process with `threads` connections to the
//!   server, one per thread. A connection is a *slot*: a tokio task that
//!   takes the next request from the pool's queue, sends it, and relays the
//!   answer. A slot does not wait on a client: body chunks are taken as
//!   fast as the worker makes them, kept in memory up to
//!   [`crate::response::MEMORY_LIMIT`] and beyond it in a temporary file,
//!   and the client reads them at its own pace (the request body was
//!   received whole before the request was queued, see [`crate::Body`]).
//! - Heartbeat: an idle slot pings its thread every `timeout / 2`; the
//!   thread answers under the GIL, so a worker whose interpreter is stuck
//!   outside any request is found too. A busy slot has its deadline.
//! - Past `timeout`, a request is answered 504 and its worker killed
//!   (SIGABRT, so faulthandler logs its Python traceback, then SIGKILL)
//!   and replaced: a real request timeout, even for threaded
//!   workers (gunicorn's heartbeat only times out sync workers).
//! - A worker that dies (a signal, `os._exit`, the OOM killer) is replaced;
//!   the requests its slots held are answered 502, the others never see it.
//! - `max_requests` (+ jitter): a worker that has taken that many requests
//!   goes on serving while a replacement boots, then takes no more,
//!   finishes what it holds and exits. No request is dropped, no capacity
//!   lost.
//! - [`Pool::reload`] (SIGHUP): a whole new generation boots; once every
//!   new worker is ready, the old ones stop taking requests and exit when
//!   idle. A new generation that fails to boot is logged and the old one
//!   keeps serving.
//! - A boot error of the first generation ([`Pool::ready`]) stops the
//!   server with the reason instead of starting workers in a loop.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::protocol::{self, Head};
use crate::response::{self, BodySender, Stop};
use crate::worker::{APP_LOAD_ERROR, WorkerArgs};
use crate::{Failure, Reply};

/// How a mount's workers are started and supervised.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The program and the arguments before the worker's own, e.g.
    /// `[/usr/bin/portcullis, wsgi-worker]`.
    pub command: Vec<OsString>,
    /// `module:callable`.
    pub app: String,
    /// Directories put first on `sys.path`.
    pub paths: Vec<PathBuf>,
    /// The app's virtualenv.
    pub virtualenv: Option<PathBuf>,
    /// Extra environment variables for the workers (`DJANGO_SETTINGS_MODULE`).
    pub env: Vec<(String, String)>,
    /// Worker processes.
    pub workers: usize,
    /// Threads (and connections) per worker.
    pub threads: usize,
    /// How long a request may run before its worker is replaced.
    pub timeout: Duration,
    /// Recycle a worker after this many requests (0: never).
    pub max_requests: u64,
    /// Up to this many more, drawn per worker, so workers do not all
    /// recycle at once.
    pub max_requests_jitter: u64,
    /// How long a worker may take to import the app.
    pub boot_timeout: Duration,
    /// A name for the log (the mount prefix).
    pub name: String,
}

/// Where the pool is in its start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// The first workers are importing the app.
    Booting,
    /// The app has imported; requests are served.
    Ready,
    /// The app could not be loaded: the reason.
    Failed(String),
}

/// A request waiting for a slot.
pub(crate) struct Job {
    pub(crate) frame: Vec<u8>,
    pub(crate) reply: oneshot::Sender<Result<Reply, Failure>>,
    /// The spooled body, removed when the job is done.
    pub(crate) _spool: Option<tempfile::TempPath>,
}

/// The running workers of one `[[wsgi]]` mount. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: PoolConfig,
    /// Requests waiting for a worker thread. Every slot waits on it at
    /// once and a request wakes one of them (a queue behind a lock would
    /// wake a second slot per request, to take the lock over).
    queue: flume::Sender<Job>,
    jobs: flume::Receiver<Job>,
    state: watch::Sender<State>,
    events: mpsc::UnboundedSender<Event>,
    /// The directory of the workers' sockets (0700, removed on drop).
    dir: tempfile::TempDir,
    next_socket: AtomicU64,
}

/// What the arbiter is told.
#[derive(Debug)]
enum Event {
    /// A worker process ended.
    Exited { id: u64, status: String },
    /// A worker reached `max_requests`.
    Retire { id: u64 },
    /// SIGHUP.
    Reload,
    /// The server is stopping.
    Shutdown(oneshot::Sender<()>),
}

/// One worker as the slots and the arbiter see it.
#[derive(Debug)]
struct Worker {
    id: u64,
    generation: u64,
    pid: u32,
    served: AtomicU64,
    limit: u64,
    retiring: AtomicBool,
    retire: Notify,
    kill: Notify,
    /// Killed for a timeout: SIGABRT first, for the traceback.
    timed_out: AtomicBool,
}

impl Worker {
    fn retire(&self) {
        self.retiring.store(true, Ordering::SeqCst);
        self.retire.notify_waiters();
    }

    fn kill(&self) {
        self.kill.notify_one();
    }

    /// Kill a worker whose request ran past its timeout: SIGABRT, so that
    /// faulthandler logs where Python was stuck, then SIGKILL after
    /// [`ABORT_GRACE`] (gunicorn's order).
    fn abort(&self) {
        self.timed_out.store(true, Ordering::SeqCst);
        self.kill();
    }
}

/// How long a timed-out worker has to write its traceback after SIGABRT.
const ABORT_GRACE: Duration = Duration::from_secs(2);

impl Pool {
    /// Start the workers in the background; [`Pool::ready`] tells when the
    /// app has imported (or why it did not). Must run inside a tokio
    /// runtime.
    pub fn start(mut config: PoolConfig) -> std::io::Result<Self> {
        config.workers = config.workers.max(1);
        config.threads = config.threads.max(1);
        let dir = tempfile::Builder::new()
            .prefix("portcullis-wsgi-")
            .tempdir()?;
        let (queue, jobs) = flume::bounded(4096);
        let (events, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            queue,
            jobs,
            state: watch::channel(State::Booting).0,
            events,
            dir,
            next_socket: AtomicU64::new(0),
        });
        tokio::spawn(arbiter(Arc::clone(&shared), rx));
        Ok(Self { shared })
    }

    /// Resolves once the first workers have imported the app (`Ok`), or one
    /// of them could not (`Err` with the reason: the server should stop).
    pub async fn ready(&self) -> Result<(), String> {
        let mut state = self.shared.state.subscribe();
        let state = state.wait_for(|s| *s != State::Booting).await.map_or_else(
            |_| State::Failed("the WSGI pool stopped".to_owned()),
            |s| s.clone(),
        );
        match state {
            State::Failed(reason) => Err(reason),
            _ => Ok(()),
        }
    }

    /// Where the pool is now (`/readyz` is 503 until [`State::Ready`]).
    #[must_use]
    pub fn state(&self) -> State {
        self.shared.state.borrow().clone()
    }

    /// Load the app again in new workers, then retire the old ones.
    pub fn reload(&self) {
        let _ = self.shared.events.send(Event::Reload);
    }

    /// Stop taking requests, let the workers finish what they hold (at
    /// most `grace`), then kill what is left.
    pub async fn shutdown(&self, grace: Duration) {
        let (done, wait) = oneshot::channel();
        if self.shared.events.send(Event::Shutdown(done)).is_ok() {
            let _ = tokio::time::timeout(grace, wait).await;
        }
    }

    pub(crate) async fn submit(&self, job: Job) -> Result<(), Failure> {
        self.shared
            .queue
            .send_async(job)
            .await
            .map_err(|_| Failure::Unavailable)
    }

    /// The pool's configuration.
    #[must_use]
    pub fn config(&self) -> &PoolConfig {
        &self.shared.config
    }
}

/// The arbiter: boots the first generation, then replaces workers that
/// exit, recycles, reloads and shuts down.
async fn arbiter(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    let config = &shared.config;
    let mut workers: HashMap<u64, Arc<Worker>> = HashMap::new();
    let mut next_id = 0u64;
    let mut generation = 0u64;
    match boot_generation(&shared, &mut next_id, generation).await {
        Ok(booted) => {
            for worker in booted {
                workers.insert(worker.id, worker);
            }
            tracing::info!(mount = %config.name, app = %config.app, workers = config.workers, threads = config.threads, "WSGI app loaded");
            shared.state.send_replace(State::Ready);
        }
        Err(reason) => {
            tracing::error!(mount = %config.name, app = %config.app, "{reason}");
            shared.state.send_replace(State::Failed(reason));
            return;
        }
    }
    let mut shutting_down: Option<oneshot::Sender<()>> = None;
    while let Some(event) = events.recv().await {
        match event {
            Event::Exited { id, status } => {
                let Some(worker) = workers.remove(&id) else {
                    continue;
                };
                if shutting_down.is_some() {
                    if workers.is_empty() {
                        break;
                    }
                    continue;
                }
                let expected = worker.retiring.load(Ordering::SeqCst);
                if expected {
                    tracing::debug!(mount = %config.name, pid = worker.pid, "worker retired");
                    continue;
                }
                if worker.timed_out.load(Ordering::SeqCst) {
                    tracing::warn!(mount = %config.name, pid = worker.pid, %status, "worker killed after its timeout; starting a new one");
                } else {
                    tracing::error!(mount = %config.name, pid = worker.pid, %status, "worker died; starting a new one");
                }
                if worker.generation == generation {
                    replace(&shared, &mut workers, &mut next_id, generation).await;
                }
            }
            Event::Retire { id } => {
                if let Some(old) = workers.get(&id).map(Arc::clone) {
                    // The old worker takes no more requests but finishes
                    // what it holds; it is told to go once its
                    // replacement is ready.
                    replace(&shared, &mut workers, &mut next_id, generation).await;
                    old.retire();
                }
            }
            Event::Reload => {
                tracing::info!(mount = %config.name, "reloading the WSGI app (SIGHUP)");
                match boot_generation(&shared, &mut next_id, generation + 1).await {
                    Ok(booted) => {
                        generation += 1;
                        for old in workers.values() {
                            old.retire();
                        }
                        for worker in booted {
                            workers.insert(worker.id, worker);
                        }
                        tracing::info!(mount = %config.name, "WSGI app reloaded");
                    }
                    Err(reason) => {
                        tracing::error!(mount = %config.name, "reload failed, the old workers keep serving: {reason}");
                    }
                }
            }
            Event::Shutdown(done) => {
                for worker in workers.values() {
                    worker.retire();
                }
                if workers.is_empty() {
                    let _ = done.send(());
                    return;
                }
                shutting_down = Some(done);
            }
        }
    }
    if let Some(done) = shutting_down {
        let _ = done.send(());
    }
}

/// Start a worker in place of one that is gone; a boot error is retried
/// after a pause (the app may be being deployed), not in a tight loop.
async fn replace(
    shared: &Arc<Shared>,
    workers: &mut HashMap<u64, Arc<Worker>>,
    next_id: &mut u64,
    generation: u64,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        match boot_worker(shared, next_id, generation).await {
            Ok(worker) => {
                workers.insert(worker.id, worker);
                return;
            }
            Err(reason) => {
                tracing::error!(mount = %shared.config.name, "cannot start a worker, retrying in {pause:?}: {reason}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Boot `config.workers` workers at once; all or nothing.
async fn boot_generation(
    shared: &Arc<Shared>,
    next_id: &mut u64,
    generation: u64,
) -> Result<Vec<Arc<Worker>>, String> {
    let mut booting = Vec::with_capacity(shared.config.workers);
    for _ in 0..shared.config.workers {
        booting.push(spawn_worker(shared, next_id, generation));
    }
    let mut booted = Vec::with_capacity(booting.len());
    let mut failure = None;
    for started in booting {
        match started {
            Ok(started) => match started.await {
                Ok(worker) => booted.push(worker),
                Err(reason) => failure = failure.or(Some(reason)),
            },
            Err(reason) => failure = failure.or(Some(reason)),
        }
    }
    if let Some(reason) = failure {
        for worker in &booted {
            worker.retire();
        }
        return Err(reason);
    }
    Ok(booted)
}

async fn boot_worker(
    shared: &Arc<Shared>,
    next_id: &mut u64,
    generation: u64,
) -> Result<Arc<Worker>, String> {
    spawn_worker(shared, next_id, generation)?.await
}

/// Start one worker process; the future resolves once it is ready.
fn spawn_worker(
    shared: &Arc<Shared>,
    next_id: &mut u64,
    generation: u64,
) -> Result<impl Future<Output = Result<Arc<Worker>, String>> + use<>, String> {
    let config = &shared.config;
    let id = *next_id;
    *next_id += 1;
    let n = shared.next_socket.fetch_add(1, Ordering::Relaxed);
    let socket = shared.dir.path().join(format!("w{n}.sock"));
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("cannot listen on {}: {e}", socket.display()))?;
    let args = WorkerArgs {
        socket: socket.clone(),
        threads: config.threads,
        app: config.app.clone(),
        paths: config.paths.clone(),
        virtualenv: config.virtualenv.clone(),
        multiprocess: config.workers > 1,
    };
    let (program, leading) = config
        .command
        .split_first()
        .ok_or("no worker command configured")?;
    let mut command = Command::new(program);
    command
        .args(leading)
        .args(args.to_args())
        .envs(config.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // The server's own settings (its signing key among them) are not the
    // app's business.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the worker {}: {e}", program.to_string_lossy()))?;
    let pid = child.id().unwrap_or_default();
    log_output(&mut child, pid, &config.name);
    let shared = Arc::clone(shared);
    Ok(async move {
        let booted = accept_worker(&shared, &listener, &mut child, id, generation, pid).await;
        drop(listener);
        let _ = std::fs::remove_file(&socket);
        match booted {
            Ok((worker, streams)) => {
                for stream in streams {
                    tokio::spawn(slot(Arc::clone(&shared), Arc::clone(&worker), stream));
                }
                tokio::spawn(watch_child(Arc::clone(&shared), Arc::clone(&worker), child));
                Ok(worker)
            }
            Err(reason) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(reason)
            }
        }
    })
}

/// Accept the worker's connections and read its first frame on each:
/// [`protocol::READY`], or a boot error on the first.
async fn accept_worker(
    shared: &Shared,
    listener: &UnixListener,
    child: &mut Child,
    id: u64,
    generation: u64,
    pid: u32,
) -> Result<(Arc<Worker>, Vec<UnixStream>), String> {
    let config = &shared.config;
    let boot = async {
        let mut streams = Vec::with_capacity(config.threads);
        for _ in 0..config.threads {
            let (mut stream, _) = listener
                .accept()
                .await
                .map_err(|e| format!("accepting a worker's connection: {e}"))?;
            match read_frame(&mut stream).await {
                Ok(Some((protocol::READY, _))) => streams.push(stream),
                Ok(Some((protocol::BOOT_ERROR, reason))) => {
                    return Err(String::from_utf8_lossy(&reason).into_owned());
                }
                Ok(_) | Err(_) => {
                    return Err("the worker closed its connection before it was ready".to_owned());
                }
            }
        }
        Ok(streams)
    };
    tokio::pin!(boot);
    let streams = tokio::select! {
        booted = &mut boot => booted?,
        status = child.wait() => {
            // Its last words (the boot error) may be in the socket already.
            if let Ok(Err(reason)) = tokio::time::timeout(Duration::from_secs(1), &mut boot).await {
                return Err(reason);
            }
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            return Err(format!("the worker exited before it was ready ({status})"));
        }
        () = tokio::time::sleep(config.boot_timeout) => {
            return Err(format!("the worker did not load the app within {:?}", config.boot_timeout));
        }
    };
    let jitter = if config.max_requests_jitter > 0 {
        fastrand::u64(0..=config.max_requests_jitter)
    } else {
        0
    };
    let worker = Arc::new(Worker {
        id,
        generation,
        pid,
        served: AtomicU64::new(0),
        limit: if config.max_requests == 0 {
            0
        } else {
            config.max_requests + jitter
        },
        retiring: AtomicBool::new(false),
        retire: Notify::new(),
        kill: Notify::new(),
        timed_out: AtomicBool::new(false),
    });
    Ok((worker, streams))
}

/// Wait for a worker process to end (or kill it when told), then tell the
/// arbiter.
async fn watch_child(shared: Arc<Shared>, worker: Arc<Worker>, mut child: Child) {
    let status = tokio::select! {
        status = child.wait() => status,
        () = worker.kill.notified() => {
            if worker.timed_out.load(Ordering::SeqCst) {
                abort(worker.pid);
                if let Ok(status) = tokio::time::timeout(ABORT_GRACE, child.wait()).await {
                    return exited(&shared, &worker, status);
                }
            }
            let _ = child.start_kill();
            child.wait().await
        }
    };
    exited(&shared, &worker, status);
}

fn exited(shared: &Shared, worker: &Worker, status: std::io::Result<std::process::ExitStatus>) {
    let status = match status {
        Ok(status) => describe_exit(status),
        Err(e) => e.to_string(),
    };
    let _ = shared.events.send(Event::Exited {
        id: worker.id,
        status,
    });
}

/// SIGABRT to a worker (its faulthandler prints the Python traceback).
fn abort(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::ABORT);
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) if code == i32::from(APP_LOAD_ERROR) => {
            "exit code 4: the app could not be loaded".to_owned()
        }
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(9)) => "killed by SIGKILL (perhaps out of memory)".to_owned(),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// The worker's stdout and stderr (tracebacks, `wsgi.errors`, `print`)
/// into the server's log, a line an event.
fn log_output(child: &mut Child, pid: u32, mount: &str) {
    fn pipe<R: tokio::io::AsyncRead + Unpin + Send + 'static>(
        reader: R,
        pid: u32,
        mount: String,
        stream: &'static str,
    ) {
        tokio::spawn(async move {
            let mut lines = BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!(target: "portcullis::wsgi", mount = %mount, pid, stream, "{line}");
            }
        });
    }
    if let Some(out) = child.stdout.take() {
        pipe(out, pid, mount.to_owned(), "stdout");
    }
    if let Some(err) = child.stderr.take() {
        pipe(err, pid, mount.to_owned(), "stderr");
    }
}

async fn read_frame(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let [a, b, c, d, kind] = head;
    let length = u32::from_le_bytes([a, b, c, d]) as usize;
    if length == 0 || length > protocol::MAX_FRAME + 1 {
        return Err(protocol::Malformed("frame length").into());
    }
    let mut payload = vec![0u8; length - 1];
    stream.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

/// What a slot's relay of one request ended with.
enum Relay {
    /// The worker answered in full (or the app failed cleanly).
    Done,
    /// The worker is gone: the slot ends.
    Lost,
    /// The request ran past its timeout: the worker is killed, the slot ends.
    TimedOut,
}

/// One connection to a worker thread: take a job, relay its answer, again.
async fn slot(shared: Arc<Shared>, worker: Arc<Worker>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 << 10, read);
    let config = &shared.config;
    let ping_every = (config.timeout / 2).max(Duration::from_millis(500));
    loop {
        if worker.retiring.load(Ordering::SeqCst) {
            break;
        }
        let job = tokio::select! {
            job = shared.jobs.recv_async() => job.ok(),
            () = worker.retire.notified() => break,
            () = tokio::time::sleep(ping_every) => {
                if !ping(&mut read, &mut write, config.timeout).await {
                    tracing::error!(mount = %config.name, pid = worker.pid, "worker did not answer its heartbeat; replacing it");
                    worker.abort();
                    return;
                }
                continue;
            }
        };
        let Some(job) = job else { break };
        let served = worker.served.fetch_add(1, Ordering::SeqCst) + 1;
        if worker.limit > 0 && served == worker.limit {
            let _ = shared.events.send(Event::Retire { id: worker.id });
        }
        match relay(&mut read, &mut write, job, config, &worker).await {
            Relay::Done => {}
            Relay::Lost => {
                worker.kill();
                return;
            }
            Relay::TimedOut => {
                worker.abort();
                return;
            }
        }
        // Past `max_requests` the worker goes on taking requests until its
        // replacement is ready and the arbiter retires it: no lost
        // capacity while the new one imports the app.
    }
    // Closing the connection ends the worker's thread; the process exits
    // when its last thread does.
    let _ = write.shutdown().await;
}

async fn ping(
    read: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    timeout: Duration,
) -> bool {
    let exchange = async {
        write
            .write_all(&protocol::frame(protocol::PING, &[]))
            .await
            .ok()?;
        match read_frame(read).await {
            Ok(Some((protocol::PONG, _))) => Some(()),
            _ => None,
        }
    };
    matches!(tokio::time::timeout(timeout, exchange).await, Ok(Some(())))
}

/// Send one job and relay its answer until [`protocol::END`].
async fn relay(
    read: &mut BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    job: Job,
    config: &PoolConfig,
    worker: &Worker,
) -> Relay {
    let Job {
        frame,
        reply,
        _spool,
    } = job;
    // The timeout counts the app's time, not ours: while a chunk is being
    // spooled for a slow client (or waits for it once the spool is full)
    // the deadline moves on by as much.
    let mut deadline = tokio::time::Instant::now() + config.timeout;
    if write.write_all(&frame).await.is_err() {
        let _ = reply.send(Err(Failure::WorkerDied));
        return Relay::Lost;
    }
    drop(frame);
    let mut reply = Some(reply);
    let mut body: Option<BodySender> = None;
    let mut cancelled = false;
    loop {
        let frame = match tokio::time::timeout_at(deadline, read_frame(read)).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None) | Err(_)) => {
                tracing::error!(mount = %config.name, pid = worker.pid, "the worker died while answering a request (502)");
                fail(reply, body.as_ref(), Failure::WorkerDied);
                return Relay::Lost;
            }
            Err(_) => {
                tracing::error!(mount = %config.name, pid = worker.pid, timeout = ?config.timeout, "a request ran past the timeout; replacing its worker (504)");
                fail(reply, body.as_ref(), Failure::Timeout);
                return Relay::TimedOut;
            }
        };
        match frame {
            (protocol::HEAD, payload) => {
                let Ok(head) = Head::decode(&payload) else {
                    fail(reply, body.as_ref(), Failure::WorkerDied);
                    return Relay::Lost;
                };
                let (tx, rx) = response::channel();
                let answer = Reply::new(&head, rx);
                body = Some(tx);
                match (reply.take(), answer) {
                    (Some(reply), Ok(answer)) => {
                        if reply.send(Ok(answer)).is_err() && !cancelled {
                            cancelled = cancel(write).await;
                        }
                    }
                    (Some(reply), Err(reason)) => {
                        tracing::error!(mount = %config.name, "the application's response is not HTTP: {reason}");
                        let _ = reply.send(Err(Failure::App));
                        cancelled = cancel(write).await;
                    }
                    (None, _) => {}
                }
            }
            (protocol::BODY, payload) => {
                if cancelled {
                    continue;
                }
                let handing = tokio::time::Instant::now();
                let sent = match body.as_mut() {
                    Some(tx) => tx.send(Bytes::from(payload)).await,
                    None => Err(Stop::Gone),
                };
                deadline += handing.elapsed();
                if let Err(stop) = sent {
                    if let (Stop::Spool(e), Some(tx)) = (&stop, body.as_ref()) {
                        tracing::error!(mount = %config.name, error = %e, "cannot spool a response for a slow client; cutting it");
                        tx.fail(Failure::Body);
                    }
                    cancelled = cancel(write).await;
                }
            }
            (protocol::END, _) => {
                if let Some(reply) = reply.take() {
                    // END without HEAD: the worker always sends HEAD first.
                    let _ = reply.send(Err(Failure::App));
                }
                return Relay::Done;
            }
            (protocol::FAILED, _) => {
                fail(reply, body.as_ref(), Failure::App);
                return Relay::Done;
            }
            _ => {
                fail(reply, body.as_ref(), Failure::WorkerDied);
                return Relay::Lost;
            }
        }
    }
}

/// Tell the worker the client is gone; `true` once sent.
async fn cancel(write: &mut OwnedWriteHalf) -> bool {
    write
        .write_all(&protocol::frame(protocol::CANCEL, &[]))
        .await
        .is_ok()
}

/// Answer a job that cannot complete: its status if nothing was sent yet,
/// else the body is cut (the client sees a truncated response).
fn fail(
    reply: Option<oneshot::Sender<Result<Reply, Failure>>>,
    body: Option<&BodySender>,
    failure: Failure,
) {
    if let Some(reply) = reply {
        let _ = reply.send(Err(failure));
    } else if let Some(body) = body {
        body.fail(failure);
    }
}

//! `portcullis`: parse the command line, load the settings, start logging,
//! run the command. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser as _;
use portcullis::cli::Cli;
use portcullis::config::Settings;
use tracing_subscriber::EnvFilter;

/// jemalloc rather than the system allocator: a request allocates some
/// eighty small blocks (header maps, boxed futures, JSON), and glibc's
/// malloc and free were a large share of an authenticated request's cost
/// (the figures: BENCHMARKS.md, "Profiling"). Two settings keep Argon2's large working
/// memory from being faulted in afresh on every login: jemalloc's
/// oversize arena is off (`.cargo/config.toml`) and that memory is not
/// allocated zeroed (`portcullis-core`'s `working_memory`). mimalloc was
/// as fast but nearly tripled the idle resident set.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A WSGI worker runs no tokio runtime and reads no settings: it was
    // executed by `serve` with everything it needs on its command line.
    if let portcullis::cli::Command::WsgiWorker { args } = cli.command {
        return portcullis::wsgi::worker(args);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> ExitCode {
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // ACCESS_LOG=json: one format per stream, so log shippers parse every
    // line.
    if settings.server.access_log == portcullis_server::AccessLog::Json {
        subscriber.json().init();
    } else {
        subscriber
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match portcullis::commands::run(cli.command, &settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! A WSGI worker on its own: what `portcullis wsgi-worker` runs, for the
//! crate's tests and for pools whose workers are not the server's binary.

fn main() -> std::process::ExitCode {
    portcullis_wsgi::worker::main(std::env::args_os().skip(1))
}

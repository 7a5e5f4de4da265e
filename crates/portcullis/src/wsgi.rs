//! `[[wsgi]]` in the binary: the mounts' worker pools started, watched for
//! a boot error, reloaded on SIGHUP and stopped with the server; and the
//! hidden `portcullis wsgi-worker` command the pools execute. The WSGI
//! server itself is the `portcullis-wsgi` crate.
//!
//! Behind the default cargo feature `wsgi` (it links Python's shared
//! library); a build without it still reads `[[wsgi]]` and refuses to
//! start with a message that says how to get it.

use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

#[cfg(not(feature = "wsgi"))]
use crate::config::ConfigError;
use crate::config::WsgiMountSpec;

/// The WSGI apps of one server.
#[derive(Debug, Clone, Default)]
pub(crate) struct Apps {
    #[cfg(feature = "wsgi")]
    pools: Vec<(String, portcullis_wsgi::Pool)>,
    #[cfg(feature = "wsgi")]
    mounts: Vec<portcullis_server::WsgiMount>,
}

// Without the feature the methods keep their signatures and do nothing.
#[cfg_attr(
    not(feature = "wsgi"),
    allow(clippy::unused_self, clippy::unused_async)
)]
impl Apps {
    /// Start the workers of every mount (in the background: [`Apps::failed`]
    /// tells if an app cannot be loaded). `cores` is the default number of
    /// workers.
    #[cfg(feature = "wsgi")]
    pub(crate) fn start(specs: &[WsgiMountSpec], cores: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let mut apps = Self::default();
        if specs.is_empty() {
            return Ok(apps);
        }
        let exe =
            std::env::current_exe().context("cannot find this program to start WSGI workers")?;
        for spec in specs {
            let workers = spec.workers.unwrap_or(cores);
            let config = portcullis_wsgi::PoolConfig {
                command: vec![exe.clone().into(), "wsgi-worker".into()],
                app: spec.app.clone(),
                paths: spec.paths.clone(),
                virtualenv: spec.virtualenv.clone(),
                env: spec.env.clone(),
                workers,
                threads: spec.threads,
                timeout: spec.timeout,
                max_requests: spec.max_requests.0,
                max_requests_jitter: spec.max_requests.1,
                boot_timeout: Duration::from_mins(2).max(spec.timeout),
                name: spec.prefix.clone(),
            };
            let pool = portcullis_wsgi::Pool::start(config)
                .with_context(|| format!("{}: cannot start its workers", spec.entry))?;
            apps.mounts.push(portcullis_server::WsgiMount::new(
                spec.prefix.clone(),
                spec.auth,
                pool.clone(),
            ));
            apps.pools.push((spec.entry.clone(), pool));
        }
        Ok(apps)
    }

    /// Without the `wsgi` feature, a `[[wsgi]]` mount is a configuration
    /// error that says how to get one.
    #[cfg(not(feature = "wsgi"))]
    pub(crate) fn start(specs: &[WsgiMountSpec], _cores: usize) -> anyhow::Result<Self> {
        match specs.first() {
            None => Ok(Self::default()),
            Some(spec) => Err(ConfigError(built_without_wsgi(&spec.entry)).into()),
        }
    }

    /// The `/readyz` conditions: every app has imported.
    pub(crate) fn readiness(&self) -> Vec<portcullis_http::ReadinessCheck> {
        #[cfg(feature = "wsgi")]
        {
            self.pools
                .iter()
                .map(|(entry, pool)| {
                    let pool = pool.clone();
                    let entry = entry.clone();
                    portcullis_http::ReadinessCheck(std::sync::Arc::new(move || {
                        match pool.state() {
                            portcullis_wsgi::State::Ready => Ok(()),
                            _ => Err(format!("{entry}: the app has not imported yet")),
                        }
                    }))
                })
                .collect()
        }
        #[cfg(not(feature = "wsgi"))]
        Vec::new()
    }

    /// The WSGI mounts, to serve with the others.
    pub(crate) fn mounts(&self) -> Vec<portcullis_server::Mount> {
        #[cfg(feature = "wsgi")]
        {
            self.mounts
                .iter()
                .cloned()
                .map(portcullis_server::Mount::Wsgi)
                .collect()
        }
        #[cfg(not(feature = "wsgi"))]
        Vec::new()
    }

    /// Any apps at all?
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "wsgi")]
        {
            self.pools.is_empty()
        }
        #[cfg(not(feature = "wsgi"))]
        true
    }

    /// Resolves with the reason when an app cannot be loaded at start;
    /// never, once they all have.
    pub(crate) async fn failed(&self) -> String {
        #[cfg(feature = "wsgi")]
        for (entry, pool) in &self.pools {
            if let Err(reason) = pool.ready().await {
                return format!("{entry}: {reason}");
            }
        }
        std::future::pending().await
    }

    /// SIGHUP: new workers load the app again, then the old ones stop.
    pub(crate) fn reload(&self) {
        #[cfg(feature = "wsgi")]
        for (_, pool) in &self.pools {
            pool.reload();
        }
    }

    /// Let the workers finish what they hold (at most `grace`), then stop.
    pub(crate) async fn shutdown(&self, grace: Duration) {
        #[cfg(feature = "wsgi")]
        for (_, pool) in &self.pools {
            pool.shutdown(grace).await;
        }
        #[cfg(not(feature = "wsgi"))]
        let _ = grace;
    }
}

/// Why a build without the `wsgi` feature refuses the mount `entry`, and
/// how to get one.
#[cfg_attr(feature = "wsgi", allow(dead_code))]
fn built_without_wsgi(entry: &str) -> String {
    format!(
        "{entry}: this portcullis was built without the WSGI server (cargo feature `wsgi`, on by default; \
         it needs Python 3's shared library at build time). Rebuild without --no-default-features, \
         or run the app under gunicorn behind an [[upstream]]"
    )
}

/// `portcullis wsgi-worker …`: the process a pool starts (never by hand).
#[must_use]
pub fn worker(args: Vec<OsString>) -> ExitCode {
    #[cfg(feature = "wsgi")]
    {
        portcullis_wsgi::worker::main(args)
    }
    #[cfg(not(feature = "wsgi"))]
    {
        drop(args);
        eprintln!(
            "error: this portcullis was built without the WSGI server (cargo feature `wsgi`)"
        );
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    /// The refusal of a build without the feature (the one build the suite
    /// makes has it): it names the mount, the feature and the ways out.
    #[test]
    fn a_build_without_the_feature_refuses_a_mount_saying_how_to_get_one() {
        assert_eq!(
            super::built_without_wsgi("[[wsgi]] #1 (prefix \"/app/\")"),
            "[[wsgi]] #1 (prefix \"/app/\"): this portcullis was built without the WSGI server \
             (cargo feature `wsgi`, on by default; it needs Python 3's shared library at build time). \
             Rebuild without --no-default-features, or run the app under gunicorn behind an [[upstream]]"
        );
    }
}

//! Password hashing with Argon2id, off the async runtime.
//!
//! Every hash and verification runs on tokio's blocking pool behind a
//! semaphore sized to the cores: a flood of logins queues here instead of
//! starving token verification, and memory stays bounded (each Argon2 call
//! holds `m_cost` KiB). Unknown users are verified against a dummy hash made
//! with the same parameters, so they cost the same time as a wrong password.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// Argon2id cost parameters. The defaults are OWASP's minimum
/// (m = 19 MiB, t = 2, p = 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Stored hashes asking for more memory than this are refused unverified,
/// so a hostile row cannot exhaust the server.
const MAX_MEMORY_KIB: u32 = 1024 * 1024;

/// Hashes and verifies passwords on a bounded blocking pool.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with the given cost and at most `concurrency` computations
    /// at once (use the number of cores).
    pub fn new(params: HashParams, concurrency: usize) -> Result<Self, String> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| format!("invalid Argon2 parameters: {e}"))?;
        let dummy_hash = hash_blocking(&params, "portcullis dummy password")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hash a password into an Argon2id PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String, String> {
        let params = self.params.clone();
        self.run(move || hash_blocking(&params, password.expose_secret()))
            .await?
    }

    /// Check a password against a stored hash. `None` (unknown user) checks
    /// against the dummy hash and answers `false`, at the same cost.
    /// Returns whether it matched and whether the hash should be upgraded.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<Verified, String> {
        let dummy = Arc::clone(&self.dummy_hash);
        let params = self.params.clone();
        self.run(move || {
            let known = stored.is_some();
            let hash = stored.as_deref().unwrap_or(&dummy);
            let verified = verify_blocking(&params, password.expose_secret(), hash);
            // The dummy's result is computed, then thrown away.
            Verified {
                matched: known && verified.matched,
                needs_rehash: known && verified.needs_rehash,
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, String> {
        let _permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .map_err(|e| format!("password hashing task failed: {e}"))
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The password matched.
    pub matched: bool,
    /// The stored hash uses other parameters than the configured ones.
    pub needs_rehash: bool,
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, String> {
    argon2(params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| format!("could not hash the password: {e}"))
}

fn verify_blocking(params: &Params, password: &str, stored: &str) -> Verified {
    let no = Verified {
        matched: false,
        needs_rehash: false,
    };
    // `!…` is Django's unusable password; anything unparsable never matches.
    let Ok(hash) = PasswordHash::new(stored) else {
        return no;
    };
    let Ok(stored_params) = Params::try_from(&hash) else {
        return no;
    };
    if stored_params.m_cost() > MAX_MEMORY_KIB {
        return no;
    }
    let matched = argon2(params)
        .verify_password(password.as_bytes(), &hash)
        .is_ok();
    let needs_rehash = matched
        && (hash.algorithm.as_str() != "argon2id"
            || stored_params.m_cost() != params.m_cost()
            || stored_params.t_cost() != params.t_cost()
            || stored_params.p_cost() != params.p_cost());
    Verified {
        matched,
        needs_rehash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hashes_verify_and_flag_outdated_params() {
        let hasher = PasswordHasher::new(cheap(), 2).unwrap();
        let hash = hasher.hash("pw".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let ok = hasher
            .verify("pw".into(), Some(hash.clone()))
            .await
            .unwrap();
        assert_eq!(
            ok,
            Verified {
                matched: true,
                needs_rehash: false
            }
        );
        let bad = hasher
            .verify("nope".into(), Some(hash.clone()))
            .await
            .unwrap();
        assert!(!bad.matched);
        let stronger = PasswordHasher::new(
            HashParams {
                memory_kib: 128,
                ..cheap()
            },
            1,
        )
        .unwrap();
        let upgraded = stronger.verify("pw".into(), Some(hash)).await.unwrap();
        assert_eq!(
            upgraded,
            Verified {
                matched: true,
                needs_rehash: true
            }
        );
        assert!(!hasher.verify("pw".into(), None).await.unwrap().matched);
        assert!(
            !hasher
                .verify("".into(), Some("!unusable".into()))
                .await
                .unwrap()
                .matched
        );
    }
}

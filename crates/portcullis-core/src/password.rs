//! Password hashing with Argon2id, off the async runtime.
//!
//! Every hash and verification runs on tokio's blocking pool behind a
//! semaphore sized to the cores: a flood of logins queues here instead of
//! starving token verification, and memory stays bounded (each Argon2 call
//! holds `m_cost` KiB). Unknown users are verified against a dummy hash made
//! with the same parameters, so they cost the same time as a wrong password.
//!
//! Stored hashes that are not Argon2id PHC strings are Django's
//! `auth_user.password` values, brought over by `portcullis import django`:
//! they are verified with [`portcullis_django`] on the same pool, and a
//! successful login asks for a rehash so they turn into Argon2id as users
//! come back (Django's own `check_password` upgrades the same way). Their
//! costs are capped before any work ([`CostLimits`]); a row over the caps,
//! an unusable `!` password or a format nobody can verify never matches, and
//! still costs one dummy verification, so none of them answers faster than a
//! wrong password. What cannot be hidden: a Django hash with costs other
//! than ours (say PBKDF2 at 1,000,000 iterations) takes its own time until
//! its user logs in once, as it did in Django.

use std::error::Error;
use std::sync::Arc;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use portcullis_django::{CostLimits, DjangoHash};
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

/// The hasher failed: the password was neither hashed nor checked.
#[derive(Debug, thiserror::Error)]
pub enum HasherError {
    /// The configured Argon2 costs are outside Argon2's range.
    #[error("invalid Argon2 parameters")]
    Params(#[source] argon2::Error),
    /// Argon2 could not hash: no random salt, or no memory for the work.
    #[error("could not hash the password")]
    Hash(#[source] Box<dyn Error + Send + Sync>),
    /// The blocking task that ran the hash failed (it panicked or the
    /// runtime is shutting down).
    #[error("password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The hasher's queue is closed.
    #[error("the password hasher has stopped")]
    Stopped(#[source] tokio::sync::AcquireError),
}

/// Why a stored hash can never match. The messages never quote the hash
/// (it may be a plaintext password someone stored by mistake).
#[derive(Debug, thiserror::Error)]
pub enum UnusableHash {
    /// A Django value that cannot be verified.
    #[error(transparent)]
    Django(#[from] portcullis_django::HashError),
    /// A `$argon2…` value that is not a PHC string.
    #[error("malformed Argon2 PHC string")]
    Malformed(#[source] argon2::password_hash::phc::Error),
    /// A PHC string whose parameters Argon2 refuses.
    #[error("invalid Argon2 parameters")]
    Params(#[source] argon2::password_hash::Error),
    /// A cost above the caps that imported Django hashes have too.
    #[error("Argon2 hash asks for {what} = {value}, above the limit of {limit}")]
    CostTooHigh {
        /// Which cost: `memory (KiB)`, `time (passes)` or `lanes`.
        what: &'static str,
        /// What the hash asks for.
        value: u32,
        /// The cap.
        limit: u32,
    },
}

/// Hashes and verifies passwords on a bounded blocking pool.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
    limits: CostLimits,
}

impl PasswordHasher {
    /// A hasher with the given cost and at most `concurrency` computations
    /// at once (use the number of cores).
    pub fn new(params: HashParams, concurrency: usize) -> Result<Self, HasherError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(HasherError::Params)?;
        let dummy_hash = hash_blocking(&params, "portcullis dummy password")?;
        Ok(Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: dummy_hash.into(),
            limits: CostLimits::default(),
        })
    }

    /// Why a stored hash can never match, or `Ok` if it can be verified
    /// (or is an unusable password, which is valid and never matches).
    /// Cheap: it parses, it does not hash. The reasons never quote the hash.
    pub fn check_stored(&self, stored: &str) -> Result<(), UnusableHash> {
        parse_stored(stored, &self.limits).map(|_| ())
    }

    /// Hash a password into an Argon2id PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String, HasherError> {
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
    ) -> Result<Verified, HasherError> {
        let dummy = Arc::clone(&self.dummy_hash);
        let params = self.params.clone();
        let limits = self.limits;
        self.run(move || {
            let password = password.expose_secret();
            let outcome = stored.map(|stored| verify_stored(&params, &limits, password, &stored));
            if let Some(verified) = outcome.flatten() {
                return verified;
            }
            // Unknown user, or a hash that was refused unverified: spend what
            // a wrong password costs, then say no.
            let _ = verify_stored(&params, &limits, password, &dummy);
            Verified {
                matched: false,
                needs_rehash: false,
            }
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HasherError> {
        // The queue time is what a login flood costs honest users: exported
        // as a histogram so an operator sees the semaphore saturate before
        // logins time out.
        let queued = std::time::Instant::now();
        let _permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(HasherError::Stopped)?;
        metrics::histogram!(crate::HASH_QUEUE_SECONDS).record(queued.elapsed().as_secs_f64());
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(work))
            .await
            .map_err(HasherError::Task)
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

/// A new Argon2id PHC hash: what `PasswordHasher::hash_password` makes (a
/// fresh random salt of the recommended length, the configured output
/// length), with working memory from [`working_memory`], as verifications
/// have.
fn hash_blocking(params: &Params, password: &str) -> Result<String, HasherError> {
    fn cannot(e: impl Into<Box<dyn Error + Send + Sync>>) -> HasherError {
        HasherError::Hash(e.into())
    }
    let salt = argon2::password_hash::try_generate_salt().map_err(cannot)?;
    let salt = Salt::new(&salt).map_err(cannot)?;
    let mut output = [0_u8; Output::MAX_LENGTH];
    let output = output
        .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
        .ok_or_else(|| cannot("output length"))?;
    let memory = working_memory(params.block_count()).ok_or_else(|| cannot("not enough memory"))?;
    let argon = argon2(params);
    argon
        .hash_password_into_with_memory(password.as_bytes(), &salt, output, memory)
        .map_err(cannot)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(cannot)?,
        salt: Some(salt),
        hash: Some(Output::new(output).map_err(cannot)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches an Argon2 PHC hash: what
/// `PasswordVerifier::verify_password` does (the hash's own algorithm,
/// version, parameters and salt; the outputs compared in constant time by
/// `Output`'s `PartialEq`), with working memory from [`working_memory`]
/// instead of the crate's zeroed allocation.
fn verify_phc(hash: &PasswordHash, params: &Params, password: &[u8]) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let version = match hash.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let argon = Argon2::new(algorithm, version, params.clone());
    let mut computed = [0_u8; Output::MAX_LENGTH];
    let Some(computed) = computed.get_mut(..expected.len()) else {
        return false;
    };
    let Some(memory) = working_memory(params.block_count()) else {
        return false;
    };
    argon
        .hash_password_into_with_memory(password, salt, computed, memory)
        .is_ok()
        && Output::new(computed).is_ok_and(|computed| computed == *expected)
}

/// Argon2's working memory (`m` KiB), written with zeros block by block
/// rather than allocated zeroed: an allocator may zero a large recycled
/// region by handing its pages back to the kernel and faulting them in
/// again (jemalloc does: 2,048 page faults a verification at 8 MiB), where
/// writing them costs a fraction of a millisecond. Argon2 overwrites every
/// block before reading it; the zeros only make the memory initialised.
/// `None` when the memory cannot be had (the verification then fails).
fn working_memory(blocks: usize) -> Option<Vec<Block>> {
    let mut memory = Vec::new();
    memory.try_reserve_exact(blocks).ok()?;
    memory.extend(std::iter::repeat_n(Block::new(), blocks));
    Some(memory)
}

/// A stored hash, parsed and within the cost caps.
enum Stored {
    /// One of ours (or any Argon2 PHC string).
    Phc(Box<PasswordHash>, Params),
    /// A Django `auth_user.password` value.
    Django(DjangoHash),
}

fn parse_stored(stored: &str, limits: &CostLimits) -> Result<Stored, UnusableHash> {
    if !stored.starts_with("$argon2") {
        return Ok(Stored::Django(DjangoHash::parse(stored, limits)?));
    }
    let hash = PasswordHash::new(stored).map_err(UnusableHash::Malformed)?;
    let params = Params::try_from(&hash).map_err(UnusableHash::Params)?;
    // The same caps as an imported Django Argon2 hash.
    for (what, value, limit) in [
        (
            "memory (KiB)",
            params.m_cost(),
            limits.max_argon2_memory_kib,
        ),
        ("time (passes)", params.t_cost(), limits.max_argon2_time),
        ("lanes", params.p_cost(), limits.max_argon2_lanes),
    ] {
        if value > limit {
            return Err(UnusableHash::CostTooHigh { what, value, limit });
        }
    }
    Ok(Stored::Phc(Box::new(hash), params))
}

/// `None` when the hash was refused without verifying it (logged).
fn verify_stored(
    params: &Params,
    limits: &CostLimits,
    password: &str,
    stored: &str,
) -> Option<Verified> {
    let parsed = match parse_stored(stored, limits) {
        Ok(parsed) => parsed,
        Err(reason) => {
            // The reason never quotes the hash (it may be a plaintext
            // password someone stored by mistake).
            let reason = crate::error_chain(&reason);
            tracing::warn!(%reason, "stored password hash refused without verifying it");
            return None;
        }
    };
    match parsed {
        Stored::Phc(hash, stored_params) => {
            let matched = verify_phc(&hash, &stored_params, password.as_bytes());
            let needs_rehash = matched
                && (hash.algorithm.as_str() != "argon2id"
                    || stored_params.m_cost() != params.m_cost()
                    || stored_params.t_cost() != params.t_cost()
                    || stored_params.p_cost() != params.p_cost());
            Some(Verified {
                matched,
                needs_rehash,
            })
        }
        // An unusable password is a decision, not a failure: no log.
        Stored::Django(DjangoHash::Unusable) => None,
        Stored::Django(hash) => match hash.verify(password) {
            // Every Django hash becomes one of ours on its first login.
            Ok(matched) => Some(Verified {
                matched,
                needs_rehash: matched && portcullis_django::needs_rehash(&hash),
            }),
            Err(e) => {
                tracing::warn!(reason = %e, algorithm = hash.algorithm(), "Django password hash could not be verified");
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use argon2::PasswordHasher as _;

    use super::*;

    /// `hash_blocking` makes what the crate's `hash_password` makes: the
    /// same PHC fields and parameters, a fresh salt each time, and a hash
    /// the crate's own `verify_password` accepts for that password only.
    #[test]
    fn hash_blocking_agrees_with_the_crate() {
        use argon2::PasswordVerifier as _;
        let params = Params::new(64, 2, 1, None).unwrap();
        let ours = hash_blocking(&params, "correct horse").unwrap();
        let theirs = argon2(&params)
            .hash_password(b"correct horse")
            .unwrap()
            .to_string();
        let fields = |phc: &str| {
            let parts: Vec<String> = phc.split('$').map(str::to_owned).collect();
            (parts.len(), parts.get(1..4).map(<[String]>::to_vec))
        };
        assert_eq!(fields(&ours), fields(&theirs), "{ours} / {theirs}");
        assert_eq!(
            fields(&ours).1.unwrap()[0..3],
            ["argon2id", "v=19", "m=64,t=2,p=1"]
        );
        assert_ne!(ours, hash_blocking(&params, "correct horse").unwrap());
        let hash = PasswordHash::new(&ours).unwrap();
        let argon = argon2(&params);
        assert!(argon.verify_password(b"correct horse", &hash).is_ok());
        assert!(argon.verify_password(b"correct hors", &hash).is_err());
    }

    /// `verify_phc` agrees with the crate's own `verify_password` on every
    /// variant and version a PHC string may name, for the right password
    /// and wrong ones.
    #[test]
    fn verify_phc_agrees_with_the_crate() {
        use argon2::PasswordVerifier as _;
        let params = Params::new(64, 1, 1, None).unwrap();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            for version in [Version::V0x13, Version::V0x10] {
                let argon = Argon2::new(algorithm, version, params.clone());
                let stored = argon.hash_password(b"correct horse").unwrap().to_string();
                let hash = PasswordHash::new(&stored).unwrap();
                let stored_params = Params::try_from(&hash).unwrap();
                for (password, expected) in [
                    (&b"correct horse"[..], true),
                    (b"correct hors", false),
                    (b"", false),
                ] {
                    let ours = verify_phc(&hash, &stored_params, password);
                    let theirs = argon.verify_password(password, &hash).is_ok();
                    assert_eq!((ours, theirs), (expected, expected), "{stored}");
                }
            }
        }
        // No `v=`: both take the default version.
        let old = Argon2::new(Algorithm::Argon2i, Version::V0x10, params);
        let stored = old
            .hash_password(b"pw-12345")
            .unwrap()
            .to_string()
            .replace("$v=16", "");
        let hash = PasswordHash::new(&stored).unwrap();
        let stored_params = Params::try_from(&hash).unwrap();
        assert_eq!(
            verify_phc(&hash, &stored_params, b"pw-12345"),
            old.verify_password(b"pw-12345", &hash).is_ok(),
            "{stored}"
        );
    }

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

    /// simplejwt-5.5.1.md §8: Django 5.2's own output for `password`.
    const DJANGO_MD5: &str = "md5$seasalt1234567890abcde$3359237fa834c79f497ce5e9f0f0c2f6";
    const DJANGO_ARGON2: &str = "argon2$argon2id$v=19$m=102400,t=2,p=8$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k";

    #[tokio::test]
    async fn django_hashes_verify_and_always_ask_for_a_rehash() {
        let hasher = PasswordHasher::new(cheap(), 2).unwrap();
        for stored in [DJANGO_MD5, DJANGO_ARGON2] {
            let ok = hasher
                .verify("password".into(), Some(stored.to_owned()))
                .await
                .unwrap();
            assert_eq!(
                ok,
                Verified {
                    matched: true,
                    needs_rehash: true
                },
                "{stored}"
            );
            let bad = hasher
                .verify("Password".into(), Some(stored.to_owned()))
                .await
                .unwrap();
            assert_eq!(
                bad,
                Verified {
                    matched: false,
                    needs_rehash: false
                }
            );
            assert!(hasher.check_stored(stored).is_ok(), "{stored}");
        }
    }

    #[tokio::test]
    async fn refused_hashes_never_match_and_say_why() {
        let hasher = PasswordHasher::new(cheap(), 2).unwrap();
        let hostile = "pbkdf2_sha256$4000000000$seasalt1234567890abcde$iJXqWb58pYVmtwDUMmjHYocr95POBFCKvDBnKmocqUU=";
        let greedy_argon = "$argon2id$v=19$m=4194304,t=1,p=1$c2Vhc2FsdDEyMzQ1Njc4OTBhYmNkZQ$nQ/875Voa4W7MYiY0wepjM1VWwhqVwe9hUCAhosjd5k";
        for (stored, reason) in [
            (
                hostile,
                "pbkdf2_sha256 hash asks for iterations = 4000000000, above the configured limit of 10000000; raise CostLimits if this hash is genuine",
            ),
            (
                greedy_argon,
                "Argon2 hash asks for memory (KiB) = 4194304, above the limit of 1048576",
            ),
            (
                "crypt$$ab1234567890",
                "unsupported Django password hasher: crypt (Django's CryptPasswordHasher, removed in Django 5.0, stored the host's crypt(3) output, usually DES; no maintained pure-Rust crypt(3) exists, so these users must reset their passwords)",
            ),
        ] {
            let refused = hasher.check_stored(stored).unwrap_err();
            assert_eq!(crate::error_chain(&refused).to_string(), reason);
            let verified = hasher
                .verify("password".into(), Some(stored.to_owned()))
                .await
                .unwrap();
            assert!(!verified.matched, "{stored}");
        }
        // Unusable passwords are valid rows that never match.
        assert!(hasher.check_stored("!abc").is_ok());
        assert!(
            !hasher
                .verify("!abc".into(), Some("!abc".into()))
                .await
                .unwrap()
                .matched
        );
    }
}

//! The key set at run time: the reload task that keeps every node's
//! engine in step with the database, rotation (automatic, and the key
//! the `keys generate` and `keys rotate` commands add), and the keys of
//! another issuer fetched from `JWK_URL`.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{anyhow, bail};
use portcullis_core::{KeySource, KeyStore as _, StoreError};
use portcullis_store::SqlStore;
use portcullis_token::{
    KeyRing, KeyState, StoredKey, TokenEngine, algorithm_name, generate_key, key_states,
    parse_algorithm,
};
use portcullis_verify::JwksSource;

use crate::config::Rotation;

/// How often a running server rereads the key set: well inside the 5 s
/// within which a change made elsewhere must be seen.
pub const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// `JWK_URL` is refetched for an unknown kid at most this often, so a
/// flood of tokens with made-up kids cannot make us hammer the issuer.
pub const REMOTE_REFETCH_EVERY: Duration = portcullis_verify::JWKS_REFETCH_EVERY;

/// `keys rotate` (and the console's Rotate): publish a successor of the
/// active key, of `alg` (default: the active key's, else `fallback`), that
/// signs after `KEY_PUBLISH_DELAY`.
pub(crate) async fn rotate(
    store: &SqlStore,
    policy: &Rotation,
    alg: Option<String>,
    fallback: &str,
    now: i64,
) -> anyhow::Result<StoredKey> {
    let keys = store.signing_keys().await?;
    let states = key_states(&keys, now);
    let active = keys
        .iter()
        .zip(&states)
        .find(|(_, s)| **s == KeyState::Active)
        .map(|(k, _)| k.algorithm.clone());
    let alg = alg.or(active).unwrap_or_else(|| fallback.to_owned());
    let at = now.saturating_add(policy.publish_delay);
    add_key(store, policy, &alg, None, Some(at), now).await
}

/// Generate and store a key that signs from `activates_at` (`None`: not
/// scheduled). The key that signs now then keeps verifying until every
/// token it may sign before `activates_at` has expired, and retires.
pub(crate) async fn add_key(
    store: &SqlStore,
    policy: &Rotation,
    alg: &str,
    bits: Option<u32>,
    activates_at: Option<i64>,
    now: i64,
) -> anyhow::Result<StoredKey> {
    const ALLOWED: [&str; 6] = ["ES256", "ES384", "EdDSA", "RS256", "PS256", "HS256"];
    if !ALLOWED.contains(&alg) {
        bail!(
            "--alg {alg:?} is not one of {}; EdDSA is a good default",
            ALLOWED.join(", ")
        );
    }
    let rsa = alg.starts_with("RS") || alg.starts_with("PS");
    match bits {
        Some(_) if !rsa => bail!("--bits applies to RSA keys (RS256, PS256) only"),
        Some(b) if ![2048, 3072, 4096, 8192].contains(&b) => {
            bail!("--bits {b}: RSA keys are 2048, 3072, 4096 or 8192 bits")
        }
        _ => {}
    }
    let algorithm = parse_algorithm(alg)?;
    let generated = generate_key(algorithm, bits)?;
    let existing = store.signing_keys().await?;
    let active = existing
        .iter()
        .zip(key_states(&existing, now))
        .find(|(_, state)| *state == KeyState::Active)
        .map(|(old, _)| old);
    // Times are whole seconds and the key that activated last signs: a
    // successor must activate at least a second after the key it replaces.
    let activates_at = activates_at.map(|at| match active.and_then(|a| a.activates_at) {
        Some(old) => at.max(old.saturating_add(1)),
        None => at,
    });
    let supersedes = active
        .zip(activates_at)
        .map(|(old, at)| (old.kid.as_str(), at.saturating_add(policy.token_life)));
    let key = StoredKey {
        kid: generated.kid,
        algorithm: algorithm_name(algorithm).to_owned(),
        private_key: generated.private_key,
        public_key: generated.public_key,
        created_at: now,
        activates_at,
        retires_at: None,
    };
    store
        .add_signing_key(&key, supersedes)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(message) => anyhow!(message),
            other => anyhow!(other),
        })?;
    Ok(key)
}

/// Read the key set and install it. Keys that do not load are logged once
/// (per kid, via `warned`) and left out.
#[allow(clippy::implicit_hasher)] // a private bookkeeping set
pub async fn reload(
    engine: &TokenEngine,
    store: &SqlStore,
    warned: &mut HashSet<String>,
) -> anyhow::Result<()> {
    let stored = store.signing_keys().await?;
    let (ring, errors) = KeyRing::load(&stored, &engine.key_ring());
    for (kid, error) in errors {
        if warned.insert(kid.clone()) {
            tracing::error!(%kid, %error, "a key in the key set cannot be used; it is ignored");
        }
    }
    engine.install_keys(ring);
    Ok(())
}

/// Reload the key set every [`RELOAD_EVERY`] and, with
/// `KEY_ROTATION_INTERVAL`, rotate when it is due. Runs until aborted.
pub async fn reload_task(engine: TokenEngine, store: SqlStore, policy: Rotation) {
    let mut warned = HashSet::new();
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(e) = reload(&engine, &store, &mut warned).await {
            tracing::warn!(error = %format_args!("{e:#}"), "cannot reload the key set; keeping the previous one");
            continue;
        }
        if let Some(interval) = policy.interval {
            match rotate_if_due(&store, &policy, interval, engine.now()).await {
                // Sign with the successor as soon as it is due, not a tick later.
                Ok(true) => {
                    if let Err(e) = reload(&engine, &store, &mut warned).await {
                        tracing::warn!(error = %format_args!("{e:#}"), "cannot reload the key set after rotating");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %format_args!("{e:#}"), "automatic key rotation failed");
                }
            }
        }
    }
}

/// Automatic rotation: when the active key has signed for `interval` and
/// no successor is scheduled, publish one. Nodes agree on who rotates
/// through a first-insert-wins setting named after the active key.
/// Returns whether this node rotated.
async fn rotate_if_due(
    store: &SqlStore,
    policy: &Rotation,
    interval: i64,
    now: i64,
) -> anyhow::Result<bool> {
    let keys = store.signing_keys().await?;
    let states = key_states(&keys, now);
    let scheduled = keys
        .iter()
        .zip(&states)
        .any(|(k, s)| *s == KeyState::Pending && k.activates_at.is_some());
    let Some((active, _)) = keys
        .iter()
        .zip(&states)
        .find(|(_, s)| **s == KeyState::Active)
    else {
        return Ok(false);
    };
    let due = active
        .activates_at
        .is_some_and(|at| at.saturating_add(interval) <= now);
    if !due || scheduled {
        return Ok(false);
    }
    let claim = format!("rotation_after:{}", active.kid);
    // Random, so two nodes (both PID 1 in containers) never both win.
    let mut nonce = [0_u8; 16];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| anyhow!("the random generator failed"))?;
    let me = format!("{:032x}", u128::from_le_bytes(nonce));
    if store.init_setting(&claim, &me).await? != me {
        return Ok(false);
    }
    let at = now.saturating_add(policy.publish_delay);
    let key = add_key(store, policy, &active.algorithm, None, Some(at), now).await?;
    tracing::info!(kid = %key.kid, replaces = %active.kid, "rotated the signing key (KEY_ROTATION_INTERVAL)");
    Ok(true)
}

/// Another issuer's JWKS (`JWK_URL`), cached in the engine and refetched
/// on an unknown kid at most every [`REMOTE_REFETCH_EVERY`]: portcullis-verify's
/// [`JwksSource`], the code services protected by portcullis run, plus logs.
#[derive(Debug)]
pub struct RemoteJwks(JwksSource);

impl RemoteJwks {
    /// A source for `url` (http or https).
    pub fn new(url: &str) -> anyhow::Result<Self> {
        JwksSource::new(url).map(Self).map_err(|e| anyhow!("{e}"))
    }

    /// Fetch the document and install its usable keys.
    pub async fn fetch(&self, engine: &TokenEngine) -> anyhow::Result<()> {
        let (kept, skipped) = self.0.fetch(engine).await?;
        if !skipped.is_empty() {
            tracing::debug!(
                ?skipped,
                "JWK_URL keys that are not asymmetric signature keys are ignored"
            );
        }
        tracing::info!(keys = kept, url = %self.0.url(), "fetched JWK_URL");
        Ok(())
    }
}

#[async_trait::async_trait]
impl KeySource for RemoteJwks {
    async fn refresh_for_unknown_kid(&self, engine: &TokenEngine) -> bool {
        match self.0.refresh_for_unknown_kid(engine).await {
            Ok(fresh) => fresh,
            Err(e) => {
                let error = portcullis_core::error_chain(&e);
                tracing::warn!(%error, "cannot refetch JWK_URL");
                false
            }
        }
    }
}

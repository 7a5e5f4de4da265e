//! `portcullis keys …`: generate, rotate, retire, list and export the
//! signing keys. No command writes a file: keys live in the database, and
//! `export-public` prints the public JWKS to standard output.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::bail;
use portcullis_core::{AuditAction, KeyStore as _, Target};
use portcullis_token::{Clock as _, SystemClock, TokenEngine, algorithm_name, key_states};

use crate::cli::KeysCommand;
use crate::config::Settings;
use crate::keyring::{add_key, reload, rotate};
use crate::store_setup::{load_keys, open_store};

/// Run `portcullis keys …`.
pub async fn command(command: KeysCommand, settings: &Settings) -> anyhow::Result<()> {
    let store = open_store(settings).await?;
    let policy = settings.keys.rotation;
    let now = SystemClock.now();
    match command {
        KeysCommand::Generate {
            alg,
            bits,
            activate,
        } => {
            let key = add_key(&store, &policy, &alg, bits, activate.then_some(now), now).await?;
            let what = match (activate, key.algorithm.starts_with("HS")) {
                (true, _) => "signs from now on",
                // A shared secret is never published.
                (false, true) => "verifies; it does not sign and, being HMAC, is never published",
                (false, false) => "is published and verifies; it does not sign",
            };
            let detail = format!(
                "{}{}",
                key.algorithm,
                if activate { ", signs now" } else { "" }
            );
            crate::audit::record(
                &store,
                AuditAction::KeyGenerate,
                Some(Target::named(&key.kid)),
                detail,
            )
            .await;
            println!("Generated {} key {}; it {what}.", key.algorithm, key.kid);
        }
        KeysCommand::Rotate { alg } => {
            let fallback = algorithm_name(settings.tokens.algorithm);
            let key = rotate(&store, &policy, alg, fallback, now).await?;
            let detail = format!("{}, signs from {}", key.algorithm, time(key.activates_at));
            crate::audit::record(
                &store,
                AuditAction::KeyRotate,
                Some(Target::named(&key.kid)),
                detail,
            )
            .await;
            println!(
                "Published {} key {}; it signs from {} on.",
                key.algorithm,
                key.kid,
                time(key.activates_at)
            );
        }
        KeysCommand::Retire { kid } => {
            if !store.retire_signing_key(&kid, now).await? {
                bail!("no key with kid {kid:?}");
            }
            crate::audit::record(
                &store,
                AuditAction::KeyRetire,
                Some(Target::named(&kid)),
                "",
            )
            .await;
            println!("Key {kid} is retired: its tokens are no longer accepted.");
        }
        KeysCommand::List => {
            let keys = store.signing_keys().await?;
            println!(
                "{:<24} {:<9} {:<12} {:<20} {:<20} {:<20}",
                "kid", "algorithm", "state", "created", "activates", "retires"
            );
            for (key, state) in keys.iter().zip(key_states(&keys, now)) {
                println!(
                    "{:<24} {:<9} {:<12} {:<20} {:<20} {:<20}",
                    key.kid,
                    key.algorithm,
                    state.as_str(),
                    time(Some(key.created_at)),
                    time(key.activates_at),
                    time(key.retires_at)
                );
            }
        }
        KeysCommand::ExportPublic => {
            let engine = TokenEngine::new(
                settings.tokens.clone(),
                load_keys(settings, &store).await?,
                Arc::new(SystemClock),
            );
            reload(&engine, &store, &mut HashSet::new()).await?;
            println!("{}", engine.jwks()?.body);
        }
    }
    Ok(())
}

/// RFC 3339 in UTC, or `-`.
fn time(at: Option<i64>) -> String {
    at.and_then(|at| u64::try_from(at).ok()).map_or_else(
        || "-".to_owned(),
        |at| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(at)).to_string(),
    )
}

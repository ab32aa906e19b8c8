//! Sign-In with Ethereum (EIP-4361): the server issues a single-use nonce that
//! expires, the wallet signs a message naming it, and the server checks the message
//! (domain, chain, validity window) and recovers the signer with alloy.
//!
//! The dev login builds and signs such a message server-side with a local dev wallet
//! and sends it through the very same check, so demo mode exercises the real path.

use std::str::FromStr;

use alloy::primitives::{Address, Signature};
use alloy::signers::SignerSync as _;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use store::User;

use crate::error::{Error, Result};
use crate::state::AppState;

/// The statement every sign-in message carries.
pub(crate) const STATEMENT: &str = "Sign in to RLFC Arena.";

/// How far a wallet's clock may run ahead of the server's.
const CLOCK_SKEW: time::Duration = time::Duration::seconds(60);

/// Issues a fresh nonce; returns it with its expiry (ms since the epoch).
pub(crate) async fn issue_nonce(state: &AppState) -> Result<(String, i64)> {
    let nonce: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let ttl = i64::try_from(state.config.nonce_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    let expires_at = store::now_ms() + ttl;
    state.store.create_nonce(&nonce, expires_at).await?;
    Ok((nonce, expires_at))
}

/// Checks a signed EIP-4361 message and returns the user it signs in (created on
/// first sign-in). The nonce is spent only when everything else holds.
pub(crate) async fn verify_sign_in(
    state: &AppState,
    message: &str,
    signature: &str,
) -> Result<User> {
    let msg = siwe::Message::from_str(message)
        .map_err(|e| Error::invalid("message", format!("not an EIP-4361 message: {e}")))?;
    let config = &state.config;
    let domain = msg.domain.as_str().to_ascii_lowercase();
    let domain_ok =
        domain == config.siwe_domain.to_ascii_lowercase() || config.allowed_hosts.contains(&domain);
    if !domain_ok {
        return Err(Error::invalid(
            "message",
            format!("domain must be {}", config.siwe_domain),
        ));
    }
    // The URI is the server the user signs in to: the configured scheme and the
    // message's own domain.
    let scheme = config.siwe_uri.split_once("://").map_or("http", |(s, _)| s);
    let uri = msg.uri.as_str().to_ascii_lowercase();
    let uri_origin = uri.trim_end_matches('/');
    if uri_origin != format!("{scheme}://{domain}") {
        return Err(Error::invalid(
            "message",
            format!("uri must be {scheme}://{domain}"),
        ));
    }
    if msg.statement.as_deref() != Some(STATEMENT) {
        return Err(Error::invalid(
            "message",
            format!("statement must be {STATEMENT:?}"),
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    if msg.issued_at.as_ref() > &(now + CLOCK_SKEW) {
        return Err(Error::invalid("message", "issued-at is in the future"));
    }
    let nonce_ttl = time::Duration::try_from(config.nonce_ttl).unwrap_or(time::Duration::HOUR);
    if msg.issued_at.as_ref() < &(now - nonce_ttl - CLOCK_SKEW) {
        return Err(Error::invalid(
            "message",
            "issued-at is older than a sign-in nonce lives",
        ));
    }
    if msg.chain_id != state.config.chain_id {
        return Err(Error::invalid(
            "message",
            format!("chain id must be {}", state.config.chain_id),
        ));
    }
    if !msg.valid_now() {
        return Err(Error::invalid(
            "message",
            "outside its validity window (expired or not yet valid)",
        ));
    }
    let sig = Signature::from_str(signature.trim())
        .map_err(|e| Error::invalid("signature", format!("not a 65-byte hex signature: {e}")))?;
    let signer = sig
        .recover_address_from_msg(message.as_bytes())
        .map_err(|_| Error::invalid("signature", "cannot recover a signer"))?;
    if signer != Address::from(msg.address) {
        return Err(Error::Forbidden(
            "the signature is not from the message's address".into(),
        ));
    }
    if !state.store.consume_nonce(&msg.nonce).await? {
        return Err(Error::Forbidden(
            "unknown, expired or already used nonce".into(),
        ));
    }
    Ok(state.store.upsert_user(&format!("{signer:#x}")).await?)
}

/// The EIP-4361 message the server would ask `address` to sign with `nonce`.
pub(crate) fn sign_in_message(state: &AppState, address: Address, nonce: &str) -> Result<String> {
    let config = &state.config;
    let msg = siwe::Message {
        domain: config
            .siwe_domain
            .parse()
            .map_err(|e| Error::Internal(format!("siwe_domain: {e}")))?,
        address: address.into_array(),
        statement: Some(STATEMENT.into()),
        uri: config
            .siwe_uri
            .parse()
            .map_err(|e| Error::Internal(format!("siwe_uri: {e}")))?,
        version: siwe::Version::V1,
        chain_id: config.chain_id,
        nonce: nonce.to_string(),
        issued_at: time::OffsetDateTime::now_utc().into(),
        expiration_time: Some(
            (time::OffsetDateTime::now_utc()
                + time::Duration::try_from(config.nonce_ttl).unwrap_or(time::Duration::HOUR))
            .into(),
        ),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    };
    Ok(msg.to_string())
}

/// The dev account the dev login uses when none is named (account 0 deploys the
/// contracts and operates them).
pub const DEFAULT_DEV_ACCOUNT: usize = 1;

/// Signs in as local dev wallet `account` (demo mode only): a server-built message,
/// signed with the dev key, checked like any other. Account 0 (the deployer, the
/// embedded chain's operator) and the configured operator are refused.
pub(crate) async fn dev_sign_in(state: &AppState, account: usize) -> Result<User> {
    if !state.config.demo_login {
        return Err(Error::NotFound("dev login is off".into()));
    }
    if account == 0 || account >= chain::dev::DEFAULT_DEV_ACCOUNTS {
        return Err(Error::invalid(
            "account",
            format!(
                "must be from 1 to {} (account 0 is the chain operator)",
                chain::dev::DEFAULT_DEV_ACCOUNTS - 1
            ),
        ));
    }
    let signer = chain::dev::dev_signer(account);
    if let Some(op) = &state.config.operator
        && op.eq_ignore_ascii_case(&format!("{:#x}", signer.address()))
    {
        return Err(Error::Forbidden(
            "the dev login never signs in as the chain operator".into(),
        ));
    }
    let (nonce, _) = issue_nonce(state).await?;
    let message = sign_in_message(state, signer.address(), &nonce)?;
    let sig = signer
        .sign_message_sync(message.as_bytes())
        .map_err(|e| Error::Internal(format!("dev signer: {e}")))?;
    verify_sign_in(
        state,
        &message,
        &alloy::hex::encode_prefixed(sig.as_bytes()),
    )
    .await
}

//! Tokens for servers started with `--auth-secret`: minted by the real CLI
//! (`cstore token create`), or built by hand in the documented format to make the ones the CLI
//! will not make (expired, signed with the wrong secret, tampered claims).
//!
//! Format (docs/HTTP_API.md): `cst1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(secret,
//! "cst1." + claims part))>`, claims `{"sub", "scopes", "exp"}` with `exp` in unix seconds.

use std::path::Path;
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::HarnessError;

/// The token format's prefix.
pub const TOKEN_PREFIX: &str = "cst1.";

/// Runs `cstore token create --scope <scopes> --ttl <ttl> --secret <secret>` and returns the
/// token it prints.
pub fn mint_token(
    binary: &Path,
    secret: &str,
    scopes: &[&str],
    ttl: &str,
) -> Result<String, HarnessError> {
    let mut command = Command::new(binary);
    command
        .args(["token", "create", "--scope"])
        .arg(scopes.join(","))
        .args(["--ttl", ttl, "--secret", secret]);
    let output = command
        .output()
        .map_err(|e| HarnessError::io(format!("running {command:?}"), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || stdout.is_empty() {
        return Err(HarnessError::Command {
            command: format!("{command:?}"),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    // The token is the last line; anything before it is commentary.
    Ok(stdout
        .lines()
        .last()
        .expect("non-empty output has a line")
        .trim()
        .to_string())
}

/// Runs `cstore token create --secret <secret> <args…>` and returns the token it prints: for
/// the options `mint_token` does not pass (`--collections`, `--subject`).
pub fn mint_token_with(binary: &Path, secret: &str, args: &[&str]) -> Result<String, HarnessError> {
    let mut command = Command::new(binary);
    command
        .args(["token", "create", "--secret", secret])
        .args(args);
    let output = command
        .output()
        .map_err(|e| HarnessError::io(format!("running {command:?}"), e))?;
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_string();
    match stdout.lines().last() {
        Some(token) if output.status.success() => Ok(token.trim().to_string()),
        _ => Err(HarnessError::Command {
            command: format!("{command:?}"),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
    }
}

/// Builds a token by hand: `claims` JSON signed with `secret`.
pub fn sign_token(secret: &str, claims: &serde_json::Value) -> String {
    let claims_part = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signed = format!("{TOKEN_PREFIX}{claims_part}");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(hmac(secret, &signed)))
}

/// Builds a token for `scopes` expiring at `exp_unix_s`, signed with `secret`.
pub fn forge_token(secret: &str, scopes: &[&str], exp_unix_s: i64) -> String {
    sign_token(
        secret,
        &serde_json::json!({ "sub": "itest", "scopes": scopes, "exp": exp_unix_s }),
    )
}

/// Replaces the claims of `token` with `claims` but keeps its signature.
pub fn tamper_claims(token: &str, claims: &serde_json::Value) -> String {
    let signature = token.rsplit('.').next().expect("split yields one part");
    let claims_part = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    format!("{TOKEN_PREFIX}{claims_part}.{signature}")
}

/// Seconds since the unix epoch, by the wall clock.
pub fn unix_now_s() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(now.as_secs()).expect("seconds fit in i64")
}

fn hmac(secret: &str, message: &str) -> Vec<u8> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_has_the_documented_shape() {
        let token = forge_token("s3cret", &["read"], 1_700_000_000);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "cst1");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["scopes"], serde_json::json!(["read"]));
        assert_eq!(claims["exp"], 1_700_000_000);
        let expected = hmac("s3cret", &format!("cst1.{}", parts[1]));
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), expected);
    }

    #[test]
    fn tampering_keeps_the_signature_but_not_the_claims() {
        let token = forge_token("s3cret", &["read"], 1);
        let tampered = tamper_claims(&token, &serde_json::json!({"scopes": ["admin"], "exp": 1}));
        assert_ne!(token, tampered);
        assert_eq!(token.rsplit('.').next(), tampered.rsplit('.').next());
    }
}

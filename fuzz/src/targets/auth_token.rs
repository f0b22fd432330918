//! A bearer token: `cst1.<claims>.<signature>`. Raw, it tests the framing and the signature
//! check; signed (mode bit 0), the claims part is fuzz bytes with a valid HMAC, so the
//! claims decoder is reached as only a holder of the secret could reach it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cstore_server::auth::{Claims, Scope, TokenKey};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::record::{mode, mode_byte};

const SECRET: &str = "fuzzing secret of at least 32 bytes....";
const NOW_S: u64 = 1_800_000_000;

pub fn run(data: &[u8]) {
    let Some((mode, rest)) = mode(data) else {
        return;
    };
    let key = TokenKey::new(SECRET).expect("a strong secret");
    let token = if mode.sealed {
        let signed = format!("cst1.{}", URL_SAFE_NO_PAD.encode(rest));
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key");
        mac.update(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{signature}")
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    if let Ok(claims) = key.verify(&token, NOW_S) {
        assert!(claims.exp > NOW_S, "an accepted token has not expired");
        let _ = claims.allows(Scope::Write);
        let again = key.mint(&claims);
        assert_eq!(key.verify(&again, NOW_S).ok(), Some(claims));
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    let key = TokenKey::new(SECRET).expect("a strong secret");
    let claims = Claims {
        sub: "alice".into(),
        scopes: vec![Scope::Read, Scope::Write],
        exp: NOW_S + 60,
        collections: None,
    };
    let limited = Claims {
        collections: Some(vec!["notes".into(), "todos".into()]),
        ..claims.clone()
    };
    let token = key.mint(&claims);
    let mut raw = vec![mode_byte(false, false, 0)];
    raw.extend_from_slice(token.as_bytes());
    let mut signed = vec![mode_byte(true, false, 0)];
    signed.extend(serde_json::to_vec(&claims).expect("claims serialize"));
    let mut signed_limited = vec![mode_byte(true, false, 0)];
    signed_limited.extend(serde_json::to_vec(&limited).expect("claims serialize"));
    vec![raw, signed, signed_limited]
}

//! What a Connect token says of itself. Connect tokens are JWTs; their payload may carry an
//! `exp` (seconds since the epoch). Only that claim is read; the token is never logged or
//! stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The token's expiry, when it is a JWT that carries one.
pub fn expiry(token: &str) -> Option<jiff::Timestamp> {
    let mut parts = token.trim().split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    // Some encoders pad; the JWT form has no padding.
    let decoded = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    #[derive(serde::Deserialize)]
    struct Claims {
        exp: Option<f64>,
    }
    let claims: Claims = serde_json::from_slice(&decoded).ok()?;
    let exp = claims.exp?;
    if !exp.is_finite() {
        return None;
    }
    jiff::Timestamp::from_second(exp as i64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.c2lnbmF0dXJl",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn the_expiry_of_a_jwt_is_its_exp_claim() {
        let token = jwt(r#"{"aud":["x"],"exp":1893456000,"sub":"y"}"#);
        assert_eq!(
            expiry(&token),
            Some(jiff::Timestamp::from_second(1_893_456_000).unwrap())
        );
    }

    #[test]
    fn tokens_without_an_expiry_have_none() {
        assert_eq!(expiry(&jwt(r#"{"sub":"y"}"#)), None);
        assert_eq!(expiry("not-a-jwt"), None);
        assert_eq!(expiry("a.b.c"), None, "payload is not base64 JSON");
        assert_eq!(expiry(&format!("{}.x", jwt(r#"{"exp":1}"#))), None, "four parts");
    }
}

//! The helpers templates add to Jinja's built-in filters, for the Secrets people compose
//! most: registry credentials, connection strings, SSH keys. Their error messages start with
//! the helper's name and never hold the value they were given.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ssh_key::private::{Ed25519Keypair, KeypairData, RsaKeypair, RsaPrivateKey};
use ssh_key::public::RsaPublicKey;
use ssh_key::{LineEnding, Mpint, PrivateKey};

const HELPERS: [&str; 5] = ["dockerconfigjson", "b64encode", "b64decode", "urlencode", "openssh"];

pub(super) fn register(env: &mut Environment<'static>) {
    env.add_function("dockerconfigjson", dockerconfigjson);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("urlencode", urlencode);
    env.add_filter("openssh", openssh);
}

/// Whether an engine error's detail is one of ours (and so holds no value).
pub(super) fn is_helper_message(detail: &str) -> bool {
    HELPERS
        .iter()
        .any(|name| detail.strip_prefix(name).is_some_and(|rest| rest.starts_with(": ")))
}

fn failed(helper: &str, why: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, format!("{helper}: {why}"))
}

/// The bytes of a string or bytes value.
fn bytes_of<'a>(helper: &str, value: &'a Value) -> Result<&'a [u8], Error> {
    value
        .as_bytes()
        .ok_or_else(|| failed(helper, &format!("takes text or bytes, not {}", value.kind())))
}

/// `.dockerconfigjson` for one registry, as kubelet reads it: `auth` is the base64 of
/// `username:password`.
fn dockerconfigjson(server: &str, username: &str, password: &str) -> Result<String, Error> {
    if server.is_empty() {
        return Err(failed("dockerconfigjson", "the registry server is empty"));
    }
    let auth = STANDARD.encode(format!("{username}:{password}"));
    let config = serde_json::json!({
        "auths": { server: { "username": username, "password": password, "auth": auth } }
    });
    Ok(config.to_string())
}

fn b64encode(value: &Value) -> Result<String, Error> {
    Ok(STANDARD.encode(bytes_of("b64encode", value)?))
}

/// Decodes standard base64 (padding optional) to text.
fn b64decode(value: &Value) -> Result<String, Error> {
    let input = bytes_of("b64decode", value)?;
    let trimmed: Vec<u8> = input.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
    .decode(trimmed)
    .map_err(|_| failed("b64decode", "the input is not valid base64"))?;
    String::from_utf8(decoded).map_err(|_| failed("b64decode", "the decoded bytes are not UTF-8 text"))
}

/// Everything but RFC 3986's unreserved characters: safe in a URL's user info, path and
/// query alike (Jinja's own `urlencode` keeps `/`, which breaks a password in a URL).
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn urlencode(value: &Value) -> Result<String, Error> {
    let text = match value.as_str() {
        Some(text) => text.to_owned(),
        None if value.is_number() || value.kind() == minijinja::value::ValueKind::Bool => value.to_string(),
        None => return Err(failed("urlencode", &format!("takes text, not {}", value.kind()))),
    };
    Ok(utf8_percent_encode(&text, COMPONENT).to_string())
}

/// A private key in PEM (PKCS#8 `PRIVATE KEY`, as 1Password stores SSH keys, or PKCS#1
/// `RSA PRIVATE KEY`) in OpenSSH's format, which `ssh` and Argo CD require. An OpenSSH key
/// is returned as it is (other tools wrap its lines differently, and `ssh` reads them all).
/// Ed25519 and RSA, the key types 1Password generates.
fn openssh(value: &Value) -> Result<String, Error> {
    let text = std::str::from_utf8(bytes_of("openssh", value)?)
        .map_err(|_| failed("openssh", "the key is not PEM text"))?
        .trim();
    if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return Ok(format!("{text}\n"));
    }
    let keypair = keypair_from_pem(text)?;
    let key = PrivateKey::new(keypair, "").map_err(|_| failed("openssh", "the key is not a valid key pair"))?;
    let encoded = key
        .to_openssh(LineEnding::LF)
        .map_err(|_| failed("openssh", "the key could not be encoded"))?;
    Ok(encoded.to_string())
}

const ED25519: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.3.101.112");
const RSA: pkcs8::ObjectIdentifier = pkcs8::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

fn keypair_from_pem(text: &str) -> Result<KeypairData, Error> {
    let (label, der) =
        pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|_| failed("openssh", "the key is not PEM text"))?;
    match label {
        "PRIVATE KEY" => {
            let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice())
                .map_err(|_| failed("openssh", "the PKCS#8 key cannot be read"))?;
            if info.algorithm.oid == ED25519 {
                // An OCTET STRING of the 32-byte seed.
                let seed: [u8; 32] = match info.private_key {
                    [0x04, 0x20, seed @ ..] => seed
                        .try_into()
                        .map_err(|_| failed("openssh", "the Ed25519 key has the wrong size"))?,
                    _ => return Err(failed("openssh", "the Ed25519 key cannot be read")),
                };
                Ok(KeypairData::Ed25519(Ed25519Keypair::from_seed(&seed)))
            } else if info.algorithm.oid == RSA {
                rsa_keypair(info.private_key)
            } else {
                Err(failed("openssh", "only Ed25519 and RSA keys are supported"))
            }
        }
        "RSA PRIVATE KEY" => rsa_keypair(&der),
        "ENCRYPTED PRIVATE KEY" => Err(failed("openssh", "encrypted keys are not supported")),
        _ => Err(failed("openssh", "the PEM block is not a private key")),
    }
}

/// An RSA key pair from a PKCS#1 `RSAPrivateKey`.
fn rsa_keypair(der: &[u8]) -> Result<KeypairData, Error> {
    use pkcs1::der::Decode as _;
    let key = pkcs1::RsaPrivateKey::from_der(der).map_err(|_| failed("openssh", "the RSA key cannot be read"))?;
    let mpint =
        |bytes: &[u8]| Mpint::from_positive_bytes(bytes).map_err(|_| failed("openssh", "the RSA key cannot be read"));
    Ok(KeypairData::Rsa(RsaKeypair {
        public: RsaPublicKey {
            e: mpint(key.public_exponent.as_bytes())?,
            n: mpint(key.modulus.as_bytes())?,
        },
        private: RsaPrivateKey {
            d: mpint(key.private_exponent.as_bytes())?,
            iqmp: mpint(key.coefficient.as_bytes())?,
            p: mpint(key.prime1.as_bytes())?,
            q: mpint(key.prime2.as_bytes())?,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Keys made for these tests with `openssl genpkey`; they protect nothing. Their OpenSSH
    // forms come from other implementations: `ssh-keygen -p` for RSA, Python's
    // `cryptography` for Ed25519 (ssh-keygen 9.2 cannot read a PKCS#8 Ed25519 key), its
    // 76-column lines re-wrapped to OpenSSH's 70, which the `ssh-key` crate insists on.
    const ED25519_PKCS8: &str = include_str!("testdata/ed25519.pkcs8.pem");
    const ED25519_OPENSSH: &str = include_str!("testdata/ed25519.openssh");
    const RSA_PKCS8: &str = include_str!("testdata/rsa.pkcs8.pem");
    const RSA_PKCS1: &str = include_str!("testdata/rsa.pkcs1.pem");
    const RSA_OPENSSH: &str = include_str!("testdata/rsa.openssh");

    #[test]
    fn dockerconfigjson_is_what_kubelet_reads() {
        let json: serde_json::Value =
            serde_json::from_str(&dockerconfigjson("ghcr.io", "bot", "p\"w").unwrap()).unwrap();
        let entry = &json["auths"]["ghcr.io"];
        assert_eq!(entry["username"], "bot");
        assert_eq!(entry["password"], "p\"w", "quotes are escaped, not broken");
        assert_eq!(entry["auth"], STANDARD.encode("bot:p\"w"));
        assert!(dockerconfigjson("", "u", "p").is_err());
    }

    #[test]
    fn base64_both_ways() {
        assert_eq!(b64encode(&Value::from("hello")).unwrap(), "aGVsbG8=");
        assert_eq!(b64encode(&Value::from_bytes(vec![0, 255])).unwrap(), "AP8=");
        assert_eq!(b64decode(&Value::from("aGVsbG8=")).unwrap(), "hello");
        assert_eq!(b64decode(&Value::from("aGVsbG8")).unwrap(), "hello", "padding optional");
        assert_eq!(
            b64decode(&Value::from("aGVs\nbG8=\n")).unwrap(),
            "hello",
            "line breaks ignored"
        );
        let err = b64decode(&Value::from("not base64!")).unwrap_err();
        assert_eq!(err.detail(), Some("b64decode: the input is not valid base64"));
        assert!(b64decode(&Value::from("AP8=")).is_err(), "not text");
        assert!(b64encode(&Value::from(vec![Value::from(1)])).is_err());
    }

    #[test]
    fn urlencode_leaves_only_unreserved_characters() {
        assert_eq!(
            urlencode(&Value::from("p@ss/w:rd?&=#% ü")).unwrap(),
            "p%40ss%2Fw%3Ard%3F%26%3D%23%25%20%C3%BC"
        );
        assert_eq!(urlencode(&Value::from("a-b.c_d~e")).unwrap(), "a-b.c_d~e");
        assert_eq!(urlencode(&Value::from(5432)).unwrap(), "5432");
    }

    #[test]
    fn openssh_converts_pkcs8_and_pkcs1_keys() {
        let ed = openssh(&Value::from(ED25519_PKCS8)).unwrap();
        assert_eq!(
            key_of(&ed),
            key_of(ED25519_OPENSSH),
            "the same Ed25519 key as ssh-keygen's"
        );
        let rsa = openssh(&Value::from(RSA_PKCS8)).unwrap();
        assert_eq!(key_of(&rsa), key_of(RSA_OPENSSH), "the same RSA key as ssh-keygen's");
        let pkcs1 = openssh(&Value::from(RSA_PKCS1)).unwrap();
        assert_eq!(key_of(&pkcs1), key_of(RSA_OPENSSH));
        assert!(ed.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n"));
        let wide = ED25519_OPENSSH.replace('\n', "\n\n");
        assert_eq!(
            openssh(&Value::from(wide.as_str())).unwrap(),
            format!("{}\n", wide.trim()),
            "an OpenSSH key passes through as it is"
        );
    }

    /// The key material, without the random check bytes and comment of an OpenSSH file.
    fn key_of(openssh: &str) -> KeypairData {
        PrivateKey::from_openssh(openssh).unwrap().key_data().clone()
    }

    #[test]
    fn openssh_errors_name_the_helper_and_no_value() {
        for input in [
            "",
            "secret-value-123",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
        ] {
            let err = openssh(&Value::from(input)).unwrap_err();
            let detail = err.detail().unwrap();
            assert!(is_helper_message(detail), "{detail}");
            assert!(!detail.contains("secret-value"), "{detail}");
        }
    }

    #[test]
    fn only_our_prefixes_count_as_helper_messages() {
        assert!(is_helper_message("openssh: the key is not PEM text"));
        assert!(!is_helper_message("opensshx: y"));
        assert!(!is_helper_message("cannot convert \"p@ss\" to integer"));
    }
}

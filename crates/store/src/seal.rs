//! Secrets the store keeps (instance passwords, the API's signing keys),
//! sealed with a key that is not in the store: a copy of the database — a
//! backup, a dump of the shared PostgreSQL — does not give them away.
//!
//! ChaCha20-Poly1305 with a random nonce per value; the value's place (table,
//! column, row) is the associated data, so a sealed value copied into
//! another row does not open. Stored as `sealed:v1:<base64url(nonce ‖
//! ciphertext ‖ tag)>`. A value without that prefix was written before
//! sealing was turned on and is read as it is (`Store::seal_existing`
//! seals such values).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use strata_core::Secret;

use crate::StoreError;

const PREFIX: &str = "sealed:v1:";
/// Length of a key in bytes.
pub const KEY_LEN: usize = 32;

/// The key that seals the store's secrets.
pub struct SealingKey {
    key: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(…)")
    }
}

impl SealingKey {
    /// A key from its bytes (exactly `KEY_LEN`).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != KEY_LEN {
            return Err(StoreError::Sealing(format!(
                "a store key has {KEY_LEN} bytes, this one {}",
                bytes.len()
            )));
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes)
            .map_err(|_| StoreError::Sealing("unusable store key".into()))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            rng: SystemRandom::new(),
        })
    }

    /// A new random key's bytes.
    pub fn generate() -> Result<[u8; KEY_LEN], StoreError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| StoreError::Sealing("no randomness for a store key".into()))?;
        Ok(bytes)
    }

    /// `plaintext` sealed for the place `context` names.
    pub fn seal(&self, plaintext: &str, context: &str) -> Result<String, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| StoreError::Sealing("no randomness for a nonce".into()))?;
        let mut data = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| StoreError::Sealing("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.append(&mut data);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The value stored at `context`: opened when sealed, as it is otherwise.
    pub fn open(&self, stored: &str, context: &str) -> Result<Secret, StoreError> {
        let Some(sealed) = stored.strip_prefix(PREFIX) else {
            return Ok(Secret::new(stored.to_owned()));
        };
        let broken = || {
            StoreError::Sealing(format!(
                "the sealed value of {context} does not open with this store key"
            ))
        };
        let mut data = URL_SAFE_NO_PAD.decode(sealed).map_err(|_| broken())?;
        if data.len() < NONCE_LEN {
            return Err(broken());
        }
        let mut ciphertext = data.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| broken())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| broken())?;
        String::from_utf8(plain.to_vec())
            .map(Secret::new)
            .map_err(|_| broken())
    }
}

/// Reads the key kept in `path` (base64url text, as `create_key_file`
/// writes it).
pub fn read_key_file(path: &std::path::Path) -> Result<SealingKey, StoreError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        StoreError::Sealing(format!("reading the store key {}: {e}", path.display()))
    })?;
    // base64url, with or without padding.
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| {
            StoreError::Sealing(format!("the store key {} is not base64url", path.display()))
        })?;
    SealingKey::from_bytes(&bytes)
}

/// The key in `path`, created there (mode 0600, never replaced) when the
/// file does not exist yet.
pub fn load_or_create_key_file(path: &std::path::Path) -> Result<SealingKey, StoreError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let bytes = SealingKey::generate()?;
            writeln!(file, "{}", URL_SAFE_NO_PAD.encode(bytes)).map_err(|e| {
                StoreError::Sealing(format!("writing the store key {}: {e}", path.display()))
            })?;
            SealingKey::from_bytes(&bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(e) => Err(StoreError::Sealing(format!(
            "creating the store key {}: {e}",
            path.display()
        ))),
    }
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Reads a stored secret without a key: what was written before sealing,
/// or an error naming the missing key.
fn open_without_key(stored: &str, context: &str) -> Result<Secret, StoreError> {
    if is_sealed(stored) {
        Err(StoreError::Sealing(format!(
            "{context} is sealed: open the store with its key"
        )))
    } else {
        Ok(Secret::new(stored.to_owned()))
    }
}

/// Opens `stored` with `key` when there is one.
pub fn open(key: Option<&SealingKey>, stored: &str, context: &str) -> Result<Secret, StoreError> {
    match key {
        Some(key) => key.open(stored, context),
        None => open_without_key(stored, context),
    }
}

/// Seals `plaintext` with `key` when there is one.
pub fn seal(
    key: Option<&SealingKey>,
    plaintext: &str,
    context: &str,
) -> Result<String, StoreError> {
    match key {
        Some(key) => key.seal(plaintext, context),
        None => Ok(plaintext.to_owned()),
    }
}

/// A column that holds sealed values: how to read each row's place and
/// value, how to write the value back, and the associated data of a place.
pub(crate) struct SealedColumn {
    pub select: &'static str,
    pub update: &'static str,
    pub context: fn(&str) -> String,
}

/// Every column the store seals.
pub(crate) const SEALED_COLUMNS: [SealedColumn; 2] = [
    SealedColumn {
        select: "SELECT id AS place, password AS value FROM instances",
        update: "UPDATE instances SET password = $1 WHERE id = $2",
        context: instance_password,
    },
    SealedColumn {
        select: "SELECT kid AS place, private_pem AS value FROM signing_keys",
        update: "UPDATE signing_keys SET private_pem = $1 WHERE kid = $2",
        context: signing_key,
    },
];

/// Where an instance's password is stored.
pub fn instance_password(id: &str) -> String {
    format!("instances.password:{id}")
}

/// Where a signing key's private half is stored.
pub fn signing_key(kid: &str) -> String {
    format!("signing_keys.private_pem:{kid}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key(byte: u8) -> SealingKey {
        SealingKey::from_bytes(&[byte; KEY_LEN]).unwrap()
    }

    #[test]
    fn round_trips_and_hides_the_plaintext() {
        let k = key(1);
        let sealed = k.seal("hunter2-password", "instances.password:a").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            k.open(&sealed, "instances.password:a").unwrap().expose(),
            "hunter2-password"
        );
        // A fresh nonce each time.
        assert_ne!(
            sealed,
            k.seal("hunter2-password", "instances.password:a").unwrap()
        );
    }

    #[test]
    fn another_key_another_row_or_a_changed_byte_do_not_open() {
        let sealed = key(1).seal("p", "instances.password:a").unwrap();
        assert!(key(2).open(&sealed, "instances.password:a").is_err());
        assert!(key(1).open(&sealed, "instances.password:b").is_err());
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(key(1).open(&tampered, "instances.password:a").is_err());
        assert!(key(1).open("sealed:v1:!!", "instances.password:a").is_err());
        assert!(key(1).open("sealed:v1:", "instances.password:a").is_err());
    }

    #[test]
    fn values_from_before_sealing_are_read_as_they_are() {
        assert_eq!(key(1).open("plain", "x").unwrap().expose(), "plain");
        assert_eq!(open(None, "plain", "x").unwrap().expose(), "plain");
    }

    #[test]
    fn a_sealed_value_without_the_key_is_an_error_naming_it() {
        let sealed = key(1).seal("p", "instances.password:a").unwrap();
        let err = open(None, &sealed, "instances.password:a").unwrap_err();
        assert!(err.to_string().contains("key"), "{err}");
    }

    #[test]
    fn a_key_file_is_created_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("strata-seal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("store.key");
        let _ = std::fs::remove_file(&path);
        let sealed = load_or_create_key_file(&path)
            .unwrap()
            .seal("p", "c")
            .unwrap();
        let opens = |key: SealingKey| key.open(&sealed, "c").unwrap().expose() == "p";
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Not replaced: the same key opens what the first one sealed.
        assert!(opens(load_or_create_key_file(&path).unwrap()));
        assert!(opens(read_key_file(&path).unwrap()));
        // Written by hand with padding and a newline: still the key's text.
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{}=\n", text.trim())).unwrap();
        assert!(opens(read_key_file(&path).unwrap()));
        std::fs::write(&path, "not a key").unwrap();
        assert!(read_key_file(&path).is_err());
        assert!(read_key_file(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_have_exactly_32_bytes() {
        assert!(SealingKey::from_bytes(&[0; 31]).is_err());
        assert!(SealingKey::from_bytes(&[0; 33]).is_err());
        assert_eq!(SealingKey::generate().unwrap().len(), KEY_LEN);
    }
}

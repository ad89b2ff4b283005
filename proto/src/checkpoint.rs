//! Signed checkpoints in the C2SP formats: a [tlog-checkpoint] body wrapped in a [signed-note]
//! with an Ed25519 signature, as `ROOT.txt` publishes them.
//!
//! ```text
//! vaultmesh.example/sovereign-scans        ← origin
//! 42                                       ← tree size
//! 3q2+7w...=                               ← root hash, standard base64
//!                                          ← blank line
//! — vaultmesh.example/sovereign-scans Az3gKf...==   ← "— " name base64(key id ‖ signature)
//! ```
//!
//! The signature covers the note text (the three lines and their newlines). The key id is the
//! first 4 bytes of `SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)`; the verifier key is written
//! `name+<key id hex>+<base64(0x01 ‖ public key)>`.
//!
//! [tlog-checkpoint]: https://c2sp.org/tlog-checkpoint
//! [signed-note]: https://c2sp.org/signed-note

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

use crate::auth::NodeKey;
use crate::merkle::Hash;

/// Signature algorithm byte of Ed25519 in signed notes.
const ALG_ED25519: u8 = 0x01;

/// A checkpoint: the log's origin, its size and root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

/// Why a signed checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("not a signed note: {0}")]
    Format(String),
    #[error("no signature by {0} (key id {1})")]
    NoSignature(String, String),
    #[error("the signature by {0} does not verify")]
    BadSignature(String),
}

/// The 4-byte key id of an Ed25519 key named `name`.
pub fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// The verifier key string: `name+<key id hex>+<base64(0x01 ‖ key)>`.
pub fn verifier_key(name: &str, public: &VerifyingKey) -> String {
    let mut k = vec![ALG_ED25519];
    k.extend_from_slice(public.as_bytes());
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public)),
        STANDARD.encode(k)
    )
}

/// Parses a verifier key string (`name+<key id hex>+<base64(0x01 ‖ key)>`) into its name and
/// Ed25519 key, checking the key id.
pub fn parse_verifier_key(vkey: &str) -> Result<(String, VerifyingKey), CheckpointError> {
    let bad = |m: &str| CheckpointError::Format(format!("verifier key: {m}"));
    // Key names contain no '+'; the base64 key may.
    let mut parts = vkey.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("expected name+keyid+key"));
    };
    let raw = STANDARD
        .decode(key)
        .map_err(|_| bad("the key is not base64"))?;
    let (alg, bytes) = raw.split_first().ok_or_else(|| bad("empty key"))?;
    if *alg != ALG_ED25519 {
        return Err(bad("not an Ed25519 key"));
    }
    let arr: [u8; 32] = bytes.try_into().map_err(|_| bad("not 32 bytes"))?;
    let public = VerifyingKey::from_bytes(&arr).map_err(|_| bad("not a valid Ed25519 key"))?;
    if hex::encode(key_id(name, &public)) != id {
        return Err(bad("the key id does not match the name and key"));
    }
    Ok((name.to_string(), public))
}

impl Checkpoint {
    /// The note text: origin, size, base64 root, each followed by a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// The signed note: the body, a blank line and one signature line by `key` named `name`.
    pub fn sign(&self, name: &str, key: &NodeKey) -> String {
        let body = self.body();
        let public = crate::auth::parse_public_key(&key.public_base64())
            .unwrap_or_else(|_| unreachable!("a key's own public key parses"));
        let sig = STANDARD
            .decode(key.sign(body.as_bytes()))
            .unwrap_or_else(|_| unreachable!("our own base64"));
        let mut blob = key_id(name, &public).to_vec();
        blob.extend_from_slice(&sig);
        format!("{body}\n\u{2014} {name} {}\n", STANDARD.encode(blob))
    }

    /// Parses a signed note and checks the signature of `name` with `public`.
    pub fn verify(
        note: &str,
        name: &str,
        public: &VerifyingKey,
    ) -> Result<Checkpoint, CheckpointError> {
        let fmt = |m: &str| CheckpointError::Format(m.to_string());
        if note.contains('\r') || !note.ends_with('\n') {
            return Err(fmt("a note uses \\n line ends and ends with one"));
        }
        let (body, sigs) = note
            .split_once("\n\n")
            .ok_or_else(|| fmt("no blank line between the text and the signatures"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| fmt("no origin line"))?;
        let size: u64 = lines
            .next()
            .and_then(|l| {
                (!l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && (l == "0" || !l.starts_with('0')))
                .then(|| l.parse().ok())
                .flatten()
            })
            .ok_or_else(|| fmt("the second line is not a tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|l| STANDARD.decode(l).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| fmt("the third line is not a base64 SHA-256 root"))?;
        let want_id = key_id(name, public);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else {
                return Err(fmt("a signature line does not start with an em dash"));
            };
            let Some((sig_name, b64)) = rest.split_once(' ') else {
                return Err(fmt("a signature line has no signature"));
            };
            if sig_name != name {
                continue;
            }
            let blob = STANDARD
                .decode(b64)
                .map_err(|_| fmt("a signature is not base64"))?;
            if blob.len() != 4 + 64 || blob[..4] != want_id {
                continue;
            }
            let sig = ed25519_dalek::Signature::from_slice(&blob[4..])
                .map_err(|_| CheckpointError::BadSignature(name.to_string()))?;
            public
                .verify_strict(body.as_bytes(), &sig)
                .map_err(|_| CheckpointError::BadSignature(name.to_string()))?;
            return Ok(Checkpoint {
                origin: origin.to_string(),
                size,
                root,
            });
        }
        Err(CheckpointError::NoSignature(
            name.to_string(),
            hex::encode(want_id),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_refuses_any_change() {
        let key = NodeKey::from_seed([9; 32]);
        let public = crate::auth::parse_public_key(&key.public_base64()).unwrap();
        let cp = Checkpoint {
            origin: "vaultmesh.test/sovereign-scans".into(),
            size: 8,
            root: crate::merkle::empty_root(),
        };
        let note = cp.sign("vaultmesh.test/sovereign-scans", &key);
        let mut lines = note.lines();
        assert_eq!(lines.next(), Some("vaultmesh.test/sovereign-scans"));
        assert_eq!(lines.next(), Some("8"));
        assert_eq!(
            lines.next(),
            Some("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
        );
        assert_eq!(lines.next(), Some(""));
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("\u{2014} vaultmesh.test/sovereign-scans ")
        );
        assert_eq!(
            Checkpoint::verify(&note, "vaultmesh.test/sovereign-scans", &public).unwrap(),
            cp
        );
        let tampered = note.replacen("\n8\n", "\n9\n", 1);
        assert!(matches!(
            Checkpoint::verify(&tampered, "vaultmesh.test/sovereign-scans", &public),
            Err(CheckpointError::BadSignature(_))
        ));
        let other =
            crate::auth::parse_public_key(&NodeKey::from_seed([1; 32]).public_base64()).unwrap();
        assert!(matches!(
            Checkpoint::verify(&note, "vaultmesh.test/sovereign-scans", &other),
            Err(CheckpointError::NoSignature(..))
        ));
        let vkey = verifier_key("vaultmesh.test/sovereign-scans", &public);
        assert!(vkey.starts_with("vaultmesh.test/sovereign-scans+"));
        assert_eq!(vkey.split('+').nth(1).unwrap().len(), 8);
        let (name, parsed) = parse_verifier_key(&vkey).unwrap();
        assert_eq!(
            (name.as_str(), parsed),
            ("vaultmesh.test/sovereign-scans", public)
        );
        assert!(parse_verifier_key(&vkey.replacen("+", "x+", 1)).is_err());
        // Base64 keys may contain '+': find one that does and round-trip it.
        let plus = (0u8..=255)
            .map(|i| NodeKey::from_seed([i; 32]))
            .map(|k| crate::auth::parse_public_key(&k.public_base64()).unwrap())
            .find(|p| verifier_key("n", p).matches('+').count() > 2)
            .unwrap();
        assert_eq!(
            parse_verifier_key(&verifier_key("n", &plus)).unwrap().1,
            plus
        );
    }
}

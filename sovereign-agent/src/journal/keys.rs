//! The journal's signing keys: Ed25519 in the PEM forms openssl writes. The agent signs seals
//! and checkpoints with the private key (`journal.signing_key`); `journal verify
//! --public-key` checks them with the public one.
use std::path::Path;

/// Reads an Ed25519 private key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
pub fn read_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, String> {
    use ed25519_dalek::pkcs8::DecodePrivateKey;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ed25519_dalek::SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!(
            "{}: not an Ed25519 private key in PKCS#8 PEM ({e}); create one with \
             `openssl genpkey -algorithm ed25519 -out KEY.pem`",
            path.display()
        )
    })
}

/// Reads an Ed25519 public key in SPKI PEM (`openssl pkey -in KEY.pem -pubout`).
pub fn read_verifying_key(path: &Path) -> Result<ed25519_dalek::VerifyingKey, String> {
    use ed25519_dalek::pkcs8::DecodePublicKey;
    let pem = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    ed25519_dalek::VerifyingKey::from_public_key_pem(&pem).map_err(|e| {
        format!(
            "{}: not an Ed25519 public key in PEM ({e}); derive it with \
             `openssl pkey -in KEY.pem -pubout -out KEY.pub.pem`",
            path.display()
        )
    })
}

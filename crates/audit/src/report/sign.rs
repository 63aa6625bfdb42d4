//! Signing a report body and checking a report's own signature: Ed25519 over the canonical
//! JSON of the body.

use ring::signature::{UnparsedPublicKey, ED25519};

use super::{Finding, ReportBody, ReportSignature, SignedReport, SIGNATURE_ALGORITHM};
use crate::checkpoint::{KeyId, PublicKey, SigningKey};
use crate::hex;

impl ReportBody {
    /// The bytes the signature covers: the canonical JSON of the body.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        Ok(crate::canonical_json(&serde_json::to_value(self)?))
    }

    /// Signs the body with `key`.
    pub fn sign(self, key: &SigningKey) -> Result<SignedReport, serde_json::Error> {
        let raw_body = serde_json::to_value(&self)?;
        let signature = key.sign_bytes(&crate::canonical_json(&raw_body));
        Ok(SignedReport {
            raw_body,
            body: self,
            signature: ReportSignature {
                algorithm: SIGNATURE_ALGORITHM.to_owned(),
                key_id: key.key_id().to_string(),
                value: hex::encode(&signature),
            },
        })
    }
}

impl SignedReport {
    /// Checks the report's signature against the trusted keys (those with its key id).
    pub fn check_signature(&self, trusted: &[PublicKey]) -> Result<(), Finding> {
        let bad = |why: String| Finding::new("signature", why);
        if self.signature.algorithm != SIGNATURE_ALGORITHM {
            return Err(bad(format!(
                "algorithm {:?} is not {SIGNATURE_ALGORITHM}",
                self.signature.algorithm
            )));
        }
        let key_id: KeyId = self
            .signature
            .key_id
            .parse()
            .map_err(|_| bad("key_id is not 16 lowercase hex digits".into()))?;
        let value: [u8; 64] = hex::decode(&self.signature.value)
            .ok_or_else(|| bad("value is not 128 lowercase hex digits".into()))?;
        let message = crate::canonical_json(&self.raw_body);
        let mut known = false;
        for key in trusted.iter().filter(|k| k.key_id() == key_id) {
            known = true;
            if UnparsedPublicKey::new(&ED25519, key.as_bytes())
                .verify(&message, &value)
                .is_ok()
            {
                return Ok(());
            }
        }
        Err(bad(if known {
            format!("does not verify under key {key_id}: the signed body was changed or another key signed it")
        } else {
            format!("signed by key {key_id}, which is not a trusted (published) audit key")
        }))
    }
}

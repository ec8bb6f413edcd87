//! The proofs of the peer handshake (protocol.md section 15): each side proves that it holds
//! the cluster secret with an HMAC-SHA256, keyed with the secret, over both sides' nonces,
//! both actor ids and its own role. The secret itself never crosses the network.
//!
//! Both nonces make a proof good for one handshake only (a recorded one fails against a fresh
//! nonce); the actor ids stop a proof being reused under another identity; the role stops a
//! side from reflecting the other's proof back at it. HMAC-SHA256 comes from `ring`, the crypto
//! library rustls already builds, and its `verify` compares in constant time.

use ring::hmac;

use super::frame::PEER_NONCE_SIZE;

/// A handshake nonce or proof.
pub type PeerNonce = [u8; PEER_NONCE_SIZE];

/// The bytes every proof's message starts with, so a proof can never be taken for another
/// HMAC under the same key.
const PROOF_LABEL: &[u8] = b"flo peer proof v1";

/// Which side of the handshake a proof comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The node that dialed and sent PeerHello; its proof goes in PeerProof.
    Dialer,
    /// The node that accepted and sent PeerWelcome; its proof goes in PeerAccept.
    Acceptor,
}

/// What a handshake proof is computed over, apart from the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerTranscript {
    pub dialer_nonce: PeerNonce,
    pub acceptor_nonce: PeerNonce,
    pub dialer_actor: u16,
    pub acceptor_actor: u16,
}

impl PeerTranscript {
    /// The HMAC message of `role`'s proof: the label, the role byte (`D` or `A`), the dialer's
    /// nonce, the acceptor's nonce, the dialer's actor id and the acceptor's (big-endian).
    fn message(&self, role: PeerRole) -> Vec<u8> {
        let mut message = Vec::with_capacity(PROOF_LABEL.len() + 1 + 2 * PEER_NONCE_SIZE + 4);
        message.extend_from_slice(PROOF_LABEL);
        message.push(match role {
            PeerRole::Dialer => b'D',
            PeerRole::Acceptor => b'A',
        });
        message.extend_from_slice(&self.dialer_nonce);
        message.extend_from_slice(&self.acceptor_nonce);
        message.extend_from_slice(&self.dialer_actor.to_be_bytes());
        message.extend_from_slice(&self.acceptor_actor.to_be_bytes());
        message
    }

    /// `role`'s proof that it holds `secret`.
    pub fn proof(&self, secret: &[u8], role: PeerRole) -> PeerNonce {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let tag = hmac::sign(&key, &self.message(role));
        let mut proof = [0u8; PEER_NONCE_SIZE];
        // An HMAC-SHA256 tag is 32 bytes, the proof's size.
        proof.copy_from_slice(tag.as_ref());
        proof
    }

    /// True when `proof` is `role`'s proof for `secret`, compared in constant time.
    pub fn verify(&self, secret: &[u8], role: PeerRole, proof: &PeerNonce) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        hmac::verify(&key, &self.message(role), proof).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> PeerTranscript {
        PeerTranscript {
            dialer_nonce: [1; 32],
            acceptor_nonce: [2; 32],
            dialer_actor: 2,
            acceptor_actor: 1,
        }
    }

    #[test]
    fn a_proof_verifies_only_for_its_secret_role_nonces_and_actors() {
        let t = transcript();
        let proof = t.proof(b"s3cret", PeerRole::Dialer);
        assert!(t.verify(b"s3cret", PeerRole::Dialer, &proof));
        assert!(
            !t.verify(b"guess", PeerRole::Dialer, &proof),
            "other secret"
        );
        assert!(
            !t.verify(b"s3cret", PeerRole::Acceptor, &proof),
            "reflected"
        );
        let replayed = PeerTranscript {
            acceptor_nonce: [3; 32],
            ..t
        };
        assert!(
            !replayed.verify(b"s3cret", PeerRole::Dialer, &proof),
            "replayed"
        );
        let other_actor = PeerTranscript {
            dialer_actor: 3,
            ..t
        };
        assert!(
            !other_actor.verify(b"s3cret", PeerRole::Dialer, &proof),
            "other actor"
        );
    }
}

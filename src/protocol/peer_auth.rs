//! The proofs of the peer handshake (protocol.md section 15): each side proves that it holds
//! the cluster secret with an HMAC-SHA256, keyed with the secret, over both sides' nonces,
//! both actor ids and its own role. The secret itself never crosses the network.
//!
//! Both nonces make a proof good for one handshake only (a recorded one fails against a fresh
//! nonce); the actor ids stop a proof being reused under another identity; the role stops a
//! side from reflecting the other's proof back at it. HMAC-SHA256 comes from `ring`, the crypto
//! library rustls already builds, and its `verify` compares in constant time.
//!
//! Over TLS the proof is also bound to the TLS session (channel binding): the message ends with
//! a value both ends export from their TLS session ([`TLS_EXPORTER_LABEL`], RFC 8446 section
//! 7.5) and starts with its own label, so a proof made on one TLS session fails on any other.
//! A man in the middle that terminates TLS (it holds a certificate the dialer trusts) runs two
//! sessions with two different exported values, so the proofs it relays do not check.

use ring::hmac;

use super::frame::PEER_NONCE_SIZE;

/// A handshake nonce or proof.
pub type PeerNonce = [u8; PEER_NONCE_SIZE];

/// The bytes every proof's message starts with, so a proof can never be taken for another
/// HMAC under the same key.
const PROOF_LABEL: &[u8] = b"flo peer proof v1";

/// The label of a proof bound to a TLS session: the message is the plain proof's with this
/// label instead, and the exported value at the end. The two never verify for each other.
const PROOF_LABEL_TLS: &[u8] = b"flo peer proof v1 tls";

/// The label both ends of a TLS peer connection export their channel binding with (RFC 8446
/// section 7.5, no context, [`CHANNEL_BINDING_SIZE`] bytes).
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-flo-peer-proof";

/// The size of an exported channel binding.
pub const CHANNEL_BINDING_SIZE: usize = 32;

/// A value exported from a TLS session, the same at both of its ends and unrelated between two
/// sessions.
pub type ChannelBinding = [u8; CHANNEL_BINDING_SIZE];

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
    /// The connection's TLS channel binding, when it runs over TLS.
    pub channel_binding: Option<ChannelBinding>,
}

impl PeerTranscript {
    /// The HMAC message of `role`'s proof: the label, the role byte (`D` or `A`), the dialer's
    /// nonce, the acceptor's nonce, the dialer's actor id and the acceptor's (big-endian), and
    /// over TLS the channel binding (with the TLS label).
    fn message(&self, role: PeerRole) -> Vec<u8> {
        let mut message = Vec::with_capacity(
            PROOF_LABEL_TLS.len() + 1 + 2 * PEER_NONCE_SIZE + 4 + CHANNEL_BINDING_SIZE,
        );
        message.extend_from_slice(match self.channel_binding {
            None => PROOF_LABEL,
            Some(_) => PROOF_LABEL_TLS,
        });
        message.push(match role {
            PeerRole::Dialer => b'D',
            PeerRole::Acceptor => b'A',
        });
        message.extend_from_slice(&self.dialer_nonce);
        message.extend_from_slice(&self.acceptor_nonce);
        message.extend_from_slice(&self.dialer_actor.to_be_bytes());
        message.extend_from_slice(&self.acceptor_actor.to_be_bytes());
        if let Some(binding) = &self.channel_binding {
            message.extend_from_slice(binding);
        }
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
            channel_binding: None,
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

    /// Channel binding: a proof made over one TLS session (its exported value) is refused on
    /// another, and a proof bound to TLS and one without are never taken for each other.
    #[test]
    fn a_proof_bound_to_one_tls_session_fails_on_another_and_without_tls() {
        let plain = transcript();
        let session_a = PeerTranscript {
            channel_binding: Some([7; CHANNEL_BINDING_SIZE]),
            ..plain
        };
        let session_b = PeerTranscript {
            channel_binding: Some([8; CHANNEL_BINDING_SIZE]),
            ..plain
        };
        let proof_a = session_a.proof(b"s3cret", PeerRole::Dialer);
        assert!(session_a.verify(b"s3cret", PeerRole::Dialer, &proof_a));
        assert_ne!(proof_a, session_b.proof(b"s3cret", PeerRole::Dialer));
        assert!(
            !session_b.verify(b"s3cret", PeerRole::Dialer, &proof_a),
            "a proof relayed onto another TLS session verified"
        );
        assert!(
            !plain.verify(b"s3cret", PeerRole::Dialer, &proof_a),
            "a TLS-bound proof verified without TLS"
        );
        let proof_plain = plain.proof(b"s3cret", PeerRole::Dialer);
        assert!(!session_a.verify(b"s3cret", PeerRole::Dialer, &proof_plain));
        // An all-zero binding is still a binding: it is never the plaintext proof.
        let zero = PeerTranscript {
            channel_binding: Some([0; CHANNEL_BINDING_SIZE]),
            ..plain
        };
        assert_ne!(zero.proof(b"s3cret", PeerRole::Dialer), proof_plain);
    }
}

//! The ticket token a QR code carries: compact, signed with Ed25519, and checkable offline
//! by a gate device that holds only the public key.
//!
//! Layout (84 bytes, then base64url without padding: 112 characters):
//!
//! ```text
//! 0       version (1)
//! 1..16   reservation (hold) id, 120 bits big-endian
//! 16..18  seat within the reservation, u16 big-endian (1-based)
//! 18..20  generation, u16 big-endian: 0 when issued, +1 per transfer
//! 20..84  Ed25519 signature over "allot-ticket/v1" || bytes 0..20
//! ```
//!
//! Ed25519 signatures are deterministic, so a ticket's QR is the same bytes every time it
//! is shown, and nothing but its generation (kept in Postgres) needs storing. A transfer
//! bumps the generation: the old QR still carries a good signature, but the gate's online
//! check ([`super::Tickets::admit`]) finds it is not the current generation and refuses it.
//! Offline, a device that verified a token knows it was issued by us and names this seat;
//! whether it was used or transferred since is the online check's question.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

pub const VERSION: u8 = 1;
/// Signed bytes are prefixed with this, so no other signature of the same key (should it
/// ever sign something else) can pass for a ticket.
const DOMAIN: &[u8] = b"allot-ticket/v1";
const BODY_BYTES: usize = 20;
pub const TOKEN_BYTES: usize = BODY_BYTES + 64;
/// Length of a token's text.
pub const TOKEN_CHARS: usize = 112;

/// What a token names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claims {
    pub reservation: u128,
    pub seat: u16,
    pub generation: u16,
}

/// Why a token was refused offline. Deliberately coarse: a forger learns nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// Not base64url of the right length, or an unknown version.
    Malformed,
    /// The signature does not verify with the public key.
    BadSignature,
}

impl Claims {
    fn body(&self) -> [u8; BODY_BYTES] {
        let mut b = [0u8; BODY_BYTES];
        b[0] = VERSION;
        b[1..16].copy_from_slice(&self.reservation.to_be_bytes()[1..]);
        b[16..18].copy_from_slice(&self.seat.to_be_bytes());
        b[18..20].copy_from_slice(&self.generation.to_be_bytes());
        b
    }
}

/// The token text of `claims`, signed with `key`.
pub fn sign(key: &SigningKey, claims: &Claims) -> String {
    let body = claims.body();
    let signature = key.sign(&signed_message(&body));
    let mut bytes = [0u8; TOKEN_BYTES];
    bytes[..BODY_BYTES].copy_from_slice(&body);
    bytes[BODY_BYTES..].copy_from_slice(&signature.to_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Checks a token with nothing but the public key: what a gate device does offline.
pub fn verify(public: &VerifyingKey, text: &str) -> Result<Claims, Invalid> {
    let text = text.trim();
    if text.len() != TOKEN_CHARS {
        return Err(Invalid::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| Invalid::Malformed)?;
    let bytes: [u8; TOKEN_BYTES] = bytes.try_into().map_err(|_| Invalid::Malformed)?;
    let (body, signature) = bytes.split_at(BODY_BYTES);
    if body[0] != VERSION {
        return Err(Invalid::Malformed);
    }
    let signature = Signature::from_slice(signature).map_err(|_| Invalid::Malformed)?;
    // Strict: refuses small-order keys and non-canonical signatures, so a token has one
    // valid spelling and cannot be altered into another that still verifies.
    public.verify_strict(&signed_message(body), &signature).map_err(|_| Invalid::BadSignature)?;
    let mut reservation = [0u8; 16];
    reservation[1..].copy_from_slice(&body[1..16]);
    Ok(Claims {
        reservation: u128::from_be_bytes(reservation),
        seat: u16::from_be_bytes([body[16], body[17]]),
        generation: u16::from_be_bytes([body[18], body[19]]),
    })
}

fn signed_message(body: &[u8]) -> Vec<u8> {
    [DOMAIN, body].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(hex_seed: &str) -> SigningKey {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_seed, &mut seed).unwrap();
        SigningKey::from_bytes(&seed)
    }

    /// RFC 8032, section 7.1, TEST 2 (one-byte message 0x72): the signature scheme under
    /// the tokens is standard Ed25519, byte for byte.
    #[test]
    fn ed25519_matches_rfc_8032_test_2() {
        let k = key("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb");
        assert_eq!(
            hex::encode(k.verifying_key().to_bytes()),
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
        );
        assert_eq!(
            hex::encode(k.sign(&[0x72]).to_bytes()),
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
        );
    }

    #[test]
    fn the_layout_is_version_hold_seat_generation_then_signature() {
        let k = key(&"11".repeat(32));
        let claims = Claims {
            reservation: 0x0001_0203_0405_0607_0809_0a0b_0c0d_0e0f,
            seat: 3,
            generation: 2,
        };
        let text = sign(&k, &claims);
        assert_eq!(text.len(), TOKEN_CHARS);
        let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        assert_eq!(hex::encode(&bytes[..20]), "010102030405060708090a0b0c0d0e0f00030002");
        let mut message = b"allot-ticket/v1".to_vec();
        message.extend_from_slice(&bytes[..20]);
        let signature = Signature::from_slice(&bytes[20..]).unwrap();
        k.verifying_key().verify_strict(&message, &signature).unwrap();
        assert_eq!(verify(&k.verifying_key(), &text), Ok(claims));
    }

    #[test]
    fn any_altered_byte_or_another_key_is_refused() {
        let k = key(&"22".repeat(32));
        let claims = Claims { reservation: 42, seat: 1, generation: 0 };
        let text = sign(&k, &claims);
        let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        for i in 0..TOKEN_BYTES {
            let mut altered = bytes.clone();
            altered[i] ^= 0x01;
            let altered = URL_SAFE_NO_PAD.encode(&altered);
            assert!(verify(&k.verifying_key(), &altered).is_err(), "byte {i} altered");
        }
        let other = key(&"33".repeat(32));
        assert_eq!(verify(&other.verifying_key(), &text), Err(Invalid::BadSignature));
        assert_eq!(verify(&k.verifying_key(), "short"), Err(Invalid::Malformed));
        assert_eq!(verify(&k.verifying_key(), &"!".repeat(TOKEN_CHARS)), Err(Invalid::Malformed));
    }
}

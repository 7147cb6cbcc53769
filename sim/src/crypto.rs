//! The symmetric primitives the WeCom protocol uses, on aws-lc-rs.
//!
//! Padding is done here rather than by aws-lc-rs' padded keys because the protocol needs both
//! padded CBC (PROTOCOL.md §2) and *unpadded* ECB over arbitrary block ranges (media chunks,
//! §5.3: only the last chunk of a file carries the PKCS#7 block).

use aws_lc_rs::cipher::{
    AES_128, AES_256, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::iv::FixedLength;

/// AES block length in bytes.
pub const BLOCK: usize = 16;

/// A symmetric operation failed (wrong length, bad padding or a rejected key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CipherError {
    /// The input is not a whole number of blocks.
    #[error("input length {0} is not a multiple of 16")]
    Length(usize),
    /// The PKCS#7 padding of the last block is invalid.
    #[error("bad PKCS#7 padding")]
    Padding,
    /// aws-lc refused the key or the operation.
    #[error("cipher operation rejected")]
    Rejected,
}

/// Appends PKCS#7 padding (always 1..=16 bytes).
pub fn pkcs7_pad(data: &mut Vec<u8>) {
    let n = BLOCK - data.len() % BLOCK;
    data.extend(std::iter::repeat_n(n as u8, n));
}

/// Strips PKCS#7 padding the way OpenSSL's `EVP_DecryptFinal_ex` checks it.
pub fn pkcs7_unpad(data: &[u8]) -> Result<&[u8], CipherError> {
    let n = *data.last().ok_or(CipherError::Padding)? as usize;
    if n == 0 || n > BLOCK || n > data.len() {
        return Err(CipherError::Padding);
    }
    if data[data.len() - n..].iter().any(|&b| b as usize != n) {
        return Err(CipherError::Padding);
    }
    Ok(&data[..data.len() - n])
}

/// AES-256-CBC with PKCS#7 padding; returns the ciphertext without the IV.
pub fn aes256_cbc_encrypt(key: &[u8; 32], iv: &[u8; 16], plaintext: &[u8]) -> Vec<u8> {
    let mut buf = plaintext.to_vec();
    pkcs7_pad(&mut buf);
    let key = EncryptingKey::cbc(UnboundCipherKey::new(&AES_256, key).expect("32-byte AES key"))
        .expect("AES-256-CBC is supported");
    key.less_safe_encrypt(&mut buf, EncryptionContext::Iv128(FixedLength::from(*iv))).expect("whole blocks");
    buf
}

/// AES-256-CBC decryption followed by the PKCS#7 check.
pub fn aes256_cbc_decrypt(key: &[u8; 32], iv: &[u8; 16], ciphertext: &[u8]) -> Result<Vec<u8>, CipherError> {
    if ciphertext.is_empty() || !ciphertext.len().is_multiple_of(BLOCK) {
        return Err(CipherError::Length(ciphertext.len()));
    }
    let key = DecryptingKey::cbc(UnboundCipherKey::new(&AES_256, key).map_err(|_| CipherError::Rejected)?)
        .map_err(|_| CipherError::Rejected)?;
    let mut buf = ciphertext.to_vec();
    let plain = key
        .decrypt(&mut buf, DecryptionContext::Iv128(FixedLength::from(*iv)))
        .map_err(|_| CipherError::Rejected)?;
    Ok(pkcs7_unpad(plain)?.to_vec())
}

/// Raw AES-128-ECB over whole blocks, in place (no padding: the caller decides which block is
/// last, see §5.3).
pub fn aes128_ecb_encrypt_in_place(key: &[u8; 16], data: &mut [u8]) -> Result<(), CipherError> {
    if !data.len().is_multiple_of(BLOCK) {
        return Err(CipherError::Length(data.len()));
    }
    if data.is_empty() {
        return Ok(());
    }
    let key = EncryptingKey::ecb(UnboundCipherKey::new(&AES_128, key).map_err(|_| CipherError::Rejected)?)
        .map_err(|_| CipherError::Rejected)?;
    key.less_safe_encrypt(data, EncryptionContext::None).map_err(|_| CipherError::Rejected)?;
    Ok(())
}

/// Raw AES-128-ECB decryption over whole blocks, in place.
pub fn aes128_ecb_decrypt_in_place(key: &[u8; 16], data: &mut [u8]) -> Result<(), CipherError> {
    if !data.len().is_multiple_of(BLOCK) {
        return Err(CipherError::Length(data.len()));
    }
    if data.is_empty() {
        return Ok(());
    }
    let key = DecryptingKey::ecb(UnboundCipherKey::new(&AES_128, key).map_err(|_| CipherError::Rejected)?)
        .map_err(|_| CipherError::Rejected)?;
    key.decrypt(data, DecryptionContext::None).map_err(|_| CipherError::Rejected)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cbc_round_trip_all_lengths() {
        let key = [7u8; 32];
        let iv = [9u8; 16];
        for len in 0..70 {
            let p: Vec<u8> = (0..len as u8).collect();
            let c = aes256_cbc_encrypt(&key, &iv, &p);
            assert_eq!(c.len(), (len / 16 + 1) * 16);
            assert_eq!(aes256_cbc_decrypt(&key, &iv, &c).unwrap(), p);
        }
    }

    #[test]
    fn ecb_round_trip() {
        let key = [3u8; 16];
        let mut d: Vec<u8> = (0..64u8).collect();
        aes128_ecb_encrypt_in_place(&key, &mut d).unwrap();
        assert_ne!(d[..16], (0..16u8).collect::<Vec<_>>()[..]);
        // ECB: equal plaintext blocks give equal ciphertext blocks, block by block.
        let mut one: Vec<u8> = (16..32u8).collect();
        aes128_ecb_encrypt_in_place(&key, &mut one).unwrap();
        assert_eq!(one[..], d[16..32]);
        aes128_ecb_decrypt_in_place(&key, &mut d).unwrap();
        assert_eq!(d, (0..64u8).collect::<Vec<_>>());
    }

    #[test]
    fn unpad_rejects_garbage() {
        assert!(pkcs7_unpad(&[]).is_err());
        assert!(pkcs7_unpad(&[0u8; 16]).is_err());
        assert!(pkcs7_unpad(&[17u8; 16]).is_err());
        let mut b = vec![1u8; 14];
        b.extend([2, 2]);
        assert_eq!(pkcs7_unpad(&b).unwrap().len(), 14);
        b[13] = 5;
        b[15] = 3;
        assert!(pkcs7_unpad(&b).is_err());
    }
}

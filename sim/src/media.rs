//! Media files generated on the fly: any byte range of any file can be produced without the
//! bytes before it, so a 2 GiB video costs no memory.
//!
//! Each file is a [`MediaBlob`]: a format-specific header and trailer (real JPEG/PNG/GIF/AMR/MP4/
//! PDF/ZIP magic, so tools such as `file` or ffmpeg recognise them) around a body of
//! counter-mode pseudo-random bytes keyed by the blob's `key` (an AES-128-CTR keystream:
//! seekable, and fast with AES-NI). AMR voice bodies are
//! laid out as real AMR-NB 12.2 kbit/s frames (header byte `0x3C` + 31 payload bytes), which
//! decoders accept whatever the payload bits are.
//!
//! The md5 of a blob has to be computed by streaming it once; results are cached in-process and,
//! for big blobs, on disk under the temp directory so repeated starts stay fast.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use md5::{Digest, Md5};

use aws_lc_rs::cipher::{AES_128, EncryptingKey, EncryptionContext, UnboundCipherKey};
use aws_lc_rs::iv::FixedLength;

use crate::crypto::{BLOCK, aes128_ecb_encrypt_in_place};

/// Bytes per GetMediaData chunk: the SDK always asks for ranges of this size (PROTOCOL.md §5.3).
pub const CHUNK: u64 = 512 * 1024;

/// Bump when the byte generator changes, so cached md5s are not reused.
const GENERATOR_VERSION: u32 = 2;

/// Blobs at least this large get their md5 cached on disk.
const DISK_CACHE_MIN: u64 = 16 * 1024 * 1024;

/// The container format of a blob, which decides its header, trailer and body layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaFormat {
    /// JFIF header, `FF D9` trailer.
    Jpeg,
    /// PNG signature, correct IHDR, IDAT, IEND.
    Png,
    /// `GIF89a` logical screen, `;` trailer.
    Gif,
    /// `#!AMR\n` then AMR-NB mode-7 frames.
    Amr,
    /// `ftyp` + `mdat` boxes.
    Mp4,
    /// `%PDF-1.4` … `%%EOF`.
    Pdf,
    /// Local file header `PK\3\4` … end-of-central-directory record (docx/xlsx/zip).
    Zip,
    /// Printable ASCII lines (txt/csv/log).
    Text,
    /// Random bytes only.
    Binary,
}

impl MediaFormat {
    /// The smallest size this format's header and trailer fit in.
    pub fn min_size(self) -> u64 {
        match self {
            MediaFormat::Png => 64,
            MediaFormat::Zip => 64,
            MediaFormat::Amr => 6 + 32,
            _ => 48,
        }
    }
}

/// One generated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MediaBlob {
    /// Keys the pseudo-random body.
    pub key: u64,
    /// Total size in bytes.
    pub size: u64,
    /// Container format.
    pub format: MediaFormat,
    /// Width in pixels (PNG/GIF headers).
    pub width: u16,
    /// Height in pixels (PNG/GIF headers).
    pub height: u16,
}

/// A range request that cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Start beyond the ciphertext, end before start, or not block-aligned.
    #[error("bad range {start}-{end} for ciphertext of {total} bytes")]
    Bad {
        /// Requested first byte.
        start: u64,
        /// Requested last byte (inclusive).
        end: u64,
        /// Ciphertext length.
        total: u64,
    },
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// CRC-32 (IEEE), for the PNG IHDR chunk.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

impl MediaBlob {
    /// A blob of `size` bytes (raised to the format's minimum).
    pub fn new(key: u64, format: MediaFormat, size: u64) -> Self {
        MediaBlob { key, size: size.max(format.min_size()), format, width: 240, height: 240 }
    }

    /// Sets the pixel size written into PNG/GIF headers.
    pub fn with_dimensions(mut self, width: u16, height: u16) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// The AMR size for `frames` 20 ms frames.
    pub fn amr_size(frames: u64) -> u64 {
        6 + 32 * frames
    }

    fn header(&self) -> Vec<u8> {
        match self.format {
            MediaFormat::Jpeg => {
                let mut h = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
                h.extend_from_slice(b"JFIF\0\x01\x01\x00\x00\x48\x00\x48\x00\x00");
                h.extend_from_slice(&[0xFF, 0xDB, 0x00, 0x43, 0x00]);
                h
            }
            MediaFormat::Png => {
                let mut h = b"\x89PNG\r\n\x1a\n".to_vec();
                let mut ihdr = b"IHDR".to_vec();
                ihdr.extend_from_slice(&u32::from(self.width).to_be_bytes());
                ihdr.extend_from_slice(&u32::from(self.height).to_be_bytes());
                ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
                h.extend_from_slice(&13u32.to_be_bytes());
                h.extend_from_slice(&ihdr);
                h.extend_from_slice(&crc32(&ihdr).to_be_bytes());
                // IDAT chunk: length covers everything up to its CRC before IEND.
                let idat_len = self.size - h.len() as u64 - 8 - 4 - 12;
                h.extend_from_slice(&(idat_len.min(u64::from(u32::MAX)) as u32).to_be_bytes());
                h.extend_from_slice(b"IDAT");
                h
            }
            MediaFormat::Gif => {
                let mut h = b"GIF89a".to_vec();
                h.extend_from_slice(&self.width.to_le_bytes());
                h.extend_from_slice(&self.height.to_le_bytes());
                h.extend_from_slice(&[0xF7, 0x00, 0x00]);
                h
            }
            MediaFormat::Amr => b"#!AMR\n".to_vec(),
            MediaFormat::Mp4 => {
                let mut h = vec![0, 0, 0, 0x20];
                h.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2avc1mp41");
                let rest = self.size - 32;
                if rest <= u64::from(u32::MAX) {
                    h.extend_from_slice(&(rest as u32).to_be_bytes());
                    h.extend_from_slice(b"mdat");
                } else {
                    h.extend_from_slice(&1u32.to_be_bytes());
                    h.extend_from_slice(b"mdat");
                    h.extend_from_slice(&rest.to_be_bytes());
                }
                h
            }
            MediaFormat::Pdf => b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec(),
            MediaFormat::Zip => b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec(),
            MediaFormat::Text | MediaFormat::Binary => Vec::new(),
        }
    }

    fn trailer(&self) -> Vec<u8> {
        match self.format {
            MediaFormat::Jpeg => vec![0xFF, 0xD9],
            MediaFormat::Png => {
                // IDAT CRC (not checked by anything here) + the IEND chunk.
                let mut t = vec![0x35, 0xAF, 0x06, 0x1E];
                t.extend_from_slice(b"\0\0\0\0IEND\xAE\x42\x60\x82");
                t
            }
            MediaFormat::Gif => vec![0x3B],
            MediaFormat::Pdf => b"\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n".to_vec(),
            MediaFormat::Zip => {
                let mut t = b"PK\x05\x06".to_vec();
                t.extend_from_slice(&[0u8; 18]);
                t
            }
            _ => Vec::new(),
        }
    }

    /// Fills `out` with the bytes at `offset..offset + out.len()` (clipped at the end of the
    /// blob; bytes past the end are left untouched). Returns how many bytes were written.
    pub fn read_at(&self, offset: u64, out: &mut [u8]) -> usize {
        if offset >= self.size {
            return 0;
        }
        let n = ((self.size - offset) as usize).min(out.len());
        let out = &mut out[..n];
        self.fill_body(offset, out);
        let header = self.header();
        let trailer = self.trailer();
        overlay(&header, 0, offset, out);
        overlay(&trailer, self.size - trailer.len() as u64, offset, out);
        n
    }

    /// The pseudo-random body, with per-format shaping (AMR frames, printable text).
    ///
    /// The bytes are an AES-128-CTR keystream (key and nonce derived from `self.key`, counter =
    /// 16-byte block index): seekable, and fast because aws-lc uses AES-NI whatever our own
    /// optimisation level.
    fn fill_body(&self, offset: u64, out: &mut [u8]) {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&splitmix64(self.key ^ 0x005E_ED0F_F11E).to_le_bytes());
        key[8..].copy_from_slice(&splitmix64(self.key ^ 0xB10B_5EED).to_le_bytes());
        let nonce = splitmix64(self.key ^ 0x0C0F_FEE0).to_be_bytes();
        let ctr = EncryptingKey::ctr(UnboundCipherKey::new(&AES_128, &key).expect("16-byte key"))
            .expect("AES-128-CTR is supported");
        let keystream = |block: u64, buf: &mut [u8]| {
            buf.fill(0);
            let mut iv = [0u8; 16];
            iv[..8].copy_from_slice(&nonce);
            iv[8..].copy_from_slice(&block.to_be_bytes());
            ctr.less_safe_encrypt(buf, EncryptionContext::Iv128(FixedLength::from(iv))).expect("CTR");
        };
        let skip = (offset % 16) as usize;
        let mut done = 0;
        if skip != 0 {
            let mut first = [0u8; 16];
            keystream(offset / 16, &mut first);
            done = (16 - skip).min(out.len());
            out[..done].copy_from_slice(&first[skip..skip + done]);
        }
        if done < out.len() {
            keystream((offset + done as u64) / 16, &mut out[done..]);
        }
        match self.format {
            MediaFormat::Amr => {
                // Frame k starts at 6 + 32k with the mode-7 (12.2 kbit/s) header 0x3C.
                let first = if offset <= 6 { 6 } else { 6 + (offset - 6).div_ceil(32) * 32 };
                let mut p = first;
                while p < offset + out.len() as u64 {
                    out[(p - offset) as usize] = 0x3C;
                    p += 32;
                }
            }
            MediaFormat::Text => {
                const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJ0123456789 ,.;-\n";
                for b in out.iter_mut() {
                    *b = ALPHA[*b as usize % ALPHA.len()];
                }
            }
            _ => {}
        }
    }

    /// Length of the AES-128-ECB ciphertext the server serves: the plaintext plus PKCS#7
    /// padding (1..=16 bytes), i.e. the `total` of `CONTENT-RANGE`.
    pub fn cipher_len(&self) -> u64 {
        (self.size / BLOCK as u64 + 1) * BLOCK as u64
    }

    /// The ciphertext bytes `start..=end` (inclusive, `end` clipped to the last byte): the
    /// plaintext range, plus the padding block when the range reaches the end, encrypted with
    /// AES-128-ECB. `corrupt` flips one plaintext byte first (the md5-mismatch fault). Returns
    /// the bytes and the clipped `end`.
    pub fn cipher_range(
        &self,
        aeskey: &[u8; 16],
        start: u64,
        end: u64,
        corrupt: bool,
    ) -> Result<(Vec<u8>, u64), RangeError> {
        let total = self.cipher_len();
        let bad = || RangeError::Bad { start, end, total };
        if start >= total || end < start || !start.is_multiple_of(BLOCK as u64) {
            return Err(bad());
        }
        let end = end.min(total - 1);
        let len = end - start + 1;
        if !len.is_multiple_of(BLOCK as u64) {
            return Err(bad());
        }
        let mut buf = vec![0u8; len as usize];
        let plain = self.read_at(start, &mut buf);
        if start + len == total {
            let pad = (total - self.size) as u8;
            buf[plain..].fill(pad);
        }
        if corrupt && plain > 0 {
            buf[0] ^= 0x5A;
        }
        aes128_ecb_encrypt_in_place(aeskey, &mut buf).map_err(|_| bad())?;
        Ok((buf, end))
    }

    /// The md5 of the whole blob, lowercase hex (cached).
    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5())
    }

    /// The md5 of the whole blob (cached in-process, and on disk for big blobs).
    pub fn md5(&self) -> [u8; 16] {
        static CACHE: OnceLock<Mutex<HashMap<MediaBlob, [u8; 16]>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(d) = cache.lock().expect("md5 cache").get(self) {
            return *d;
        }
        let disk = (self.size >= DISK_CACHE_MIN).then(|| self.disk_cache_path());
        if let Some(d) = disk.as_ref().and_then(read_cached) {
            cache.lock().expect("md5 cache").insert(*self, d);
            return d;
        }
        let d = self.compute_md5();
        if let Some(p) = disk {
            write_cached(&p, &d);
        }
        cache.lock().expect("md5 cache").insert(*self, d);
        d
    }

    fn compute_md5(&self) -> [u8; 16] {
        let mut h = Md5::new();
        let mut buf = vec![0u8; self.size.min(1 << 20) as usize];
        let mut off = 0;
        while off < self.size {
            let n = self.read_at(off, &mut buf);
            h.update(&buf[..n]);
            off += n as u64;
        }
        h.finalize().into()
    }

    fn disk_cache_path(&self) -> PathBuf {
        std::env::temp_dir().join("wework-archive-sim-md5").join(format!(
            "v{GENERATOR_VERSION}-{:?}-{:016x}-{}-{}x{}",
            self.format, self.key, self.size, self.width, self.height
        ))
    }
}

/// Copies the part of `src` (which lives at file offset `src_at`) that overlaps the window
/// `out` (at file offset `out_at`).
fn overlay(src: &[u8], src_at: u64, out_at: u64, out: &mut [u8]) {
    let lo = src_at.max(out_at);
    let hi = (src_at + src.len() as u64).min(out_at + out.len() as u64);
    if lo < hi {
        let (s, o, n) = ((lo - src_at) as usize, (lo - out_at) as usize, (hi - lo) as usize);
        out[o..o + n].copy_from_slice(&src[s..s + n]);
    }
}

fn read_cached(path: &PathBuf) -> Option<[u8; 16]> {
    let text = std::fs::read_to_string(path).ok()?;
    hex::decode(text.trim()).ok()?.try_into().ok()
}

/// Best effort: a failed write only costs the next start a recomputation.
fn write_cached(path: &PathBuf, digest: &[u8; 16]) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, hex::encode(digest)).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{aes128_ecb_decrypt_in_place, pkcs7_unpad};

    fn all(b: &MediaBlob) -> Vec<u8> {
        let mut v = vec![0u8; b.size as usize];
        assert_eq!(b.read_at(0, &mut v), v.len());
        v
    }

    #[test]
    fn ranges_agree_with_the_whole_file() {
        for f in [
            MediaFormat::Jpeg,
            MediaFormat::Png,
            MediaFormat::Gif,
            MediaFormat::Amr,
            MediaFormat::Mp4,
            MediaFormat::Pdf,
            MediaFormat::Zip,
            MediaFormat::Text,
            MediaFormat::Binary,
        ] {
            let b = MediaBlob::new(42, f, 10_003);
            let whole = all(&b);
            for (off, len) in [(0u64, 7usize), (3, 100), (9_990, 50), (5_000, 13), (10_002, 1)] {
                let mut part = vec![0u8; len];
                let n = b.read_at(off, &mut part);
                assert_eq!(&part[..n], &whole[off as usize..off as usize + n], "{f:?} {off}");
            }
            let md5: [u8; 16] = Md5::digest(&whole).into();
            assert_eq!(b.md5(), md5, "{f:?}");
        }
    }

    #[test]
    fn magic_bytes() {
        assert!(all(&MediaBlob::new(1, MediaFormat::Jpeg, 500)).starts_with(&[0xFF, 0xD8, 0xFF]));
        let png = all(&MediaBlob::new(1, MediaFormat::Png, 500));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"));
        assert!(png.ends_with(b"IEND\xAE\x42\x60\x82"));
        assert!(all(&MediaBlob::new(1, MediaFormat::Gif, 500)).starts_with(b"GIF89a"));
        let amr = all(&MediaBlob::new(1, MediaFormat::Amr, MediaBlob::amr_size(50)));
        assert!(amr.starts_with(b"#!AMR\n"));
        assert!(amr[6..].chunks(32).all(|f| f[0] == 0x3C && f.len() == 32));
        let mp4 = all(&MediaBlob::new(1, MediaFormat::Mp4, 1000));
        assert_eq!(&mp4[4..8], b"ftyp");
        assert_eq!(&mp4[36..40], b"mdat");
    }

    #[test]
    fn png_ihdr_crc_is_correct() {
        // CRC of a known IHDR (1x1 RGBA): from any PNG encoder.
        let ihdr = b"IHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
        assert_eq!(crc32(ihdr), 0x1F15_C489);
    }

    #[test]
    fn cipher_chunks_reassemble() {
        let b = MediaBlob::new(7, MediaFormat::Binary, 2 * CHUNK + 1000);
        let key = [9u8; 16];
        let total = b.cipher_len();
        let mut got = Vec::new();
        let mut start = 0;
        loop {
            let (mut c, end) = b.cipher_range(&key, start, start + CHUNK - 1, false).unwrap();
            aes128_ecb_decrypt_in_place(&key, &mut c).unwrap();
            if end + 1 >= total {
                got.extend_from_slice(pkcs7_unpad(&c).unwrap());
                break;
            }
            got.extend_from_slice(&c);
            start = end + 1;
        }
        assert_eq!(got, all(&b));
        assert!(b.cipher_range(&key, 3, 100, false).is_err());
        assert!(b.cipher_range(&key, total, total + 10, false).is_err());
    }
}

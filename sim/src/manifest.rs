//! The manifest: what a client needs to talk to a running simulator (proxy URL, corp
//! credentials, private keys), serialized as exactly
//! `{proxy, corps: [{corpid, secret, corpname, keys: [{version, private_key_pem}], messages}]}`.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Connection details and credentials of a running simulator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Proxy to pass to the SDK, `http://127.0.0.1:PORT`.
    pub proxy: String,
    /// One entry per corp.
    pub corps: Vec<ManifestCorp>,
}

/// One corp's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestCorp {
    /// `ww` + 16 hex characters.
    pub corpid: String,
    /// The chat-archive secret accepted by gettoken.
    pub secret: String,
    /// Display name.
    pub corpname: String,
    /// Private keys by `publickey_ver` (never the withheld one), PEM in PKCS#1 or PKCS#8 form.
    pub keys: Vec<ManifestKey>,
    /// Records currently in the corp's archive.
    pub messages: usize,
    /// With record faults on: the exact msgids of the records that cannot be decrypted with
    /// `keys` (short_msg, bad_base64, unknown_ver, wrong_key, group_key_info), so an archive
    /// can be checked against them.
    #[serde(default)]
    pub undecryptable_msgids: Vec<String>,
}

/// One private key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestKey {
    /// The `publickey_ver` it decrypts.
    pub version: u32,
    /// PEM text.
    pub private_key_pem: String,
}

/// A key kept out of the manifest (fault `unknown_ver`), for tests that add it later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithheldKey {
    /// The corp it belongs to.
    pub corpid: String,
    /// The `publickey_ver` its records carry.
    pub version: u32,
    /// PEM text.
    pub private_key_pem: String,
}

impl Manifest {
    /// Writes the manifest as pretty JSON atomically: a temporary file in the same directory,
    /// fsynced, then renamed over `path`, so readers never see a partial file.
    pub fn write_atomic(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().ok_or_else(|| std::io::Error::other("manifest path has no file name"))?;
        let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    }

    /// Reads a manifest file.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(path)?).map_err(std::io::Error::other)
    }

    /// The corp with this id.
    pub fn corp(&self, corpid: &str) -> Option<&ManifestCorp> {
        self.corps.iter().find(|c| c.corpid == corpid)
    }
}

impl ManifestCorp {
    /// The PEM of key `version`, if listed.
    pub fn key(&self, version: u32) -> Option<&str> {
        self.keys.iter().find(|k| k.version == version).map(|k| k.private_key_pem.as_str())
    }
}

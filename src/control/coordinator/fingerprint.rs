//! What a worker was started with, as a digest: the poll reloads a corp
//! whose `corplist` row or keys no longer match it.

use crate::store::corps::CorpRow;

/// A digest of what a worker loads: the row's settings and the keys (opened,
/// so sealing secrets in place does not count as a change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Fingerprint {
    pub(super) settings: u64,
    pub(super) keys: u64,
}

fn digest(parts: &[&[u8]]) -> u64 {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    u64::from_be_bytes(h.finalize()[..8].try_into().expect("16-byte digest"))
}

pub(super) fn fingerprint(
    row: &CorpRow,
    keys: &[(u32, String)],
    secrets: &crate::secrets::SecretBox,
) -> Fingerprint {
    use crate::secrets::Binding;
    let open =
        |s: &str, place: &Binding| secrets.open(s, place).unwrap_or_else(|_| format!("!unopenable:{s}"));
    let column = |name: &str, value: &str| open(value, &Binding::corplist(name, &row.corpid));
    let settings = digest(&[
        column("secret", &row.secret).as_bytes(),
        row.corpname.as_bytes(),
        &row.limits.to_le_bytes(),
        &row.timeout.to_le_bytes(),
        &[row.status as u8],
        column("proxy", &row.proxy).as_bytes(),
        column("passwd", &row.passwd).as_bytes(),
    ]);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (v, text) in keys {
        parts.push(v.to_le_bytes().to_vec());
        parts.push(open(text, &Binding::corp_key(&row.corpid, *v)).into_bytes());
    }
    parts.push(row.prikey.as_deref().map(|k| column("prikey", k)).unwrap_or_default().into_bytes());
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Fingerprint { settings, keys: digest(&refs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(secret: &str, status: i8) -> CorpRow {
        CorpRow {
            id: 1,
            corpid: "ww1".into(),
            secret: secret.into(),
            corpname: "n".into(),
            prikey: None,
            limits: 1000,
            timeout: 10,
            status,
            update: 0,
            proxy: String::new(),
            passwd: String::new(),
        }
    }

    #[test]
    fn fingerprints_see_changes_but_not_sealing() {
        let plain = crate::secrets::SecretBox::plaintext();
        let a = fingerprint(&row("s", 1), &[(1, "k1".into())], &plain);
        assert_eq!(a, fingerprint(&row("s", 1), &[(1, "k1".into())], &plain));
        let b = fingerprint(&row("t", 1), &[(1, "k1".into())], &plain);
        assert!(a.settings != b.settings && a.keys == b.keys);
        let c = fingerprint(&row("s", 1), &[(1, "k1".into()), (3, "k3".into())], &plain);
        assert!(a.settings == c.settings && a.keys != c.keys);
        let sealer = crate::secrets::SecretBox::from_master_key(&"ab".repeat(32)).unwrap();
        let corp = row("s", 1).corpid;
        let secret = sealer.seal("s", &crate::secrets::Binding::corplist("secret", &corp));
        let key = sealer.seal("k1", &crate::secrets::Binding::corp_key(&corp, 1));
        let sealed = fingerprint(&row(&secret, 1), &[(1, key)], &sealer);
        assert_eq!(a, sealed);
    }
}

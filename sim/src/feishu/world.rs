//! The seeded tenant: the app's credentials and the people in it.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::seed::rng_for;

/// Stream tags of the fake platform's seeded generators (distinct from the WeCom ones).
pub(crate) mod tag {
    pub const APP: u64 = 0xF001;
    pub const USERS: u64 = 0xF002;
    pub const DRIVE: u64 = 0xF003;
    pub const WIKI: u64 = 0xF004;
    pub const IDS: u64 = 0xF005;
    pub const BODY: u64 = 0xF006;
}

/// A person of the tenant.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub open_id: String,
    pub union_id: String,
    pub user_id: String,
    pub name: String,
    pub en_name: String,
    pub email: String,
}

/// The app and tenant, fixed for the life of the fake.
#[derive(Debug, Clone)]
pub(crate) struct World {
    pub app_id: String,
    pub app_secret: String,
    pub encrypt_key: String,
    pub verification_token: String,
    pub tenant_key: String,
    /// Signs pre-signed media URLs.
    pub url_secret: String,
    pub users: Vec<User>,
}

const NAMES: [(&str, &str); 8] = [
    ("张伟", "Zhang Wei"),
    ("李娜", "Li Na"),
    ("王芳", "Wang Fang"),
    ("刘洋", "Liu Yang"),
    ("陈静", "Chen Jing"),
    ("杨磊", "Yang Lei"),
    ("赵敏", "Zhao Min"),
    ("黄勇", "Huang Yong"),
];

/// `n` random lowercase hex digits.
pub(crate) fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// `n` random ASCII letters and digits.
pub(crate) fn alnum(rng: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| char::from(A[rng.random_range(0..A.len())])).collect()
}

/// `n` random decimal digits, the first non-zero (int64 ids as strings).
pub(crate) fn digits(rng: &mut ChaCha8Rng, n: usize) -> String {
    let mut s = rng.random_range(1..10).to_string();
    s.extend((1..n).map(|_| char::from_digit(rng.random_range(0..10), 10).unwrap_or('0')));
    s
}

/// `n` random lowercase letters and digits (minute tokens, doc tokens).
pub(crate) fn lower(rng: &mut ChaCha8Rng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..n).map(|_| char::from(A[rng.random_range(0..A.len())])).collect()
}

impl World {
    pub fn generate(seed: u64) -> World {
        let mut r = rng_for(&[seed, tag::APP]);
        let app_id = format!("cli_{}", hex(&mut r, 16));
        let app_secret = alnum(&mut r, 32);
        let encrypt_key = alnum(&mut r, 32);
        let verification_token = alnum(&mut r, 32);
        let tenant_key = hex(&mut r, 16);
        let url_secret = alnum(&mut r, 32);
        let mut r = rng_for(&[seed, tag::USERS]);
        let start = r.random_range(0..NAMES.len());
        let users = (0..4)
            .map(|i| {
                let (name, en) = NAMES[(start + i) % NAMES.len()];
                let user_id = hex(&mut r, 8);
                User {
                    open_id: format!("ou_{}", hex(&mut r, 32)),
                    union_id: format!("on_{}", hex(&mut r, 32)),
                    email: format!("{}@example.com", en.to_ascii_lowercase().replace(' ', ".")),
                    user_id,
                    name: name.to_string(),
                    en_name: en.to_string(),
                }
            })
            .collect();
        World { app_id, app_secret, encrypt_key, verification_token, tenant_key, url_secret, users }
    }

    pub fn user(&self, open_id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.open_id == open_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_under_the_seed() {
        let (a, b, c) = (World::generate(3), World::generate(3), World::generate(4));
        assert_eq!(a.app_id, b.app_id);
        assert_eq!(a.users[1].open_id, b.users[1].open_id);
        assert_ne!(a.app_secret, c.app_secret);
        assert!(a.app_id.starts_with("cli_") && a.app_id.len() == 20);
        assert!(a.users.iter().all(|u| u.open_id.starts_with("ou_") && u.open_id.len() == 35));
    }
}

//! The people and rooms of one simulated corp, and who talks to whom.
//!
//! Id conventions follow FORMAT.md / EXAMPLES.json `_notes.common.ids`: internal members have a
//! userid (sometimes all digits), external contacts `wm…` (WeChat) or `wo…` (other corps' WeCom
//! users), robots `wb…`, group chats `wr…`.

use rand::{Rng, RngCore};

use super::vocab::{self, GIVEN, SURNAMES};

#[derive(Debug, Clone)]
pub struct Room {
    pub roomid: String,
    pub members: Vec<String>,
    /// Members include an external contact or a robot: msgids end in `_external`.
    pub external: bool,
    /// 上下游 (upstream/downstream) room: msgids end in `_updown_stream`.
    pub updown: bool,
}

#[derive(Debug, Clone)]
pub struct Directory {
    pub corpname: String,
    pub users: Vec<String>,
    pub externals: Vec<String>,
    pub robots: Vec<String>,
    pub rooms: Vec<Room>,
}

/// Who is talking in one message.
#[derive(Debug, Clone)]
pub struct Conv {
    pub from: String,
    pub tolist: Vec<String>,
    pub roomid: String,
    pub suffix: &'static str,
}

fn is_external(id: &str) -> bool {
    id.starts_with("wm") || id.starts_with("wo") || id.starts_with("wb")
}

impl Directory {
    pub fn generate(rng: &mut impl RngCore) -> Self {
        let corpname = vocab::pick(rng, vocab::COMPANIES).to_string();
        let mut users = Vec::new();
        let n_users = rng.random_range(12..40);
        while users.len() < n_users {
            let s = *vocab::pick(rng, SURNAMES);
            let g = *vocab::pick(rng, GIVEN);
            let id = match rng.random_range(0..10) {
                0 => format!("{}{}", cap(s), cap(g)),
                1 => format!("1{}", rng.random_range(3_000_000_000u64..9_999_999_999)),
                2 => format!("{s}.{g}"),
                _ => format!("{s}{g}"),
            };
            if !users.contains(&id) {
                users.push(id);
            }
        }
        let externals: Vec<String> = (0..rng.random_range(20..60))
            .map(|i| vocab::opaque_id(rng, if i % 4 == 3 { "wo" } else { "wm" }))
            .collect();
        let robots: Vec<String> = (0..rng.random_range(1..4)).map(|_| vocab::opaque_id(rng, "wb")).collect();
        let mut rooms = Vec::new();
        for r in 0..rng.random_range(5..15) {
            let mut members = Vec::new();
            for _ in 0..rng.random_range(3..20) {
                let u = vocab::pick(rng, &users).clone();
                if !members.contains(&u) {
                    members.push(u);
                }
            }
            let updown = r % 5 == 4;
            let with_ext = !updown && rng.random_range(0..3) == 0;
            if with_ext {
                for _ in 0..rng.random_range(1..4) {
                    members.push(vocab::pick(rng, &externals).clone());
                }
                if rng.random_range(0..2) == 0 {
                    members.push(vocab::pick(rng, &robots).clone());
                }
            }
            if members.len() < 2 {
                members.push(vocab::pick(rng, &users).clone());
            }
            let external = members.iter().any(|m| is_external(m));
            rooms.push(Room { roomid: vocab::opaque_id(rng, "wr"), members, external, updown });
        }
        Directory { corpname, users, externals, robots, rooms }
    }

    fn user(&self, rng: &mut impl RngCore) -> String {
        vocab::pick(rng, &self.users).clone()
    }

    fn external(&self, rng: &mut impl RngCore) -> String {
        vocab::pick(rng, &self.externals).clone()
    }

    /// A group chat message.
    pub fn room_conv(&self, rng: &mut impl RngCore, robot_sender: bool) -> Conv {
        let rooms: Vec<&Room> = if robot_sender {
            let with_robot: Vec<&Room> =
                self.rooms.iter().filter(|r| r.members.iter().any(|m| m.starts_with("wb"))).collect();
            if with_robot.is_empty() { self.rooms.iter().collect() } else { with_robot }
        } else {
            self.rooms.iter().collect()
        };
        let room = *vocab::pick(rng, &rooms);
        let from = if robot_sender {
            room.members
                .iter()
                .find(|m| m.starts_with("wb"))
                .cloned()
                .unwrap_or_else(|| vocab::pick(rng, &self.robots).clone())
        } else {
            vocab::pick(rng, &room.members).clone()
        };
        let tolist = room.members.iter().filter(|m| **m != from).cloned().collect();
        let suffix = if room.updown {
            "_updown_stream"
        } else if room.external || is_external(&from) {
            "_external"
        } else {
            ""
        };
        Conv { from, tolist, roomid: room.roomid.clone(), suffix }
    }

    /// A 1:1 chat between a member and an external contact (either direction, or from the
    /// external side when `from_external`).
    pub fn external_conv(&self, rng: &mut impl RngCore, from_external: Option<bool>) -> Conv {
        let (u, e) = (self.user(rng), self.external(rng));
        let ext_first = from_external.unwrap_or_else(|| rng.random_range(0..2) == 0);
        let (from, to) = if ext_first { (e, u) } else { (u, e) };
        Conv { from, tolist: vec![to], roomid: String::new(), suffix: "_external" }
    }

    /// A 1:1 chat between two members.
    pub fn internal_conv(&self, rng: &mut impl RngCore) -> Conv {
        let from = self.user(rng);
        let mut to = self.user(rng);
        while to == from && self.users.len() > 1 {
            to = self.user(rng);
        }
        Conv { from, tolist: vec![to], roomid: String::new(), suffix: "" }
    }

    /// Any ordinary conversation: mostly groups, then external and internal 1:1 chats.
    pub fn any_conv(&self, rng: &mut impl RngCore) -> Conv {
        match rng.random_range(0..100) {
            0..55 => self.room_conv(rng, false),
            55..85 => self.external_conv(rng, None),
            _ => self.internal_conv(rng),
        }
    }

    pub fn any_user(&self, rng: &mut impl RngCore) -> String {
        self.user(rng)
    }
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

//! Counters tests use to check what a client really did: requests per endpoint, media requests
//! per `(fileid, range start)` (to prove finished chunks are not fetched again), faults injected.

use std::collections::{BTreeMap, HashMap};

use crate::fault::FaultKind;

/// An API endpoint of the simulated service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    /// `GET /cgi-bin/gettoken`
    GetToken,
    /// `POST /cgi-bin/message/getchatdata`
    GetChatData,
    /// `POST /cgi-bin/message/getchatmediadata`
    GetChatMediaData,
    /// Anything else (answered 404).
    Other,
}

/// How a connection reached the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tunnel {
    /// HTTP `CONNECT` proxy, then TLS (what the SDK does with `http://` proxies).
    Connect,
    /// SOCKS5, then TLS (`socks5://` / `socks5h://` proxies).
    Socks5,
    /// TLS straight away (DNS or hosts-file redirection).
    DirectTls,
    /// Plain HTTP straight to the API (debugging with curl).
    PlainHttp,
}

/// A snapshot of the simulator's counters.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    /// TCP connections accepted.
    pub connections: u64,
    /// Connections per way in.
    pub tunnels: BTreeMap<Tunnel, u64>,
    /// Complete requests per endpoint (including those answered with a fault).
    pub requests: BTreeMap<Endpoint, u64>,
    /// Faults injected, per kind. Record faults count each time a bad record is served.
    pub faults: BTreeMap<FaultKind, u64>,
    /// getchatmediadata requests per `(fileid, range start)`, faulted ones included.
    pub media_requests: HashMap<(String, u64), u64>,
    /// Non-zero `errcode`s answered (API errors and injected ones), per code.
    pub errcodes: BTreeMap<i64, u64>,
    /// Access tokens issued (a still-valid token is handed out again, not re-issued).
    pub tokens_issued: u64,
    /// Chat records returned by getchatdata.
    pub records_served: u64,
    /// Media chunks returned intact and completely.
    pub media_chunks_served: u64,
    /// getchatmediadata requests being answered right now (latency included).
    pub media_in_flight: u64,
    /// The most getchatmediadata requests ever answered at once (all corps together):
    /// what a client's parallel ranges really asked of the server.
    pub media_max_in_flight: u64,
}

impl SimStats {
    /// Requests to one endpoint.
    pub fn requests_to(&self, e: Endpoint) -> u64 {
        self.requests.get(&e).copied().unwrap_or(0)
    }

    /// Faults of one kind injected.
    pub fn faults_of(&self, k: FaultKind) -> u64 {
        self.faults.get(&k).copied().unwrap_or(0)
    }

    /// Requests for one file, per range start, sorted by start.
    pub fn media_requests_for(&self, fileid: &str) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .media_requests
            .iter()
            .filter(|((f, _), _)| f == fileid)
            .map(|((_, start), n)| (*start, *n))
            .collect();
        v.sort_unstable();
        v
    }

    /// `(fileid, start)` pairs requested more than once, with their counts.
    pub fn repeated_media_ranges(&self) -> Vec<((String, u64), u64)> {
        let mut v: Vec<_> =
            self.media_requests.iter().filter(|(_, n)| **n > 1).map(|(k, n)| (k.clone(), *n)).collect();
        v.sort();
        v
    }
}

//! The long connection's frame: protobuf `pbbp2.Frame`, as lark-oapi's
//! `ws/pb/pbbp2.proto` defines it (proto2), derived with prost.
//!
//! The fake platform (`sim/src/feishu/frame.rs`) encodes the same message by
//! hand on purpose: two independent codecs meeting on the wire check each other.

/// `method` of a control frame (ping/pong).
pub const CONTROL: i32 = 0;
/// `method` of a data frame (event/card).
pub const DATA: i32 = 1;

/// `message Header { required string key = 1; required string value = 2; }`
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Header {
    /// Name.
    #[prost(string, required, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, required, tag = "2")]
    pub value: String,
}

/// `message Frame`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Frame {
    /// `SeqID`.
    #[prost(uint64, required, tag = "1")]
    pub seq_id: u64,
    /// `LogID`.
    #[prost(uint64, required, tag = "2")]
    pub log_id: u64,
    /// The `service_id` of the connection URL.
    #[prost(int32, required, tag = "3")]
    pub service: i32,
    /// [`CONTROL`] or [`DATA`].
    #[prost(int32, required, tag = "4")]
    pub method: i32,
    /// `type`, `message_id`, `sum`, `seq`, `trace_id`, …
    #[prost(message, repeated, tag = "5")]
    pub headers: Vec<Header>,
    /// Unused by Feishu today.
    #[prost(string, optional, tag = "6")]
    pub payload_encoding: Option<String>,
    /// Unused by Feishu today.
    #[prost(string, optional, tag = "7")]
    pub payload_type: Option<String>,
    /// The event JSON (data frames), the client config (pong).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub payload: Option<Vec<u8>>,
    /// `LogIDNew`.
    #[prost(string, optional, tag = "9")]
    pub log_id_new: Option<String>,
}

impl Frame {
    /// The first header named `key`.
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.key == key).map(|h| h.value.as_str())
    }

    /// A control frame carrying only a `type` header (the ping).
    pub fn control(service: i32, kind: &str) -> Frame {
        Frame {
            service,
            method: CONTROL,
            headers: vec![Header { key: "type".into(), value: kind.into() }],
            ..Frame::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    #[test]
    fn round_trips_and_reads_headers() {
        let f = Frame {
            seq_id: 7,
            log_id: 9,
            service: 123456,
            method: DATA,
            headers: vec![
                Header { key: "type".into(), value: "event".into() },
                Header { key: "message_id".into(), value: "m1".into() },
            ],
            payload: Some(br#"{"a":1}"#.to_vec()),
            ..Frame::default()
        };
        let bytes = f.encode_to_vec();
        let back = Frame::decode(bytes.as_slice()).unwrap();
        assert_eq!(back, f);
        assert_eq!(back.header("message_id"), Some("m1"));
        assert_eq!(back.header("sum"), None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [&b"\xff\xff\xff"[..], b"\x0a\x05ab", b"\x08"] {
            assert!(Frame::decode(bad).is_err(), "{bad:?}");
        }
    }
}

//! What a call cost and produced, read from the provider's answer: the `usage` of a JSON
//! message, or the server-sent events of a stream, parsed only as far as accounting needs
//! (usage, text and tool input to keep the output on the record, errors). The bytes
//! themselves are relayed untouched, unknown events included.

use serde_json::{json, Map, Value};

/// Token counts as the provider reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_creation_input_tokens: i64,
    pub cache_read_input_tokens: i64,
}

impl Usage {
    /// Takes every count present in `u`: `message_delta` carries cumulative counts, so a later
    /// value replaces an earlier one.
    fn update(&mut self, u: &Value) {
        let get = |k: &str| u.get(k).and_then(Value::as_i64);
        if let Some(v) = get("input_tokens") {
            self.input_tokens = v;
        }
        if let Some(v) = get("output_tokens") {
            self.output_tokens = v;
        }
        if let Some(v) = get("cache_creation_input_tokens") {
            self.cache_creation_input_tokens = v;
        }
        if let Some(v) = get("cache_read_input_tokens") {
            self.cache_read_input_tokens = v;
        }
    }

    pub fn of_message(body: &Value) -> Usage {
        let mut u = Usage::default();
        if let Some(usage) = body.get("usage") {
            u.update(usage);
        }
        u
    }
}

/// A stream followed event by event: fed the raw bytes as they arrive.
#[derive(Debug, Default)]
pub struct StreamAccount {
    pending: Vec<u8>,
    pub usage: Usage,
    message: Map<String, Value>,
    blocks: Vec<Value>,
    /// Partial JSON of `tool_use` inputs, by block index.
    partial: Vec<String>,
    pub stopped: bool,
    /// The `error` event's message, if one came.
    pub error: Option<String>,
    pub events: u64,
}

/// The most of one event kept while waiting for its end: a longer one is not parsed (it is
/// still relayed).
const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

impl StreamAccount {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = frame_end(&self.pending) {
            let frame: Vec<u8> = self.pending.drain(..end.0 + end.1).collect();
            self.event(&frame[..end.0]);
        }
        if self.pending.len() > MAX_EVENT_BYTES {
            self.pending.clear();
        }
    }

    fn event(&mut self, frame: &[u8]) {
        let text = String::from_utf8_lossy(frame);
        let mut data = String::new();
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            return;
        };
        self.events += 1;
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                if let Some(m) = v["message"].as_object() {
                    self.message = m.clone();
                    self.message.remove("content");
                    if let Some(u) = m.get("usage") {
                        self.usage.update(u);
                    }
                }
            }
            "content_block_start" => {
                let i = v["index"].as_u64().unwrap_or(self.blocks.len() as u64) as usize;
                if i < 4096 {
                    while self.blocks.len() <= i {
                        self.blocks.push(Value::Null);
                        self.partial.push(String::new());
                    }
                    self.blocks[i] = v["content_block"].clone();
                }
            }
            "content_block_delta" => {
                let i = v["index"].as_u64().unwrap_or(0) as usize;
                let (Some(block), Some(partial)) =
                    (self.blocks.get_mut(i), self.partial.get_mut(i))
                else {
                    return;
                };
                let d = &v["delta"];
                match d["type"].as_str().unwrap_or("") {
                    "text_delta" => append(block, "text", d["text"].as_str()),
                    "thinking_delta" => append(block, "thinking", d["thinking"].as_str()),
                    "input_json_delta" => {
                        partial.push_str(d["partial_json"].as_str().unwrap_or(""))
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                let i = v["index"].as_u64().unwrap_or(0) as usize;
                if let (Some(block), Some(partial)) = (self.blocks.get_mut(i), self.partial.get(i))
                {
                    if !partial.is_empty() {
                        block["input"] =
                            serde_json::from_str(partial).unwrap_or_else(|_| json!(partial));
                    }
                }
            }
            "message_delta" => {
                if let Some(d) = v["delta"].as_object() {
                    for (k, val) in d {
                        self.message.insert(k.clone(), val.clone());
                    }
                }
                self.usage.update(&v["usage"]);
            }
            "message_stop" => self.stopped = true,
            "error" => {
                self.error = Some(
                    v["error"]["message"]
                        .as_str()
                        .map(portcullis_outbound::sanitize_remote_message)
                        .unwrap_or_else(|| "the provider sent an error event".to_owned()),
                )
            }
            _ => {}
        }
    }

    /// The message as the stream built it, for the record.
    pub fn message(&self) -> Value {
        let mut m = self.message.clone();
        let u = self.usage;
        m.insert(
            "usage".to_owned(),
            json!({
                "input_tokens": u.input_tokens,
                "output_tokens": u.output_tokens,
                "cache_creation_input_tokens": u.cache_creation_input_tokens,
                "cache_read_input_tokens": u.cache_read_input_tokens,
            }),
        );
        m.insert(
            "content".to_owned(),
            Value::Array(
                self.blocks
                    .iter()
                    .filter(|b| !b.is_null())
                    .cloned()
                    .collect(),
            ),
        );
        Value::Object(m)
    }
}

fn append(block: &mut Value, field: &str, text: Option<&str>) {
    let Some(text) = text else { return };
    let mut s = block[field].as_str().unwrap_or("").to_owned();
    s.push_str(text);
    block[field] = Value::String(s);
}

/// The end of the first complete event: (its length, the separator's).
fn frame_end(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' && buf[i + 1] == b'\n' {
            return Some((i, 2));
        }
        if buf[i] == b'\r' && buf[i + 1] == b'\n' && buf.get(i + 2..i + 4) == Some(b"\r\n") {
            return Some((i, 4));
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn l1_stream_accounting_survives_any_split_of_the_bytes() {
        let stream = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_read_input_tokens\":5}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" 1}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: brand_new\ndata: {\"type\":\"brand_new\"}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        )
        .as_bytes();
        for split in [1, 3, 7, 64, stream.len()] {
            let mut a = StreamAccount::default();
            for piece in stream.chunks(split) {
                a.feed(piece);
            }
            assert!(a.stopped && a.error.is_none(), "split {split}");
            assert_eq!(
                a.usage,
                Usage {
                    input_tokens: 25,
                    output_tokens: 15,
                    cache_creation_input_tokens: 0,
                    cache_read_input_tokens: 5
                }
            );
            let m = a.message();
            assert_eq!(m["content"][0]["text"], "Hello");
            assert_eq!(m["content"][1]["input"], json!({ "a": 1 }));
            assert_eq!(m["stop_reason"], "tool_use");
        }
    }

    #[test]
    fn l1_an_error_event_is_recorded() {
        let mut a = StreamAccount::default();
        a.feed(b"event: error\r\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\r\n\r\n");
        assert_eq!(a.error.as_deref(), Some("Overloaded"));
        assert!(!a.stopped);
    }
}

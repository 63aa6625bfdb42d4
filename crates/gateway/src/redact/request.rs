//! Where customer data can be in a Messages request, and where placeholders come back in a
//! response. Walk order (which numbers the placeholders): `system`, `messages` in order,
//! `metadata.user_id`.

use serde_json::{Map, Value};

use super::{Mapping, RedactError, Redactor, Unscannable};

fn shape(path: &str, expected: &'static str) -> RedactError {
    RedactError::Shape {
        path: path.to_owned(),
        expected,
    }
}

pub(super) fn redact_request(
    r: &Redactor,
    body: &Value,
    m: &mut Mapping,
) -> Result<Value, RedactError> {
    let obj = body
        .as_object()
        .ok_or_else(|| shape("the body", "a JSON object"))?;
    let mut out = obj.clone();
    if let Some(system) = obj.get("system") {
        let v = match system {
            Value::String(s) => Value::String(r.redact_text(s, m)?),
            Value::Array(blocks) => Value::Array(redact_blocks(r, blocks, "system", m)?),
            _ => return Err(shape("system", "a string or an array of blocks")),
        };
        out.insert("system".into(), v);
    }
    if let Some(messages) = obj.get("messages") {
        let list = messages
            .as_array()
            .ok_or_else(|| shape("messages", "an array"))?;
        let mut redacted = Vec::with_capacity(list.len());
        for (i, msg) in list.iter().enumerate() {
            let path = format!("messages[{i}]");
            let msg = msg.as_object().ok_or_else(|| shape(&path, "an object"))?;
            let mut msg_out = msg.clone();
            match msg.get("content") {
                Some(Value::String(s)) => {
                    msg_out.insert("content".into(), Value::String(r.redact_text(s, m)?));
                }
                Some(Value::Array(blocks)) => {
                    let path = format!("{path}.content");
                    msg_out.insert(
                        "content".into(),
                        Value::Array(redact_blocks(r, blocks, &path, m)?),
                    );
                }
                None => {}
                Some(_) => {
                    return Err(shape(
                        &format!("{path}.content"),
                        "a string or an array of blocks",
                    ))
                }
            }
            redacted.push(Value::Object(msg_out));
        }
        out.insert("messages".into(), Value::Array(redacted));
    }
    if let Some(meta) = obj.get("metadata") {
        let meta = meta
            .as_object()
            .ok_or_else(|| shape("metadata", "an object"))?;
        if let Some(user) = meta.get("user_id") {
            let mut meta_out = meta.clone();
            let v = match user {
                Value::String(s) => Value::String(r.redact_text(s, m)?),
                Value::Null => Value::Null,
                _ => return Err(shape("metadata.user_id", "a string")),
            };
            meta_out.insert("user_id".into(), v);
            out.insert("metadata".into(), Value::Object(meta_out));
        }
    }
    Ok(Value::Object(out))
}

fn redact_blocks(
    r: &Redactor,
    blocks: &[Value],
    path: &str,
    m: &mut Mapping,
) -> Result<Vec<Value>, RedactError> {
    blocks
        .iter()
        .enumerate()
        .map(|(i, b)| redact_block(r, b, &format!("{path}[{i}]"), m))
        .collect()
}

fn redact_field(
    r: &Redactor,
    obj: &mut Map<String, Value>,
    key: &str,
    path: &str,
    m: &mut Mapping,
) -> Result<(), RedactError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) => {
            let v = r.redact_text(s, m)?;
            obj.insert(key.into(), Value::String(v));
            Ok(())
        }
        Some(_) => Err(shape(&format!("{path}.{key}"), "a string")),
    }
}

/// Every string anywhere in `v` (object keys left alone).
fn redact_strings(r: &Redactor, v: &Value, m: &mut Mapping) -> Result<Value, RedactError> {
    Ok(match v {
        Value::String(s) => Value::String(r.redact_text(s, m)?),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|x| redact_strings(r, x, m))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, x) in o {
                out.insert(k.clone(), redact_strings(r, x, m)?);
            }
            Value::Object(out)
        }
        other => other.clone(),
    })
}

fn opaque(r: &Redactor, block: &Value, path: &str, block_type: &str) -> Result<Value, RedactError> {
    match r.policy().opaque_blocks {
        Unscannable::Pass => Ok(block.clone()),
        Unscannable::Refuse => Err(RedactError::Unscannable {
            path: path.to_owned(),
            block_type: block_type.to_owned(),
        }),
    }
}

fn redact_block(
    r: &Redactor,
    block: &Value,
    path: &str,
    m: &mut Mapping,
) -> Result<Value, RedactError> {
    let obj = block
        .as_object()
        .ok_or_else(|| shape(path, "a content block object"))?;
    let ty = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| shape(&format!("{path}.type"), "a string"))?;
    let mut out = obj.clone();
    match ty {
        "text" => {
            if !obj.get("text").is_some_and(Value::is_string) {
                return Err(shape(&format!("{path}.text"), "a string"));
            }
            redact_field(r, &mut out, "text", path, m)?;
            if let Some(c) = obj.get("citations") {
                out.insert("citations".into(), redact_strings(r, c, m)?);
            }
        }
        "thinking" => redact_field(r, &mut out, "thinking", path, m)?,
        // Anthropic's own encrypted reasoning: no customer data in clear.
        "redacted_thinking" => {}
        "tool_use" | "server_tool_use" => {
            if let Some(input) = obj.get("input") {
                out.insert("input".into(), redact_strings(r, input, m)?);
            }
        }
        "tool_result" => match obj.get("content") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                out.insert("content".into(), Value::String(r.redact_text(s, m)?));
            }
            Some(Value::Array(blocks)) => {
                let path = format!("{path}.content");
                out.insert(
                    "content".into(),
                    Value::Array(redact_blocks(r, blocks, &path, m)?),
                );
            }
            Some(_) => {
                return Err(shape(
                    &format!("{path}.content"),
                    "a string or an array of blocks",
                ))
            }
        },
        "search_result" => {
            redact_field(r, &mut out, "title", path, m)?;
            redact_field(r, &mut out, "source", path, m)?;
            if let Some(Value::Array(blocks)) = obj.get("content") {
                let path = format!("{path}.content");
                out.insert(
                    "content".into(),
                    Value::Array(redact_blocks(r, blocks, &path, m)?),
                );
            } else if obj.contains_key("content") {
                return Err(shape(&format!("{path}.content"), "an array of blocks"));
            }
        }
        "document" => {
            let source = obj
                .get("source")
                .and_then(Value::as_object)
                .ok_or_else(|| shape(&format!("{path}.source"), "an object"))?;
            let source_type = source
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| shape(&format!("{path}.source.type"), "a string"))?;
            let mut source_out = source.clone();
            let source_path = format!("{path}.source");
            match source_type {
                "text" => {
                    if !source.get("data").is_some_and(Value::is_string) {
                        return Err(shape(&format!("{source_path}.data"), "a string"));
                    }
                    redact_field(r, &mut source_out, "data", &source_path, m)?;
                }
                "content" => match source.get("content") {
                    Some(Value::String(s)) => {
                        source_out.insert("content".into(), Value::String(r.redact_text(s, m)?));
                    }
                    Some(Value::Array(blocks)) => {
                        let p = format!("{source_path}.content");
                        source_out.insert(
                            "content".into(),
                            Value::Array(redact_blocks(r, blocks, &p, m)?),
                        );
                    }
                    _ => {
                        return Err(shape(
                            &format!("{source_path}.content"),
                            "a string or an array of blocks",
                        ))
                    }
                },
                other => return opaque(r, block, path, &format!("document ({other} source)")),
            }
            out.insert("source".into(), Value::Object(source_out));
            redact_field(r, &mut out, "title", path, m)?;
            redact_field(r, &mut out, "context", path, m)?;
        }
        "image" => return opaque(r, block, path, "image"),
        other => {
            return match r.policy().unknown_blocks {
                Unscannable::Pass => Ok(block.clone()),
                Unscannable::Refuse => Err(RedactError::UnknownBlock {
                    path: path.to_owned(),
                    block_type: other.to_owned(),
                }),
            }
        }
    }
    Ok(Value::Object(out))
}

fn restore_strings(m: &Mapping, v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(m.restore_text(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| restore_strings(m, x)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), restore_strings(m, x)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(super) fn restore_response(m: &Mapping, body: &Value) -> Result<Value, RedactError> {
    let Some(obj) = body.as_object() else {
        return Err(shape("the response", "a JSON object"));
    };
    let Some(content) = obj.get("content") else {
        return Ok(body.clone());
    };
    let blocks = content
        .as_array()
        .ok_or_else(|| shape("content", "an array"))?;
    let mut restored = Vec::with_capacity(blocks.len());
    for block in blocks {
        let Some(b) = block.as_object() else {
            return Err(shape("content[]", "a block object"));
        };
        let mut out = b.clone();
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                for key in ["text", "citations"] {
                    if let Some(v) = b.get(key) {
                        out.insert(key.into(), restore_strings(m, v));
                    }
                }
            }
            Some("thinking") => {
                if let Some(v) = b.get("thinking") {
                    out.insert("thinking".into(), restore_strings(m, v));
                }
            }
            Some("tool_use") | Some("server_tool_use") => {
                if let Some(v) = b.get("input") {
                    out.insert("input".into(), restore_strings(m, v));
                }
            }
            _ => {}
        }
        restored.push(Value::Object(out));
    }
    let mut out = obj.clone();
    out.insert("content".into(), Value::Array(restored));
    Ok(Value::Object(out))
}

//! The OpenAPI document is part of the contract: a change to it must be deliberate.

#[test]
fn openapi_document_matches_snapshot() {
    let spec = serde_json::to_value(portcullis_server::openapi()).unwrap();
    assert_eq!(spec["openapi"], "3.1.0");
    // Every operation documents its error shape.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            // Public, unauthenticated documents take no input that could be refused.
            if path.starts_with("/.well-known/") {
                continue;
            }
            assert!(
                responses.keys().any(|k| k.starts_with('4')),
                "{method} {path} documents no 4xx"
            );
        }
    }
    let rendered = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/snapshots/openapi.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &rendered).unwrap();
        return;
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == rendered,
        "the OpenAPI document changed; review and run `UPDATE_SNAPSHOTS=1 cargo test -p portcullis-server --test it openapi`"
    );
}

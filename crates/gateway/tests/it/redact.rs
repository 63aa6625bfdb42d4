//! M4: the redaction engine, tried with what it must find, what it must not, and every place
//! of a request where customer data can hide.

use portcullis_gateway::redact::{
    EntityKind, Mapping, RedactError, RedactionPolicy, Redactor, Restorer, Unscannable,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn redactor() -> Redactor {
    let policy = RedactionPolicy {
        terms: vec!["Acme Corp".into(), "Acme".into(), "PRJ-42".into()],
        ..Default::default()
    };
    Redactor::new(&policy).unwrap()
}

fn found(text: &str) -> Vec<(EntityKind, String)> {
    redactor()
        .detect(text)
        .into_iter()
        .map(|d| (d.kind, text[d.start..d.end].to_owned()))
        .collect()
}

fn assert_one(kind: EntityKind, text: &str, value: &str) {
    assert_eq!(found(text), vec![(kind, value.to_owned())], "in {text:?}");
}

fn assert_none(text: &str) {
    assert_eq!(found(text), vec![], "in {text:?}");
}

#[test]
fn m4_emails_are_found_and_near_misses_are_not() {
    for (t, v) in [
        (
            "write to ada.lovelace+work@example.co.uk.",
            "ada.lovelace+work@example.co.uk",
        ),
        ("<bob@mail-1.example.org>", "bob@mail-1.example.org"),
        ("x: j_doe%a@sub.domain.io, thanks", "j_doe%a@sub.domain.io"),
    ] {
        assert_one(EntityKind::Email, t, v);
    }
    for t in [
        "user@localhost",
        "a@b.c",
        "@example.com",
        "user@-bad.com",
        "name@domain.123",
        "user@.com",
    ] {
        assert_none(t);
    }
}

#[test]
fn m4_phones_are_found_and_plain_long_numbers_are_not() {
    for (t, v) in [
        ("call +14155550123 now", "+14155550123"),
        ("call +44 20 7946 0958.", "+44 20 7946 0958"),
        ("call +1 (415) 555-0123", "+1 (415) 555-0123"),
        ("office (415) 555-0123", "(415) 555-0123"),
        ("office 415-555-0123", "415-555-0123"),
        ("office 415.555.0123", "415.555.0123"),
        ("office 1-415-555-0123", "1-415-555-0123"),
        ("London 020 7946 0958", "020 7946 0958"),
        ("mobile 0151-1234-5678", "0151-1234-5678"),
    ] {
        assert_one(EntityKind::Phone, t, v);
    }
    for t in [
        "order 4155550123 shipped",
        "order 20261203123456",
        "id 415-555-01234",
        "area 115-555-0123",
        "mixed 415-555.0123",
        "v+12",
        "+0123456789",
        "sum 1 000 000",
        "2026-12-03",
        "ref AB415-555-0123",
    ] {
        assert_none(t);
    }
}

#[test]
fn m4_cards_must_pass_luhn() {
    for (t, v) in [
        ("card 4111 1111 1111 1111 exp", "4111 1111 1111 1111"),
        ("card 4111-1111-1111-1111", "4111-1111-1111-1111"),
        ("card 5555555555554444", "5555555555554444"),
        ("amex 3782 822463 10005", "3782 822463 10005"),
    ] {
        assert_one(EntityKind::Card, t, v);
    }
    for t in [
        "card 4111 1111 1111 1112",
        "card 5555555555554445",
        "card 4111-1111 1111-1111",
        "card 41111 111 11111111",
        "id 1111111111111117",
        "x4111111111111111",
    ] {
        assert!(
            !found(t).iter().any(|(k, _)| *k == EntityKind::Card),
            "{t:?}: {:?}",
            found(t)
        );
    }
}

#[test]
fn m4_ibans_must_pass_mod_97() {
    for (t, v) in [
        ("pay DE89370400440532013000 today", "DE89370400440532013000"),
        (
            "pay DE89 3704 0044 0532 0130 00.",
            "DE89 3704 0044 0532 0130 00",
        ),
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
        ("NO9386011117947", "NO9386011117947"),
    ] {
        assert_one(EntityKind::Iban, t, v);
    }
    for t in [
        "pay DE88370400440532013000",
        "pay DE89 3704 0044 0532 0130 01",
        "pay DE8937040044053201300",
        "pay XX89370400440532013000",
        "pay DE893704004405320130001",
        "pay GB82WEST1234569876543",
    ] {
        assert!(
            !found(t).iter().any(|(k, _)| *k == EntityKind::Iban),
            "{t:?}: {:?}",
            found(t)
        );
    }
}

#[test]
fn m4_ssns_exclude_the_invalid_ranges() {
    assert_one(EntityKind::Ssn, "ssn 123-45-6789.", "123-45-6789");
    assert_one(EntityKind::Ssn, "ssn 899-01-0001", "899-01-0001");
    for t in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "987-65-4321",
        "123-00-4567",
        "123-45-0000",
        "123 45 6789",
        "123-45-67890",
        "1234-56-789",
    ] {
        assert!(
            !found(t).iter().any(|(k, _)| *k == EntityKind::Ssn),
            "{t:?}: {:?}",
            found(t)
        );
    }
}

#[test]
fn m4_ip_addresses_and_not_version_numbers() {
    for (t, v) in [
        ("from 192.168.1.10.", "192.168.1.10"),
        ("host 8.8.8.8:53", "8.8.8.8"),
        (
            "peer 2001:db8:85a3::8a2e:370:7334 up",
            "2001:db8:85a3::8a2e:370:7334",
        ),
        (
            "peer 2001:0db8:0000:0000:0000:ff00:0042:8329",
            "2001:0db8:0000:0000:0000:ff00:0042:8329",
        ),
        ("loopback ::1", "::1"),
        ("peer fe80::1.", "fe80::1"),
        ("mapped ::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    ] {
        assert_one(EntityKind::Ip, t, v);
    }
    for t in [
        "version 1.2.3",
        "999.1.1.1",
        "1.2.3.4.5",
        "v1.2.3.4",
        "01.2.3.4",
        "256.1.1.1",
        "at 12:30:45",
        "std::io::Result",
        "a :: b",
        "2001:db8::1::2",
        "1:2:3:4:5:6:7:8:9",
        "deadbeef",
    ] {
        assert!(
            !found(t).iter().any(|(k, _)| *k == EntityKind::Ip),
            "{t:?}: {:?}",
            found(t)
        );
    }
}

#[test]
fn m4_terms_match_whole_words_case_insensitively_longest_first() {
    assert_eq!(
        found("ACME CORP signed; acme too"),
        vec![
            (EntityKind::Term, "ACME CORP".into()),
            (EntityKind::Term, "acme".into())
        ]
    );
    assert_one(EntityKind::Term, "see prj-42.", "prj-42");
    for t in ["Acmeville", "subacme", "PRJ-421", "acme_corp"] {
        assert_none(t);
    }
    for (terms, _) in [
        (vec!["  ".to_string()], "empty"),
        (vec!["-x-".to_string()], "edges"),
        (vec!["a".repeat(201)], "long"),
    ] {
        let policy = RedactionPolicy {
            terms,
            ..Default::default()
        };
        assert!(matches!(
            Redactor::new(&policy),
            Err(RedactError::BadTerm { index: 0, .. })
        ));
    }
    let mut policy = RedactionPolicy::default();
    policy.kinds.insert(EntityKind::Literal);
    assert!(matches!(
        Redactor::new(&policy),
        Err(RedactError::BadPolicy(_))
    ));
}

#[test]
fn m4_the_policy_chooses_the_kinds() {
    let policy = RedactionPolicy {
        kinds: [EntityKind::Email].into_iter().collect(),
        terms: vec!["Acme".into()],
        ..Default::default()
    };
    let r = Redactor::new(&policy).unwrap();
    let mut m = Mapping::default();
    let out = r
        .redact_text("Acme: ada@example.com, 192.168.1.1, 123-45-6789", &mut m)
        .unwrap();
    assert_eq!(out, "Acme: <EMAIL_1>, 192.168.1.1, 123-45-6789");
}

#[test]
fn m4_placeholders_are_stable_across_messages_and_numbered_in_order() {
    let body = json!({
        "model": "claude-haiku-4-5",
        "system": "Agent for Acme. Escalate to boss@acme.example.",
        "messages": [
            {"role": "user", "content": "I am ada@example.com, call +14155550123."},
            {"role": "assistant", "content": [{"type": "text", "text": "Noted ada@example.com."}]},
            {"role": "user", "content": "Also bob@example.com and boss@acme.example, not ada@example.com."}
        ]
    });
    let (out, m) = redactor().redact_request(&body).unwrap();
    assert_eq!(out["system"], "Agent for <TERM_1>. Escalate to <EMAIL_1>.");
    assert_eq!(
        out["messages"][0]["content"],
        "I am <EMAIL_2>, call <PHONE_1>."
    );
    assert_eq!(out["messages"][1]["content"][0]["text"], "Noted <EMAIL_2>.");
    assert_eq!(
        out["messages"][2]["content"],
        "Also <EMAIL_3> and <EMAIL_1>, not <EMAIL_2>."
    );
    assert_eq!(m.len(), 5);
    // A carried mapping keeps the numbers for the next call of the conversation.
    let carried: Mapping = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    let mut next = carried.clone();
    let again = redactor()
        .redact_request_with(
            &json!({"messages": [{"role": "user", "content": "bob@example.com, eve@example.com"}]}),
            &mut next,
        )
        .unwrap();
    assert_eq!(again["messages"][0]["content"], "<EMAIL_3>, <EMAIL_4>");
    // Debug never shows an original.
    assert!(!format!("{m:?}").contains("ada@"));
    // A tampered carried mapping is refused.
    let mut wire: Value = serde_json::to_value(&m).unwrap();
    wire["entries"][0]["placeholder"] = json!("<EMAIL_9>");
    assert!(serde_json::from_value::<Mapping>(wire).is_err());
}

const PII: [&str; 9] = [
    "ada@example.com",
    "+14155550123",
    "4111 1111 1111 1111",
    "DE89370400440532013000",
    "123-45-6789",
    "192.168.7.7",
    "2001:db8::7",
    "Acme Corp",
    "PRJ-42",
];

fn pii_text(n: usize) -> String {
    format!(
        "note {n}: {} {} {} {} {} {} {} {} {}",
        PII[0], PII[1], PII[2], PII[3], PII[4], PII[5], PII[6], PII[7], PII[8]
    )
}

fn request_with_pii_everywhere() -> Value {
    json!({
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "stream": true,
        "metadata": {"user_id": pii_text(0)},
        "system": [{"type": "text", "text": pii_text(1), "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": pii_text(2)},
            {"role": "user", "content": [
                {"type": "text", "text": pii_text(3)},
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": pii_text(4)},
                 "title": pii_text(5), "context": pii_text(6)},
                {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": pii_text(7)}]}},
                {"type": "search_result", "source": pii_text(8), "title": pii_text(9), "content": [{"type": "text", "text": pii_text(10)}]}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": pii_text(11), "signature": "sig"},
                {"type": "text", "text": pii_text(12), "citations": [{"type": "char_location", "cited_text": pii_text(13)}]},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {
                    "query": pii_text(14), "nested": {"list": [pii_text(15), 7, true, {"deep": pii_text(16)}]}}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": pii_text(17)},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [
                    {"type": "text", "text": pii_text(18)},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": pii_text(19)}}
                ]}
            ]}
        ]
    })
}

#[test]
fn m4_every_location_of_a_request_is_redacted() {
    let body = request_with_pii_everywhere();
    let (out, m) = redactor().redact_request(&body).unwrap();
    let sent = serde_json::to_string(&out).unwrap();
    for value in PII {
        assert!(!sent.contains(value), "{value:?} left in {sent}");
    }
    assert!(!sent.to_lowercase().contains("acme"), "{sent}");
    // Every one of the 20 notes is still there, redacted; non-content fields are unchanged.
    for n in 0..20 {
        assert!(sent.contains(&format!("note {n}: <EMAIL_1> <PHONE_1> <CARD_1> <IBAN_1> <SSN_1> <IP_1> <IP_2> <TERM_1> <TERM_2>")), "note {n}");
    }
    assert_eq!(out["model"], body["model"]);
    assert_eq!(out["max_tokens"], body["max_tokens"]);
    assert_eq!(out["stream"], body["stream"]);
    assert_eq!(
        out["system"][0]["cache_control"],
        body["system"][0]["cache_control"]
    );
    assert_eq!(out["messages"][2]["content"][2]["id"], "toolu_1");
    assert!(out["messages"][2]["content"][2]["input"]["nested"]
        .as_object()
        .unwrap()
        .contains_key("list"));
    assert_eq!(m.len(), 9);
}

#[test]
fn m4_unscannable_and_unknown_blocks_fail_closed_unless_the_policy_passes_them() {
    let image = json!({"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}});
    let pdf = json!({"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}});
    let url = json!({"type": "document", "source": {"type": "url", "url": "https://example.com/ada.pdf"}});
    let nested = json!({"type": "tool_result", "tool_use_id": "t", "content": [image.clone()]});
    let unknown = json!({"type": "hologram", "data": "ada@example.com"});
    let req = |b: &Value| json!({"messages": [{"role": "user", "content": [b.clone()]}]});
    for b in [&image, &pdf, &url, &nested] {
        let err = redactor().redact_request(&req(b)).unwrap_err();
        assert!(matches!(err, RedactError::Unscannable { .. }), "{err}");
    }
    let err = redactor().redact_request(&req(&unknown)).unwrap_err();
    assert_eq!(
        err,
        RedactError::UnknownBlock {
            path: "messages[0].content[0]".into(),
            block_type: "hologram".into()
        }
    );
    assert!(err.to_string().contains("hologram"));
    assert!(!err.to_string().contains("ada@"));

    let pass = Redactor::new(&RedactionPolicy {
        opaque_blocks: Unscannable::Pass,
        unknown_blocks: Unscannable::Pass,
        ..Default::default()
    })
    .unwrap();
    for b in [&image, &pdf, &url, &nested, &unknown] {
        let (out, _) = pass.redact_request(&req(b)).unwrap();
        assert_eq!(out, req(b));
    }
    // Bad shapes are refused, never sent as they are.
    for bad in [
        json!([1]),
        json!({"system": 7}),
        json!({"messages": {"role": "user"}}),
        json!({"messages": ["hi"]}),
        json!({"messages": [{"role": "user", "content": 5}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "data": 1}}]}]}),
        json!({"metadata": {"user_id": 5}}),
    ] {
        assert!(
            matches!(
                redactor().redact_request(&bad),
                Err(RedactError::Shape { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn m4_a_json_response_is_restored() {
    let (_, m) = redactor().redact_request(&json!({"messages": [{"role": "user", "content": "ada@example.com \"Acme\" 123-45-6789"}]})).unwrap();
    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [
            {"type": "text", "text": "Mail <EMAIL_1> about <TERM_1>; <EMAIL_7> is invented."},
            {"type": "tool_use", "id": "toolu_1", "name": "file", "input": {"who": "<EMAIL_1>", "ids": ["<SSN_1>", 3]}}
        ],
        "usage": {"input_tokens": 3, "output_tokens": 5}
    });
    let out = m.restore_response(&answer).unwrap();
    assert_eq!(
        out["content"][0]["text"],
        "Mail ada@example.com about Acme; <EMAIL_7> is invented."
    );
    assert_eq!(
        out["content"][1]["input"],
        json!({"who": "ada@example.com", "ids": ["123-45-6789", 3]})
    );
    assert_eq!(out["usage"], answer["usage"]);
    let error = json!({"type": "error", "error": {"type": "overloaded_error", "message": "x"}});
    assert_eq!(m.restore_response(&error).unwrap(), error);
    assert!(m.restore_response(&json!({"content": "x"})).is_err());
}

#[test]
fn m4_input_json_deltas_restore_escaped_originals() {
    let policy = RedactionPolicy {
        terms: vec!["O\"Brien".into()],
        ..Default::default()
    };
    let r = Redactor::new(&policy).unwrap();
    let mut m = Mapping::default();
    assert_eq!(
        r.redact_text("ask O\"Brien", &mut m).unwrap(),
        "ask <TERM_1>"
    );
    let mut json = Restorer::json(&m);
    let mut out = String::new();
    for piece in ["{\"who\": \"<TE", "RM", "_1>\"}"] {
        out.push_str(&json.push(piece));
    }
    out.push_str(&json.finish());
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"who": "O\"Brien"})
    );
}

#[test]
fn m4_literal_placeholders_in_the_input_survive_the_round_trip() {
    let r = redactor();
    let mut m = Mapping::default();
    let text = "template <EMAIL_1> for ada@example.com";
    let red = r.redact_text(text, &mut m).unwrap();
    assert_eq!(red, "template <LITERAL_1> for <EMAIL_1>");
    assert_eq!(m.restore_text(&red), text);
}

fn restore_in_pieces(m: &Mapping, text: &str, cuts: &[usize]) -> (String, usize) {
    let mut r = Restorer::text(m);
    let mut out = String::new();
    let mut max_held = 0;
    let mut at = 0;
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| c % (text.len() + 1))
        .filter(|c| text.is_char_boundary(*c))
        .collect();
    points.sort_unstable();
    points.push(text.len());
    for p in points {
        if p < at {
            continue;
        }
        out.push_str(&r.push(&text[at..p]));
        max_held = max_held.max(r.held());
        at = p;
    }
    out.push_str(&r.finish());
    (out, max_held)
}

fn text_with_pii() -> impl Strategy<Value = String> {
    let filler = "[a-z <>_A-Z0-9.,@-]{0,12}";
    prop::collection::vec((filler, prop::sample::select(PII.to_vec())), 0..8).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(f, p)| format!("{f} {p} "))
            .collect()
    })
}

proptest! {
    #[test]
    fn m4_redaction_then_restoration_is_the_identity(text in text_with_pii()) {
        let mut m = Mapping::default();
        let red = redactor().redact_text(&text, &mut m).unwrap();
        for v in PII {
            prop_assert!(!red.contains(v), "{} left in {}", v, red);
        }
        prop_assert_eq!(m.restore_text(&red), text);
    }

    #[test]
    fn m4_any_split_of_an_echoed_stream_restores_exactly_and_the_buffer_stays_bounded(
        text in text_with_pii(),
        cuts in prop::collection::vec(0usize..400, 0..40),
    ) {
        let mut m = Mapping::default();
        let red = redactor().redact_text(&text, &mut m).unwrap();
        let (out, max_held) = restore_in_pieces(&m, &red, &cuts);
        prop_assert_eq!(out, text);
        prop_assert!(max_held < m.longest_placeholder().max(1), "held {} of bound {}", max_held, m.longest_placeholder());
    }

    #[test]
    fn m4_the_restorer_buffer_never_exceeds_the_bound_on_any_input(
        stream in "[<>A-Z_0-9a ]{0,200}",
        cuts in prop::collection::vec(0usize..200, 0..40),
    ) {
        let mut m = Mapping::default();
        redactor().redact_text(&pii_text(0), &mut m).unwrap();
        let (out, max_held) = restore_in_pieces(&m, &stream, &cuts);
        prop_assert!(max_held < m.longest_placeholder());
        // Whatever the split, the output is the one-piece restoration.
        prop_assert_eq!(out, m.restore_text(&stream));
    }
}

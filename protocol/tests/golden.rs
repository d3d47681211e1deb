//! The golden protocol fixtures in `tests/fixtures/protocol/` parse into the
//! wire types and serialize back to the same JSON. The server and the
//! TypeScript tests read the same files, so the three cannot drift.

use ferrydb_protocol::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/protocol")
}

/// Parses `json` as `T` and checks that serializing it gives the same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(name: &str, json: &Json) -> T {
    let parsed: T = serde_json::from_value(json.clone())
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    let back = serde_json::to_value(&parsed).unwrap();
    assert_eq!(&back, json, "{name} does not round-trip");
    parsed
}

#[test]
fn every_fixture_parses_and_round_trips() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let json: Json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // The file name says the message type; a fixture nobody checks is refused.
        match name.as_str() {
            n if n.starts_with("push-request") => drop(round_trip::<PushRequest>(n, &json)),
            n if n.starts_with("push-response") => drop(round_trip::<PushResponse>(n, &json)),
            n if n.starts_with("pull-request") => drop(round_trip::<PullRequest>(n, &json)),
            n if n.starts_with("pull-response") => drop(round_trip::<PullResponse>(n, &json)),
            n if n.starts_with("poke") => drop(round_trip::<ServerEvent>(n, &json)),
            n if n.starts_with("error-body") => drop(round_trip::<ErrorBody>(n, &json)),
            other => panic!("fixture {other} has no known message type prefix"),
        }
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} fixtures found");
}

fn load(name: &str) -> Json {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

#[test]
fn fixtures_mean_what_the_docs_say() {
    let push: PushRequest = round_trip("push", &load("push-request.json"));
    assert_eq!(push.client_id, "c-19be");
    assert_eq!(
        push.mutations.iter().map(|m| m.id).collect::<Vec<_>>(),
        [7, 8, 9]
    );

    let PushResponse::Ok { results } = round_trip("push", &load("push-response.json")) else {
        panic!("expected ok");
    };
    assert_eq!(results[0], MutationResult::AlreadyProcessed { id: 7 });
    assert!(matches!(
        &results[2],
        MutationResult::Rejected {
            id: 9,
            code: RejectionCode::Forbidden,
            ..
        }
    ));

    let PushResponse::Ok { results } =
        round_trip("push", &load("push-response-custom-rejection.json"))
    else {
        panic!("expected ok");
    };
    assert!(matches!(
        &results[0],
        MutationResult::Rejected { code: RejectionCode::App(c), .. } if c == "quota_exceeded"
    ));

    let pull: PullRequest = round_trip("pull", &load("pull-request-initial.json"));
    assert_eq!(pull.cookie, None);
    let pull: PullRequest = round_trip("pull", &load("pull-request.json"));
    assert_eq!(pull.cookie, Some(Cookie::Integer(42)));
    let pull: PullRequest = round_trip("pull", &load("pull-request-text-cookie.json"));
    assert!(matches!(pull.cookie, Some(Cookie::Text(_))));

    let PullResponse::Ok(initial) = round_trip("pull", &load("pull-response-initial.json")) else {
        panic!("expected ok");
    };
    assert_eq!(initial.patch[0], PatchOp::Clear);
    assert!(initial.more);
    assert_eq!(initial.last_mutation_id_changes["c-19be"], 6);

    let PullResponse::SchemaMismatch(m) =
        round_trip("pull", &load("pull-response-schema-mismatch.json"))
    else {
        panic!("expected a mismatch");
    };
    assert_eq!(m.action, MismatchAction::ResetReplica);

    let ServerEvent::Poke { cookie } = round_trip("poke", &load("poke.json"));
    assert_eq!(cookie, Some(Cookie::Integer(57)));
}

#[test]
fn rejection_codes_parse_from_their_strings() {
    for code in [
        RejectionCode::UnknownMutator,
        RejectionCode::BadArguments,
        RejectionCode::Forbidden,
        RejectionCode::MutatorFailed,
        RejectionCode::App("custom".into()),
    ] {
        assert_eq!(RejectionCode::parse(code.as_str()), code);
    }
}

#[test]
fn the_more_flag_defaults_to_false() {
    let json = r#"{"type":"ok","cookie":1,"lastMutationIDChanges":{},"patch":[]}"#;
    let PullResponse::Ok(ok) = serde_json::from_str(json).unwrap() else {
        panic!("expected ok");
    };
    assert!(!ok.more);
}

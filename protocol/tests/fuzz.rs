//! Fuzz tests of this crate's decoders (see `tests/fuzz`, the `ferrydb-fuzz`
//! crate): every message either side reads, the cookie, the app definition
//! and the SQL lexer it runs. Inputs start from the golden fixtures and are
//! damaged; each decoder must return a value or its typed error, never
//! panic, and what it returns must survive being written and read again.
//!
//! Each target prints its number of cases; `FERRYDB_FUZZ_CASES=n` runs n of
//! each, `FERRYDB_FUZZ_SEED=s` replays the case a failure names. Test names
//! start with `fuzzed_`: `scripts/test.sh` runs them in a step of their own.

use ferrydb_fuzz::{bytes, json, run, Bytes, Rng};
use ferrydb_protocol::decode::DecodeError;
use ferrydb_protocol::sql::{tokenize, Placeholders, Statement};
use ferrydb_protocol::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value as Json;
use std::fmt::Debug;
use std::path::Path;

/// Cases per target by default: each takes microseconds.
const CASES: u64 = 5_000;

fn fixtures_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures"))
}

/// The golden protocol fixtures whose file name starts with `prefix`.
fn fixtures(prefix: &str) -> Vec<Json> {
    let dir = fixtures_dir().join("protocol");
    let mut found: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(prefix)
        })
        .collect();
    found.sort();
    let seeds: Vec<Json> = found
        .iter()
        .map(|path| serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect();
    assert!(!seeds.is_empty(), "no fixture {prefix}*");
    seeds
}

fn sample_app() -> Json {
    let text = std::fs::read_to_string(fixtures_dir().join("app.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Text as the SDK gets it from `fetch` (`Response.text()` decodes UTF-8,
/// replacing what is not).
fn as_text(input: &Bytes) -> String {
    String::from_utf8_lossy(&input.0).into_owned()
}

/// The client's way in (`src/wasm/sync.rs`, `src/wasm/realtime.rs`): parse
/// the text, then decode the tree. A decoded message, written back and
/// decoded again, is the same message.
fn decodes_like_the_client<T: Serialize + PartialEq + Debug>(
    input: &Bytes,
    decode: fn(Json, &str) -> Result<T, DecodeError>,
) {
    let Ok(json) = serde_json::from_str::<Json>(&as_text(input)) else {
        return;
    };
    match decode(json, "") {
        Ok(message) => {
            let again = serde_json::to_value(&message).unwrap();
            assert_eq!(decode(again, "").unwrap(), message);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

/// The server's way in (`server/src/sync_routes.rs`): serde over the body's
/// bytes. A request read, written back and read again, is the same request.
fn decodes_like_the_server<T: Serialize + DeserializeOwned + PartialEq + Debug>(input: &Bytes) {
    match serde_json::from_slice::<T>(&input.0) {
        Ok(request) => {
            let again: T = serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
            assert_eq!(again, request);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn json_target(name: &str, seeds: Vec<Json>, check: impl Fn(&Bytes)) {
    run(name, CASES, |rng| Bytes(json::input(rng, &seeds)), check);
}

#[test]
fn fuzzed_push_requests_read_by_the_server() {
    json_target("PushRequest", fixtures("push-request"), |input| {
        decodes_like_the_server::<PushRequest>(input)
    });
}

#[test]
fn fuzzed_pull_requests_read_by_the_server() {
    json_target("PullRequest", fixtures("pull-request"), |input| {
        decodes_like_the_server::<PullRequest>(input)
    });
}

#[test]
fn fuzzed_error_bodies() {
    json_target("ErrorBody", fixtures("error-body"), |input| {
        decodes_like_the_server::<ErrorBody>(input)
    });
}

#[test]
fn fuzzed_push_responses_read_by_the_client() {
    json_target("PushResponse::decode", fixtures("push-response"), |input| {
        decodes_like_the_client(input, PushResponse::decode)
    });
}

#[test]
fn fuzzed_pull_responses_read_by_the_client() {
    json_target("PullResponse::decode", fixtures("pull-response"), |input| {
        decodes_like_the_client(input, PullResponse::decode)
    });
}

#[test]
fn fuzzed_realtime_events_read_by_the_client() {
    json_target("ServerEvent::decode", fixtures("poke"), |input| {
        decodes_like_the_client(input, ServerEvent::decode)
    });
}

#[test]
fn fuzzed_cookies() {
    // Every cookie the fixtures carry, and none.
    let mut seeds: Vec<Json> = fixtures("")
        .into_iter()
        .filter_map(|message| message.get("cookie").cloned())
        .collect();
    seeds.push(Json::Null);
    json_target("Cookie::decode", seeds, |input| {
        decodes_like_the_client(input, Cookie::decode)
    });
}

#[test]
fn fuzzed_app_definitions() {
    let seeds = vec![sample_app()];
    // Most damage stops at the shape check; edits that keep the shape reach
    // the validator and the SQL lexer.
    let generate = |rng: &mut Rng| match rng.below(2) {
        0 => Bytes(json::input(rng, &seeds)),
        _ => Bytes(serde_json::to_vec(&json::mutate_values(rng, &seeds[0])).unwrap()),
    };
    run("AppDefinition::from_json", CASES, generate, |input| {
        match AppDefinition::from_json(&as_text(input)) {
            Ok(app) => {
                // A definition that validated is used without further checks
                // (`expect("validated …")`): its rules and statements must lex.
                for table in &app.tables {
                    table.read_rule();
                    table.write_rule();
                }
                for mutator in &app.mutators {
                    mutator.rendered(Placeholders::Question);
                    mutator.rendered(Placeholders::Dollar);
                }
                let again = AppDefinition::from_json(&serde_json::to_string(&app).unwrap());
                assert_eq!(again.unwrap(), app);
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    });
}

/// The SQL texts of the sample app: its rules and mutator statements.
fn sample_sql() -> Vec<String> {
    let app = AppDefinition::from_json(&sample_app().to_string()).unwrap();
    let rules = app
        .tables
        .iter()
        .flat_map(|t| [t.access.read.clone(), t.access.write.clone()]);
    let statements = app.mutators.iter().flat_map(|m| m.sql.as_slice().to_vec());
    rules.chain(statements).collect()
}

#[test]
fn fuzzed_sql_texts_lexed_for_parameters() {
    let seeds = sample_sql();
    let seed_bytes: Vec<&[u8]> = seeds.iter().map(|s| s.as_bytes()).collect();
    let generate = |rng: &mut Rng| {
        let seed = rng.pick(&seed_bytes);
        let text = match rng.below(10) {
            0 => bytes::random(rng),
            _ => bytes::mutate(rng, seed, &seed_bytes),
        };
        String::from_utf8_lossy(&text).into_owned()
    };
    run("sql::Statement::parse", CASES, generate, |sql| {
        match (tokenize(sql), Statement::parse(sql)) {
            (Ok(_), Ok(statement)) => {
                let rendered = statement.render(Placeholders::Dollar);
                for (i, _) in statement.params.iter().enumerate() {
                    assert!(rendered.contains(&format!("${}", i + 1)), "{rendered}");
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("the lexer and the parser disagree: {a:?} / {b:?}"),
        }
    });
}

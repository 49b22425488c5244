//! `GET /runs/{run}` ([`RunAccount`](crate::contract::RunAccount)) and
//! `GET /runs/{run}/traces?ids=a,b,…` ([`TraceFates`](crate::contract::TraceFates)): this
//! replica's run accounting, read-only and so without a token. Input is bounded: a run id
//! of at most [`MAX_RUN_ID_LEN`] characters, at most [`MAX_FATE_IDS`] trace ids.

use http::{Request, Response, StatusCode};
use opentelemetry::trace::TraceId;

use super::{HandlerBody, error, json_value, query_param};
use crate::AppState;
use crate::contract::{MAX_FATE_IDS, MAX_RUN_ID_LEN};
use crate::ledger::is_run_id;

/// Longest piece of a bad input quoted back in an error.
const QUOTE_MAX: usize = 80;

/// Answers the run accounting routes.
pub fn handle<B>(state: &AppState, req: &Request<B>) -> Response<HandlerBody> {
    let rest = req.uri().path().strip_prefix("/runs/").unwrap_or_default();
    let (run, traces) = match rest.split_once('/') {
        None => (rest, false),
        Some((run, "traces")) => (run, true),
        Some(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "no such route: expected /runs/{run} or /runs/{run}/traces?ids=…",
            );
        }
    };
    if !is_run_id(run.as_bytes()) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "invalid run id {:?}: expected 1 to {MAX_RUN_ID_LEN} characters of A-Z a-z 0-9 . _ -",
                quote(run)
            ),
        );
    }
    if !traces {
        return json_value(StatusCode::OK, &state.ledger.account(run));
    }
    match parse_ids(req.uri().query()) {
        Ok(ids) => json_value(StatusCode::OK, &state.ledger.fates(run, &ids)),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// The distinct trace ids of `?ids=` (comma-separated, each 1 to 32 hex digits, at most
/// [`MAX_FATE_IDS`]); the sentence to answer 400 with otherwise.
pub fn parse_ids(query: Option<&str>) -> Result<Vec<TraceId>, String> {
    let Some(raw) = query_param(query, "ids") else {
        return Err(format!(
            "missing ids: expected ?ids= and at most {MAX_FATE_IDS} comma-separated trace ids of 1 to 32 hex digits"
        ));
    };
    let mut ids = Vec::new();
    if raw.is_empty() {
        return Ok(ids);
    }
    for (n, part) in raw.split(',').enumerate() {
        if n == MAX_FATE_IDS {
            return Err(format!(
                "too many trace ids: expected at most {MAX_FATE_IDS} per request"
            ));
        }
        let valid = (1..=32).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
        let id = valid
            .then(|| u128::from_str_radix(part, 16).ok())
            .flatten()
            .ok_or_else(|| {
                format!(
                    "invalid trace id {:?}: expected 1 to 32 hex digits",
                    quote(part)
                )
            })?;
        let id = TraceId::from(id);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// At most [`QUOTE_MAX`] bytes of `s`, cut at a character boundary.
fn quote(s: &str) -> &str {
    let mut end = s.len().min(QUOTE_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_or_full_hex_deduplicated_and_bounded() {
        let ids = parse_ids(Some("x=1&ids=1,00000000000000000000000000000001,ABCdef")).unwrap();
        assert_eq!(ids, [TraceId::from(1u128), TraceId::from(0xabcdefu128)]);
        assert_eq!(parse_ids(Some("ids=")).unwrap(), []);
        let max = vec!["a"; MAX_FATE_IDS].join(",");
        assert_eq!(parse_ids(Some(&format!("ids={max}"))).unwrap().len(), 1);
        let cases = [
            (
                None,
                "missing ids: expected ?ids= and at most 256 comma-separated trace ids of 1 to 32 hex digits",
            ),
            (
                Some("ids=1,,2"),
                r#"invalid trace id "": expected 1 to 32 hex digits"#,
            ),
            (
                Some("ids=+1"),
                r#"invalid trace id "+1": expected 1 to 32 hex digits"#,
            ),
            (
                Some("ids=000000000000000000000000000000001"),
                r#"invalid trace id "000000000000000000000000000000001": expected 1 to 32 hex digits"#,
            ),
            (
                Some("ids=xyz"),
                r#"invalid trace id "xyz": expected 1 to 32 hex digits"#,
            ),
        ];
        for (q, want) in cases {
            assert_eq!(parse_ids(q).unwrap_err(), want, "{q:?}");
        }
        let over = vec!["a"; MAX_FATE_IDS + 1].join(",");
        assert_eq!(
            parse_ids(Some(&format!("ids={over}"))).unwrap_err(),
            "too many trace ids: expected at most 256 per request"
        );
    }

    #[test]
    fn quotes_are_cut_at_a_character_boundary() {
        let long = "é".repeat(100);
        assert_eq!(quote(&long).len(), QUOTE_MAX);
        assert_eq!(quote("abc"), "abc");
    }
}

//! The one duration syntax of scenario files and flags: `30s`, `5m`, `1m30s`, `500ms`.
//!
//! k6 style: one or more `<number><unit>` parts with no spaces, units `us` (or `µs`), `ms`,
//! `s`, `m` and `h`; a bare `0` is zero. Anything else (`5 minutes`, `-1s`, `10`) is an
//! error naming what is valid.

use std::time::Duration;

/// The units a duration may use, for error messages.
pub const UNITS: &str = "`us`, `ms`, `s`, `m` or `h`";

/// A string that is not a duration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a duration; expected a number and a unit ({UNITS}), e.g. `30s`, `1m30s` or `500ms`"
)]
pub struct DurationError {
    /// The rejected text.
    pub input: String,
}

/// Parses `30s`, `1m30s`, `500ms`, `1.5h`, `0`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_owned(),
    };
    if input == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = input;
    let mut total = 0.0_f64;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        let number: f64 = rest[..number_len].parse().map_err(|_| err())?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per_unit = match &rest[..unit_len] {
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per_unit;
    }
    Duration::try_from_secs_f64(total).map_err(|_| err())
}

/// Renders a duration compactly in the syntax [`parse_duration`] reads: `1m30s`, `500ms`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    let total_ms = duration.as_millis();
    if total_ms == 0 {
        return if duration.is_zero() {
            "0s".to_owned()
        } else {
            format!("{}us", duration.as_micros())
        };
    }
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k6_style_durations_parse() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("250us", Duration::from_micros(250)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn anything_else_is_rejected_with_the_valid_syntax() {
        for text in [
            "5 minutes",
            "",
            "10",
            "-1s",
            "1d",
            "s",
            "1.2.3s",
            " 5s",
            "5s ",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "`{text}` is not a duration; expected a number and a unit (`us`, `ms`, `s`, `m` or `h`), e.g. `30s`, `1m30s` or `500ms`"
                )
            );
        }
    }

    #[test]
    fn format_then_parse_is_identity() {
        for ms in [
            0_u64, 1, 999, 1000, 1500, 60_000, 90_500, 3_600_000, 3_725_250,
        ] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
    }

    proptest::proptest! {
        #[test]
        fn any_whole_millisecond_duration_round_trips(ms in 0_u64..1_000_000_000) {
            let d = Duration::from_millis(ms);
            proptest::prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,12}") {
            let _ = parse_duration(&text);
        }
    }
}

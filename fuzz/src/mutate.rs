//! Byte-level mutations of an input, libFuzzer-style: bit flips, interesting bytes and
//! numbers, inserts, deletes, repeats, dictionary tokens, splices from other corpus
//! entries, truncation.

use crate::rng::Rng;

/// Tokens useful to every text format here: JSON and YAML punctuation, escapes, numbers at
/// the edges of their types, multi-byte UTF-8.
pub const COMMON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b":",
    b",",
    b"=",
    b"\n",
    b"\r\n",
    b" ",
    b"\t",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-0",
    b"1",
    b"-1",
    b"1.5",
    b".",
    b"e",
    b"1e308",
    b"-1e308",
    b"1e-400",
    b"NaN",
    b"inf",
    b"-inf",
    b"255",
    b"256",
    b"65535",
    b"65536",
    b"2147483647",
    b"2147483648",
    b"4294967295",
    b"4294967296",
    b"9223372036854775807",
    b"9223372036854775808",
    b"18446744073709551615",
    b"18446744073709551616",
    b"99999999999999999999999999999999",
    "µ".as_bytes(),
    "é".as_bytes(),
    "\u{FEFF}".as_bytes(),
    "\u{10FFFF}".as_bytes(),
    "💥".as_bytes(),
    b"\xff",
    b"\xc3",
    b"\0",
];

/// Numbers substituted for a run of digits.
const NUMBERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"-1",
    b"00",
    b"0.0",
    b"1e9",
    b"1e308",
    b"1e-308",
    b"255",
    b"256",
    b"4294967295",
    b"4294967296",
    b"18446744073709551615",
    b"18446744073709551616",
    b"340282366920938463463374607431768211456",
    b"9007199254740993",
    b"0.000000001",
    b"999999999999999999999.5",
];

const BYTES: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, b'0', b'9', b'"', b'{', b'}', b'[', b']', b'\n', b'\r', b':', b',',
    b' ', b'\\', b'-', b'.', b'#', b'%', b'&', b'?', b'=',
];

/// Applies one to a few mutations to `input` in place, keeping it at most `max_len` bytes.
/// `dictionary` holds the target's tokens; `others` are corpus entries to splice from.
pub fn mutate(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    dictionary: &[&[u8]],
    others: &[Vec<u8>],
    max_len: usize,
) {
    let rounds = rng.small(8);
    for _ in 0..rounds {
        mutate_once(rng, input, dictionary, others, max_len);
    }
    input.truncate(max_len);
}

fn token<'a>(rng: &mut Rng, dictionary: &[&'a [u8]]) -> &'a [u8] {
    if !dictionary.is_empty() && !rng.one_in(4) {
        rng.pick(dictionary)
    } else {
        rng.pick(COMMON_TOKENS)
    }
}

fn mutate_once(
    rng: &mut Rng,
    input: &mut Vec<u8>,
    dictionary: &[&[u8]],
    others: &[Vec<u8>],
    max_len: usize,
) {
    let len = input.len();
    let at = rng.below(len + 1);
    match rng.below(13) {
        // flip one bit
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        // an interesting byte
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.pick(BYTES);
        }
        // a random byte
        2 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.next_u64() as u8;
        }
        // insert random bytes
        3 => {
            let n = rng.small(16);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            input.splice(at..at, bytes);
        }
        // delete a range
        4 if len > 0 => {
            let from = rng.below(len);
            let n = rng.small(len - from);
            input.drain(from..from + n);
        }
        // repeat a range several times
        5 if len > 0 && len < max_len => {
            let from = rng.below(len);
            let n = rng.small(len - from);
            let times = rng.small(64);
            let piece = input[from..from + n].to_vec();
            let mut grown = Vec::with_capacity(piece.len() * times);
            for _ in 0..times {
                grown.extend_from_slice(&piece);
            }
            input.splice(from..from, grown);
        }
        // insert a dictionary token
        6 | 7 => {
            let t = token(rng, dictionary);
            input.splice(at..at, t.iter().copied());
        }
        // overwrite with a dictionary token
        8 if len > 0 => {
            let t = token(rng, dictionary);
            let from = rng.below(len);
            let end = (from + t.len()).min(len);
            input.splice(from..end, t.iter().copied());
        }
        // splice in a range of another corpus entry
        9 if !others.is_empty() => {
            let other = rng.pick_ref(others);
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = rng.small(other.len() - from);
                input.splice(at..at, other[from..from + n].iter().copied());
            }
        }
        // truncate
        10 if len > 0 => input.truncate(rng.below(len)),
        // replace a run of digits with an edge number
        11 => {
            if let Some((from, to)) = digit_run(input, at) {
                input.splice(from..to, rng.pick(NUMBERS).iter().copied());
            }
        }
        // copy a range over another place
        12 if len > 1 => {
            let from = rng.below(len);
            let n = rng.small(len - from);
            let piece = input[from..from + n].to_vec();
            let to = rng.below(len);
            let end = (to + n).min(len);
            input.splice(to..end, piece);
        }
        _ => {
            let t = token(rng, dictionary);
            input.splice(at..at, t.iter().copied());
        }
    }
}

/// The first run of ASCII digits at or after `from` (wrapping to the start).
fn digit_run(input: &[u8], from: usize) -> Option<(usize, usize)> {
    let start = input[from.min(input.len())..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|i| i + from.min(input.len()))
        .or_else(|| input.iter().position(u8::is_ascii_digit))?;
    let end = input[start..]
        .iter()
        .position(|b| !b.is_ascii_digit())
        .map_or(input.len(), |i| i + start);
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_respect_the_length_bound_and_change_inputs() {
        let mut rng = Rng::new(3);
        let seed = br#"{"status":"success","data":[1,2,3]}"#.to_vec();
        let mut changed = 0;
        for _ in 0..10_000 {
            let mut input = seed.clone();
            mutate(
                &mut rng,
                &mut input,
                &[b"status"],
                std::slice::from_ref(&seed),
                64,
            );
            assert!(input.len() <= 64);
            changed += usize::from(input != seed);
        }
        assert!(changed > 9_000, "only {changed} of 10 000 mutants differ");
    }

    #[test]
    fn empty_inputs_grow() {
        let mut rng = Rng::new(5);
        let mut grew = false;
        for _ in 0..100 {
            let mut input = Vec::new();
            mutate(&mut rng, &mut input, &[], &[], 1024);
            grew |= !input.is_empty();
        }
        assert!(grew);
    }

    #[test]
    fn digit_runs_are_found_from_any_position() {
        assert_eq!(digit_run(b"ab12cd345", 0), Some((2, 4)));
        assert_eq!(digit_run(b"ab12cd345", 5), Some((6, 9)));
        assert_eq!(digit_run(b"ab12cd", 5), Some((2, 4)));
        assert_eq!(digit_run(b"abc", 1), None);
    }
}

//! Protobuf wire primitives for the hand-written OTLP encoder: tags, varints, fixed-width
//! scalars, strings and length-delimited messages written in one pass (a nested message
//! reserves one length byte and its body is moved along only when the length needs more).
//! Every function writes its field unconditionally; leaving out proto3 defaults is the
//! caller's choice, since fields inside a `oneof` must be written even when zero.

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

#[inline]
fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Bytes the varint of `v` takes.
#[inline]
pub fn varint_len(v: u64) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        // One byte per started group of 7 bits.
        _ => (64 - v.leading_zeros() as usize).div_ceil(7),
    }
}

#[inline]
fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from((field << 3) | wire));
}

/// A varint field (uint32, uint64, int64 as two's complement, enum).
#[inline]
pub fn uint(buf: &mut Vec<u8>, field: u32, v: u64) {
    tag(buf, field, VARINT);
    varint(buf, v);
}

/// A fixed64 field (also `double`, as its bits).
#[inline]
pub fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    tag(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A fixed32 field.
#[inline]
pub fn fixed32(buf: &mut Vec<u8>, field: u32, v: u32) {
    tag(buf, field, FIXED32);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A string or bytes field.
#[inline]
pub fn bytes(buf: &mut Vec<u8>, field: u32, v: &[u8]) {
    tag(buf, field, LEN);
    varint(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

/// Bytes a length-delimited field of `len` bytes takes, tag and length included.
#[inline]
pub fn header_len(field: u32, len: usize) -> usize {
    varint_len(u64::from(field << 3)) + varint_len(len as u64) + len
}

/// The tag and length of a length-delimited field whose `len` bytes follow.
#[inline]
pub fn header(buf: &mut Vec<u8>, field: u32, len: usize) {
    tag(buf, field, LEN);
    varint(buf, len as u64);
}

/// Starts an embedded message; close it with [`end`] and the position returned.
#[must_use = "close the message with wire::end"]
pub fn begin(buf: &mut Vec<u8>, field: u32) -> usize {
    tag(buf, field, LEN);
    buf.push(0);
    buf.len()
}

/// Starts an embedded message expected to take 128 to 16 383 bytes (a span, a log
/// record), reserving the two bytes its length then takes; close it with [`end_2`].
#[must_use = "close the message with wire::end_2"]
pub fn begin_2(buf: &mut Vec<u8>, field: u32) -> usize {
    tag(buf, field, LEN);
    buf.extend_from_slice(&[0, 0]);
    buf.len()
}

/// Closes a message [`begin_2`] started: writes its length into the two bytes reserved,
/// moving the body only when the length takes one byte or more than two.
pub fn end_2(buf: &mut Vec<u8>, body: usize) {
    let len = buf.len() - body;
    if (0x80..0x4000).contains(&len) {
        buf[body - 2] = (len as u8) | 0x80;
        buf[body - 1] = (len >> 7) as u8;
        return;
    }
    // Rare: hand the body to `end` as if one length byte had been reserved.
    buf.remove(body - 1);
    end(buf, body - 1);
}

/// Closes the message whose body starts at `body` (what [`begin`] returned): writes its
/// length, moving the body along when the length needs more than one byte.
pub fn end(buf: &mut Vec<u8>, body: usize) {
    let len = buf.len() - body;
    let n = varint_len(len as u64);
    if n > 1 {
        let old = buf.len();
        buf.resize(old + n - 1, 0);
        buf.copy_within(body..old, body + n - 1);
    }
    let mut at = body - 1;
    let mut v = len as u64;
    while v >= 0x80 {
        buf[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    buf[at] = v as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_encoding() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 21, u64::MAX] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn nested_messages_of_any_length_round_trip() {
        for (len, two) in [0usize, 1, 127, 128, 300, 16_383, 16_384, 20_000, 3_000_000]
            .into_iter()
            .flat_map(|len| [(len, false), (len, true)])
        {
            let mut b = vec![0xaa];
            if two {
                let at = begin_2(&mut b, 2);
                b.extend(std::iter::repeat_n(7u8, len));
                end_2(&mut b, at);
            } else {
                let at = begin(&mut b, 2);
                b.extend(std::iter::repeat_n(7u8, len));
                end(&mut b, at);
            }
            b.push(0xbb);
            let mut expect = vec![0xaa, 0x12];
            varint(&mut expect, len as u64);
            expect.extend(std::iter::repeat_n(7u8, len));
            expect.push(0xbb);
            assert_eq!(b, expect, "{len} (two length bytes reserved: {two})");
        }
    }
}

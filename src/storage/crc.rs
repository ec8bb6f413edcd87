//! CRC32C of a record: the same checksum as the `crc32c` crate, computed faster for the short
//! inputs a record is (a 100-byte event's body is about 140 bytes).
//!
//! Why: every produced event's record is checksummed once as it is encoded, and once more as
//! it is read back for a catch-up; at 4 connections x 64 events of 100 B that was about 300 of
//! the server's 3,200 user-space instructions per event (BENCHMARKS.md, issue 13 session 11).
//! The crate aligns its input first, feeding up to 7 leading and 7 trailing bytes to the CPU's
//! CRC instruction one byte at a time (each a 3-cycle step of one dependency chain); below
//! three of its 256-byte blocks it has no other speed-up. Here the whole input goes in 8-byte
//! words from unaligned loads (as fast on x86-64 as aligned ones) and the remainder of at most
//! 7 bytes in at most three steps (4, 2, 1 bytes). Longer inputs, where the crate's three
//! interleaved chains pay off, and CPUs without SSE 4.2 go to the crate.

/// Inputs of this many bytes or more go to the crate (three of its `SHORT` blocks of 256
/// bytes: the length from which it runs three chains at once).
const CRATE_FROM: usize = 3 * 256;

/// Inputs shorter than this (a namespace, a `.nsx` list of one record) are fed a word at a
/// time without `chunks_exact`'s set-up.
#[cfg(target_arch = "x86_64")]
const SHORT_BELOW: usize = 32;

/// `crc32c::crc32c_append(crc, data)`: the CRC32C of `data` continuing from `crc`.
pub(crate) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        if data.len() < CRATE_FROM && std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU has SSE 4.2, checked just above (the check is a cached bit).
            return unsafe { words_then_tail(crc, data) };
        }
    }
    crc32c::crc32c_append(crc, data)
}

/// The CRC32C of `data` continuing from `crc`, with the CPU's CRC32 instruction over 8-byte
/// words and then the last 4, 2 and 1 bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
fn words_then_tail(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u16, _mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut state = u64::from(!crc);
    let mut tail = data;
    if data.len() < SHORT_BELOW {
        // Word by word from the front: `chunks_exact`'s unrolled loop and its set-up were
        // about 30 of the 47 instructions of a 20-byte namespace's checksum (issue 14,
        // session 14), but for a record's 140 bytes they are cheaper than this loop.
        while let Some((word, rest)) = tail.split_first_chunk::<8>() {
            state = _mm_crc32_u64(state, u64::from_le_bytes(*word));
            tail = rest;
        }
    } else {
        let mut words = data.chunks_exact(8);
        for word in &mut words {
            // `chunks_exact(8)` yields 8-byte slices.
            state = _mm_crc32_u64(state, u64::from_le_bytes(word.try_into().expect("8 bytes")));
        }
        tail = words.remainder();
    }
    // The instruction's result is 32 bits, zero-extended.
    let mut state = state as u32;
    if let Some((four, rest)) = tail.split_first_chunk::<4>() {
        state = _mm_crc32_u32(state, u32::from_le_bytes(*four));
        tail = rest;
    }
    if let Some((two, rest)) = tail.split_first_chunk::<2>() {
        state = _mm_crc32_u16(state, u16::from_le_bytes(*two));
        tail = rest;
    }
    if let Some(&byte) = tail.first() {
        state = _mm_crc32_u8(state, byte);
    }
    !state
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRng;

    #[test]
    fn every_length_offset_and_seed_gives_the_crates_checksum() {
        let mut rng = SeededRng::new(0x0c0f_fee5);
        let buffer: Vec<u8> = (0..CRATE_FROM + 64).map(|_| rng.next_u64() as u8).collect();
        for start in 0..8 {
            for end in start..buffer.len() {
                let data = &buffer[start..end];
                let seed = rng.next_u64() as u32;
                assert_eq!(
                    crc32c_append(seed, data),
                    crc32c::crc32c_append(seed, data),
                    "bytes {start}..{end} from seed {seed:#x}"
                );
            }
        }
    }

    #[test]
    fn the_check_value_of_the_standard_test_input() {
        // CRC-32C ("Castagnoli") of "123456789" is 0xE3069283 (RFC 3720, appendix B.4).
        assert_eq!(crc32c_append(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_append(0, b""), 0);
    }
}

//! The CRC32C of any byte range of one buffer in about constant time, after one linear pass over
//! the buffer.
//!
//! Why: a journal's or a segment's resync after damage tries every byte position as the start
//! of a record, and a crafted tail can make every fourth position a plausible record of up to
//! 1 MiB (attack9 F5: ~25 s of start-up per damaged MiB, quadratic), or, in a segment, every
//! eighth position one of half the torn tail (attack11: a 6 MB tear of one event took 121 s).
//! Checking each candidate's checksum over its own body costs its length; here it costs at most
//! three table lookups and three carry-less products, so the whole resync stays linear in the
//! damaged bytes.
//!
//! How: CRC32C is linear over GF(2): `crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B)` (zlib's
//! `crc32_combine`). With prefix checksums `P[k] = crc(buf[..k])`, kept at every `RangeCrc::STRIDE`-th
//! byte and finished with at most `STRIDE` bytes of hardware CRC, the checksum of `buf[i..j]`
//! is `P[j] ⊕ P[i]·x^(8(j-i))`. The multiplication by `x^(8n)` uses one table per `SPLIT_BITS`
//! bits of `n` (`LEVELS` of them), for `n` up to `LENGTH_MAX`.

use std::sync::OnceLock;

/// Bits of a length handled by one table.
const SPLIT_BITS: u32 = 11;
/// Tables: a length is split into this many groups of `SPLIT_BITS` bits.
const LEVELS: u32 = 3;
/// The longest range whose checksum can be computed (8 GiB, above the largest record of the
/// journal, 1 MiB, and of a segment, `record::RECORD_BODY_SIZE_MAX`).
pub const LENGTH_MAX: u64 = 1 << (LEVELS * SPLIT_BITS);
/// The CRC32C polynomial, bit-reflected.
const POLY: u32 = 0x82F6_3B78;

/// `a·b mod POLY` in the bit-reflected representation (zlib's `multmodp`).
fn multiply(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    product
}

/// `x^(8n) mod POLY` for `n = i·2^(level·SPLIT_BITS)`, `i` below `2^SPLIT_BITS`, at
/// `[level][i]`.
struct ShiftTables {
    levels: Vec<Vec<u32>>,
}

fn shift_tables() -> &'static ShiftTables {
    static TABLES: OnceLock<ShiftTables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let size = 1usize << SPLIT_BITS;
        // x^0 is the top bit in the reflected representation; x^8 is one byte of zeros.
        let one = 1u32 << 31;
        let mut step = 1u32 << (31 - 8);
        let mut levels = Vec::with_capacity(LEVELS as usize);
        for _ in 0..LEVELS {
            let mut table = Vec::with_capacity(size);
            let mut power = one;
            for _ in 0..size {
                table.push(power);
                power = multiply(power, step);
            }
            // `power` is now `step^(2^SPLIT_BITS)`, the next level's step.
            step = power;
            levels.push(table);
        }
        ShiftTables { levels }
    })
}

/// `crc·x^(8·length)`: the checksum `crc` of some bytes, moved past `length` more bytes (the
/// first half of zlib's `crc32_combine`).
fn shift(crc: u32, length: usize) -> u32 {
    assert!(
        (length as u64) < LENGTH_MAX,
        "a range checksum of {length} bytes is over {LENGTH_MAX}"
    );
    let tables = shift_tables();
    let mask = (1usize << SPLIT_BITS) - 1;
    let mut shifted = crc;
    let mut rest = length;
    for table in &tables.levels {
        let index = rest & mask;
        // x^0 changes nothing: most records are shorter than 2^(2·SPLIT_BITS) bytes.
        if index != 0 {
            shifted = multiply(table[index], shifted);
        }
        rest >>= SPLIT_BITS;
    }
    shifted
}

/// Prefix checksums of one buffer, for the checksum of any of its ranges.
pub struct RangeCrc {
    /// `checkpoints[k]` is the CRC32C of `buf[..k * STRIDE]`.
    checkpoints: Vec<u32>,
}

impl RangeCrc {
    /// Bytes between two kept prefix checksums (a range's checksum runs at most twice this
    /// many bytes through CRC32C).
    pub const STRIDE: usize = 64;

    /// One linear pass over `buf`.
    pub fn new(buf: &[u8]) -> RangeCrc {
        let mut checkpoints = Vec::with_capacity(buf.len() / Self::STRIDE + 1);
        let mut crc = 0;
        checkpoints.push(crc);
        for chunk in buf.chunks_exact(Self::STRIDE) {
            crc = crc32c::crc32c_append(crc, chunk);
            checkpoints.push(crc);
        }
        RangeCrc { checkpoints }
    }

    /// The CRC32C of `buf[..end]`; `buf` is the buffer given to `new`.
    fn prefix(&self, buf: &[u8], end: usize) -> u32 {
        let index = end / Self::STRIDE;
        crc32c::crc32c_append(self.checkpoints[index], &buf[index * Self::STRIDE..end])
    }

    /// The CRC32C of `prefix ‖ buf[range]`, where `prefix_crc` is the CRC32C of `prefix`
    /// (a journal record's checksum covers its size field, then its body). `buf` is the buffer
    /// given to `new`; the range is shorter than `LENGTH_MAX`.
    pub fn append(&self, buf: &[u8], prefix_crc: u32, range: std::ops::Range<usize>) -> u32 {
        let length = range.end - range.start;
        // crc(prefix ‖ B) = crc(prefix)·x^(8|B|) ⊕ crc(B), and crc(B) = P[end] ⊕ P[start]·x^(8|B|).
        shift(prefix_crc ^ self.prefix(buf, range.start), length) ^ self.prefix(buf, range.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SeededRng;

    /// Model test: the range checksum equals hardware CRC32C over the same bytes, for random
    /// buffers, prefixes and ranges, including empty ranges and ranges at both ends.
    #[test]
    fn a_range_checksum_equals_the_checksum_of_the_range() {
        let mut rng = SeededRng::new(0x005e_edf5);
        for round in 0..200 {
            // Past 4 MiB a range's length reaches the third table.
            let size = if round % 50 == 0 {
                9 << 20
            } else if round % 10 == 0 {
                3 << 20
            } else {
                rng.below(5000) as usize
            };
            let buf: Vec<u8> = (0..size).map(|_| rng.below(256) as u8).collect();
            let crcs = RangeCrc::new(&buf);
            for _ in 0..50 {
                let start = rng.below(size as u64 + 1) as usize;
                let end = start + rng.below((size - start) as u64 + 1) as usize;
                let prefix: Vec<u8> = (0..rng.below(9)).map(|_| rng.below(256) as u8).collect();
                let prefix_crc = crc32c::crc32c(&prefix);
                let expected = crc32c::crc32c_append(prefix_crc, &buf[start..end]);
                assert_eq!(
                    crcs.append(&buf, prefix_crc, start..end),
                    expected,
                    "round {round}, range {start}..{end} of {size} bytes, prefix {prefix:?}"
                );
            }
        }
    }
}

//! The one seeded pseudo-random generator of the project (xorshift64*): the engine's dial
//! back-off jitter, the codec's randomized tests, and (included by path, so it is not public
//! API) the integration tests and the cluster simulation. A run reproduces from its seed. Not
//! for anything secret.

/// Advances an xorshift64* state (which must not be 0) and returns the next number.
pub fn next_u64(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// A seeded generator; any seed, 0 included, gives a usable one.
#[derive(Debug, Clone)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        // Spread nearby seeds apart; the state must not be 0.
        SeededRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        next_u64(&mut self.0)
    }

    /// A number in `0..bound`; 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// A position in `0..len`, for indexing; 0 when `len` is 0.
    pub fn index(&mut self, len: usize) -> usize {
        // The result is below `len`, so it fits a usize.
        self.below(len as u64) as usize
    }

    /// True with a probability of `per_thousand` / 1000.
    pub fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
}

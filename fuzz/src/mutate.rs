//! A seeded mutator for the stable smoke run: libFuzzer's simplest mutations (bit flips,
//! interesting bytes and integers, insertions, deletions, repeats, splices with another corpus
//! entry), without coverage feedback. Deterministic: one seed, one sequence of inputs.

/// xorshift64*: small, seeded, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; 0 is remapped).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that make decoders take their edge paths: lengths and counts at type bounds.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX,
];

/// Inputs are kept below this size, like libFuzzer's `-max_len`.
pub const INPUT_BYTES_MAX: usize = 64 << 10;

/// Mutates `input` in place with one to four mutations; `other` is a splice partner.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..=rng.below(4) {
        mutate_once(rng, input, other);
    }
    input.truncate(INPUT_BYTES_MAX);
}

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    let len = input.len();
    match rng.below(9) {
        // Flip one bit.
        0 if len > 0 => {
            let at = rng.below(len);
            input[at] ^= 1 << rng.below(8);
        }
        // Set one byte at random.
        1 if len > 0 => {
            let at = rng.below(len);
            input[at] = rng.next_u64() as u8;
        }
        // Overwrite with an interesting integer, little-endian, 1 to 8 bytes (varints and
        // length prefixes both live here).
        2 if len > 0 => {
            let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
            let width = [1, 2, 4, 8][rng.below(4)];
            let at = rng.below(len);
            for (i, byte) in value.iter().take(width).enumerate() {
                if let Some(slot) = input.get_mut(at + i) {
                    *slot = *byte;
                }
            }
        }
        // Insert random bytes.
        3 => {
            let at = rng.below(len + 1);
            let count = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
            input.splice(at..at, bytes);
        }
        // Delete a range.
        4 if len > 1 => {
            let at = rng.below(len);
            let count = 1 + rng.below((len - at).min(16));
            input.drain(at..at + count);
        }
        // Repeat a range.
        5 if len > 1 => {
            let at = rng.below(len);
            let count = 1 + rng.below((len - at).min(32));
            let copy = input[at..at + count].to_vec();
            let to = rng.below(len + 1);
            input.splice(to..to, copy);
        }
        // Splice in a range of another corpus entry.
        6 if !other.is_empty() => {
            let from = rng.below(other.len());
            let count = 1 + rng.below((other.len() - from).min(64));
            let at = rng.below(len + 1);
            let end = (at + count).min(len);
            input.splice(at..end, other[from..from + count].iter().copied());
        }
        // Truncate.
        7 if len > 1 => input.truncate(rng.below(len)),
        // Flip the mode byte's bits (raw/sealed/relink/choice).
        _ if len > 0 => input[0] = input[0].wrapping_add(1 + rng.below(255) as u8),
        _ => input.push(rng.next_u64() as u8),
    }
}

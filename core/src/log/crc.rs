//! CRC-32C (Castagnoli) a byte at a time, from one 256-entry table built at compile time: the
//! records' checksum in the browser module.
//!
//! Native builds use the `crc32c` crate (SSE 4.2's `crc32` instruction on x86-64, several
//! GB/s). On wasm32 that crate falls back to slicing-by-8, whose eight tables are 8 KiB of
//! data that gzip cannot shrink: about 3% of the shipped module (docs/bench/wasm-size.md).
//! One table is 1 KiB. A byte at a time is slower, but still far faster than the SHA-256 that
//! checks every entry beside it. The tests hold both to the same values.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82F6_3B78;

/// `TABLE[b]`: the CRC register after shifting byte `b` through it.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let mut crc = b as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[b] = crc;
        b += 1;
    }
    table
};

/// The CRC-32C of `crc`'s input followed by `data` (0 for none), as
/// `crc32c::crc32c_append(crc, data)`.
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    let mut register = !crc;
    for &byte in data {
        register = TABLE[((register ^ u32::from(byte)) & 0xff) as usize] ^ (register >> 8);
    }
    !register
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_check_value_of_the_standard() {
        // CRC-32C's catalogued check value: the CRC of the ASCII digits "123456789".
        assert_eq!(crc32c_append(0, b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_append(0, b""), 0);
    }

    proptest! {
        #[test]
        fn equals_the_crate_in_any_pieces(
            first in proptest::collection::vec(any::<u8>(), 0..300),
            second in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let ours = crc32c_append(crc32c_append(0, &first), &second);
            let theirs = crc32c::crc32c_append(crc32c::crc32c(&first), &second);
            prop_assert_eq!(ours, theirs);
        }
    }
}

//! CRC-32 (IEEE, the zlib/PNG polynomial) with one 256-entry table built at
//! compile time. `crc32fast` carries sixteen such tables for speed; in the
//! shipped wasm they cost ~16 KB for a checksum that runs once per frame.

const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

pub fn hash(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_the_standard_check_values() {
        assert_eq!(super::hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::hash(b""), 0);
        assert_eq!(
            super::hash(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }
}

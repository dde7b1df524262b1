//! Re-keying a copied cluster's control file (`global/pg_control`): a fresh
//! system identifier and a fresh mock-authentication nonce, so that no two
//! instances copied from one template share either; and the identifier
//! that the first page of each WAL segment repeats. Pure: bytes in, bytes
//! out; the caller reads and writes the files (and runs `pg_resetwal` when
//! a WAL header is not where it is expected).
//!
//! PostgreSQL 15 cannot set a system identifier itself (`pg_resetwal` has no
//! option for it); PostgreSQL 17's `pg_createsubscriber` changes it the same
//! way: new identifier in `pg_control`, CRC recomputed, then `pg_resetwal`.
//!
//! The layout relied on is the one `ControlFileData` has had since
//! PostgreSQL 10: the system identifier is its first field (8 bytes), the
//! 32-byte mock-authentication nonce directly precedes the CRC-32C that
//! closes the struct, and the CRC covers every byte before it. The CRC's
//! offset is found, not assumed: it is where the stored CRC matches the CRC
//! of the bytes before it.

/// Bytes of the mock-authentication nonce (`MOCK_AUTH_NONCE_LEN`).
pub const NONCE_LEN: usize = 32;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ControlError {
    #[error("pg_control has no valid CRC-32C where one was expected; refusing to re-key it")]
    NoChecksum,
}

/// Where the CRC of the control data lies: the first 4-aligned offset after
/// the identifier and the nonce at which the stored CRC is that of the bytes
/// before it.
fn crc_offset(control: &[u8]) -> Option<usize> {
    (8 + NONCE_LEN..control.len().saturating_sub(3))
        .step_by(4)
        .find(|&at| {
            let stored = u32::from_le_bytes([
                control[at],
                control[at + 1],
                control[at + 2],
                control[at + 3],
            ]);
            CRC32C.checksum(&control[..at]) == stored
        })
}

/// Writes `system_identifier` and `nonce` into `control` and recomputes its CRC.
pub fn rekey(
    control: &mut [u8],
    system_identifier: u64,
    nonce: &[u8; NONCE_LEN],
) -> Result<(), ControlError> {
    let at = crc_offset(control).ok_or(ControlError::NoChecksum)?;
    control[..8].copy_from_slice(&system_identifier.to_le_bytes());
    control[at - NONCE_LEN..at].copy_from_slice(nonce);
    let crc = CRC32C.checksum(&control[..at]);
    control[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// The system identifier recorded in a control file.
pub fn system_identifier(control: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(control.get(..8)?.try_into().ok()?))
}

/// Where a WAL segment's first page (a long page header) records the
/// system identifier: after `xlp_magic`, `xlp_info`, `xlp_tli`,
/// `xlp_pageaddr`, `xlp_rem_len` and padding.
pub const WAL_SYSID_AT: usize = 24;

/// Writes `new` over the system identifier of a WAL segment's first page,
/// if that page records `old` there (page headers carry no checksum);
/// `false`, with nothing changed, when it does not.
pub fn rekey_wal_header(page: &mut [u8], old: u64, new: u64) -> bool {
    let Some(field) = page.get_mut(WAL_SYSID_AT..WAL_SYSID_AT + 8) else {
        return false;
    };
    if *field != old.to_le_bytes() {
        return false;
    }
    field.copy_from_slice(&new.to_le_bytes());
    true
}

/// A fresh system identifier in PostgreSQL's own form: the seconds of
/// `unix_seconds` in the upper half (so it still reads as a creation time),
/// random bits from the caller in the lower half.
pub fn new_system_identifier(unix_seconds: u64, random: u32) -> u64 {
    ((unix_seconds & 0xFFFF_FFFF) << 32) | u64::from(random)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A control file shaped like PostgreSQL's: identifier first, then other
    /// fields, the nonce, the CRC, zero padding to 8 KiB.
    fn control(identifier: u64, nonce: u8) -> Vec<u8> {
        let crc_at = 288;
        let mut c = vec![0u8; 8192];
        c[..8].copy_from_slice(&identifier.to_le_bytes());
        for (i, b) in c[8..crc_at - NONCE_LEN].iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap_or(0);
        }
        c[crc_at - NONCE_LEN..crc_at].fill(nonce);
        let crc = CRC32C.checksum(&c[..crc_at]);
        c[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        c
    }

    #[test]
    fn rekeying_changes_identifier_and_nonce_and_keeps_the_crc_valid() {
        let mut c = control(7, 0xAA);
        let before = c.clone();
        rekey(&mut c, 42, &[0x55; NONCE_LEN]).unwrap();
        assert_eq!(system_identifier(&c), Some(42));
        assert_eq!(&c[288 - NONCE_LEN..288], &[0x55; NONCE_LEN]);
        assert_eq!(crc_offset(&c), Some(288), "the CRC matches the new bytes");
        // Everything else is as it was.
        assert_eq!(c[8..288 - NONCE_LEN], before[8..288 - NONCE_LEN]);
        assert_eq!(c[292..], before[292..]);
    }

    #[test]
    fn a_file_without_a_valid_crc_is_refused() {
        let mut c = control(7, 0xAA);
        c[100] ^= 1;
        assert_eq!(
            rekey(&mut c, 42, &[0; NONCE_LEN]),
            Err(ControlError::NoChecksum)
        );
    }

    #[test]
    fn a_wal_header_is_rekeyed_only_where_it_records_the_old_identifier() {
        let mut page = vec![0u8; 40];
        page[WAL_SYSID_AT..WAL_SYSID_AT + 8].copy_from_slice(&7u64.to_le_bytes());
        assert!(
            !rekey_wal_header(&mut page, 8, 42),
            "another identifier: untouched"
        );
        assert_eq!(page[WAL_SYSID_AT], 7);
        assert!(rekey_wal_header(&mut page, 7, 42));
        assert_eq!(page[WAL_SYSID_AT..WAL_SYSID_AT + 8], 42u64.to_le_bytes());
        assert!(!rekey_wal_header(&mut [0u8; 10], 0, 42), "too short");
    }

    #[test]
    fn identifiers_carry_the_time_above_the_random_bits() {
        let id = new_system_identifier(1_800_000_000, 0xDEAD_BEEF);
        assert_eq!(id >> 32, 1_800_000_000);
        assert_eq!(id & 0xFFFF_FFFF, 0xDEAD_BEEF);
    }
}

//! The part of [crc-fast](https://crates.io/crates/crc-fast)'s API that `aws-smithy-checksums`
//! (the AWS SDK's S3 checksums) calls: [`Digest`] and [`checksum`] for CRC-32 (ISO-HDLC),
//! CRC-32C (iSCSI) and CRC-64/NVME.
//!
//! Why it exists: crc-fast dispatches every algorithm it knows through one runtime `match`,
//! so a binary that names one CRC links the software tables of all forty-nine, 664 KB that
//! zip to 588 KB: a fifth of every hookgate function's zip, fetched at each cold start, for
//! checksums its S3 calls compute rarely (uploads carry SHA-256; a download is checked with
//! the algorithm S3 stored). Here each algorithm is a `crc` crate constant whose 256-entry
//! table is built at compile time, and only the three S3 names are linked. The workspace's
//! `[patch.crates-io]` puts this crate in crc-fast's place; the tests below hold it to the
//! catalogue's check values and to crc-fast's own behaviour (state across updates,
//! `finalize` leaving the digest usable), and the S3 integration tests hold it to the wire.
//!
//! Byte-at-a-time tables run at a few hundred MB/s: ample for the bodies and files hookgate
//! stores (Lambda caps a request at 6 MB), and about 4 KB instead of 664 KB.

use std::fmt;

use crc::{Crc, Table};

static CRC_32_ISO_HDLC: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&crc::CRC_32_ISO_HDLC);
static CRC_32_ISCSI: Crc<u32, Table<1>> = Crc::<u32, Table<1>>::new(&crc::CRC_32_ISCSI);
static CRC_64_NVME: Crc<u64, Table<1>> = Crc::<u64, Table<1>>::new(&crc::CRC_64_NVME);

/// The CRCs this crate computes: those the AWS SDK names (crc-fast's enum has more).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrcAlgorithm {
    /// CRC-32 as zip, Ethernet and S3's `CRC32` compute it.
    Crc32IsoHdlc,
    /// CRC-32C, S3's `CRC32C`.
    Crc32Iscsi,
    /// CRC-64/NVME, S3's `CRC64NVME`.
    Crc64Nvme,
}

/// A running CRC: [`update`](Self::update) with each piece, then [`finalize`](Self::finalize),
/// which (as crc-fast's) leaves the digest as it was, so more may be added after.
#[derive(Clone)]
pub struct Digest {
    running: Running,
}

#[derive(Clone)]
enum Running {
    Crc32(crc::Digest<'static, u32, Table<1>>),
    Crc64(crc::Digest<'static, u64, Table<1>>),
}

impl Digest {
    pub fn new(algorithm: CrcAlgorithm) -> Self {
        let running = match algorithm {
            CrcAlgorithm::Crc32IsoHdlc => Running::Crc32(CRC_32_ISO_HDLC.digest()),
            CrcAlgorithm::Crc32Iscsi => Running::Crc32(CRC_32_ISCSI.digest()),
            CrcAlgorithm::Crc64Nvme => Running::Crc64(CRC_64_NVME.digest()),
        };
        Self { running }
    }

    pub fn update(&mut self, data: &[u8]) {
        match &mut self.running {
            Running::Crc32(digest) => digest.update(data),
            Running::Crc64(digest) => digest.update(data),
        }
    }

    /// The CRC of everything added so far, widened to 64 bits for the 32-bit CRCs.
    pub fn finalize(&self) -> u64 {
        match &self.running {
            Running::Crc32(digest) => u64::from(digest.clone().finalize()),
            Running::Crc64(digest) => digest.clone().finalize(),
        }
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = match self.running {
            Running::Crc32(_) => 32,
            Running::Crc64(_) => 64,
        };
        formatter
            .debug_struct("Digest")
            .field("width", &width)
            .field("crc_so_far", &self.finalize())
            .finish()
    }
}

/// The CRC of `data` in one call.
pub fn checksum(algorithm: CrcAlgorithm, data: &[u8]) -> u64 {
    let mut digest = Digest::new(algorithm);
    digest.update(data);
    digest.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalogue's check values: each CRC of the nine ASCII digits "123456789"
    /// (reveng.sourceforge.io/crc-catalogue, which crc-fast's tests use too).
    #[test]
    fn each_algorithm_gives_the_catalogues_check_value() {
        assert_eq!(
            checksum(CrcAlgorithm::Crc32IsoHdlc, b"123456789"),
            0xCBF4_3926
        );
        assert_eq!(
            checksum(CrcAlgorithm::Crc32Iscsi, b"123456789"),
            0xE306_9283
        );
        assert_eq!(
            checksum(CrcAlgorithm::Crc64Nvme, b"123456789"),
            0xAE8B_1486_0A79_9888
        );
    }

    #[test]
    fn a_digest_fed_in_pieces_equals_one_fed_at_once() {
        let data: Vec<u8> = (0..=255u8).cycle().take(70_001).collect();
        for algorithm in [
            CrcAlgorithm::Crc32IsoHdlc,
            CrcAlgorithm::Crc32Iscsi,
            CrcAlgorithm::Crc64Nvme,
        ] {
            let mut digest = Digest::new(algorithm);
            for piece in data.chunks(997) {
                digest.update(piece);
            }
            assert_eq!(
                digest.finalize(),
                checksum(algorithm, &data),
                "{algorithm:?}"
            );
        }
    }

    #[test]
    fn finalize_leaves_the_digest_running() {
        let mut digest = Digest::new(CrcAlgorithm::Crc32IsoHdlc);
        digest.update(b"1234");
        let _ = digest.finalize();
        digest.update(b"56789");
        assert_eq!(digest.finalize(), 0xCBF4_3926);
    }

    #[test]
    fn the_crc_of_nothing_is_each_algorithms_initial_value_finalised() {
        assert_eq!(checksum(CrcAlgorithm::Crc32IsoHdlc, b""), 0);
        assert_eq!(checksum(CrcAlgorithm::Crc32Iscsi, b""), 0);
        assert_eq!(checksum(CrcAlgorithm::Crc64Nvme, b""), 0);
    }
}

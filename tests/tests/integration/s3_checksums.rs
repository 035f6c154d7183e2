//! The S3 checksums the SDK computes with `patches/crc-fast` (which stands in for crates.io's
//! crc-fast, see the workspace's `[patch.crates-io]`), on the wire: each CRC S3 offers, sent
//! with an upload, is the catalogue's value for the same bytes, and a download checked with
//! it comes back whole.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use base64::Engine;
use hookgate_tests::emulator;

/// The CRC check values of "123456789" (reveng.sourceforge.io/crc-catalogue), big-endian as
/// S3 carries them, base64: independent of any implementation in this build.
fn catalogue_value(algorithm: &ChecksumAlgorithm) -> String {
    let bytes = match algorithm {
        ChecksumAlgorithm::Crc32 => 0xCBF4_3926u32.to_be_bytes().to_vec(),
        ChecksumAlgorithm::Crc32C => 0xE306_9283u32.to_be_bytes().to_vec(),
        ChecksumAlgorithm::Crc64Nvme => 0xAE8B_1486_0A79_9888u64.to_be_bytes().to_vec(),
        other => panic!("no catalogue value for {other:?}"),
    };
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn each_crc_the_sdk_sends_to_s3_is_the_catalogues_value_and_downloads_check_against_it() {
    let client = emulator::s3_client().await;
    let bucket = emulator::create_bucket(&client, "checksums")
        .await
        .expect("the emulator creates a bucket");
    for algorithm in [
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc64Nvme,
    ] {
        let key = format!("check/{}", algorithm.as_str());
        let put = client
            .put_object()
            .bucket(&bucket)
            .key(&key)
            .body(ByteStream::from_static(b"123456789"))
            .checksum_algorithm(algorithm.clone())
            .send()
            .await
            .unwrap_or_else(|error| panic!("PutObject with {algorithm:?}: {error:?}"));
        let sent = match algorithm {
            ChecksumAlgorithm::Crc32 => put.checksum_crc32(),
            ChecksumAlgorithm::Crc32C => put.checksum_crc32_c(),
            _ => put.checksum_crc64_nvme(),
        };
        assert_eq!(
            sent,
            Some(catalogue_value(&algorithm).as_str()),
            "the {algorithm:?} S3 received"
        );

        let got = client
            .get_object()
            .bucket(&bucket)
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap_or_else(|error| panic!("GetObject with {algorithm:?}: {error:?}"));
        let body = got
            .body
            .collect()
            .await
            .expect("a download whose checksum matches is read whole");
        assert_eq!(body.into_bytes().as_ref(), b"123456789");
    }
}

#[tokio::test]
async fn a_download_whose_bytes_do_not_match_the_stored_crc_is_refused() {
    let client = emulator::s3_client().await;
    let bucket = emulator::create_bucket(&client, "checksums")
        .await
        .expect("the emulator creates a bucket");
    // A CRC-32 that belongs to other bytes, stored as given (the emulator keeps a sent
    // checksum without recomputing it), so that the check on the way down must catch it.
    client
        .put_object()
        .bucket(&bucket)
        .key("corrupt")
        .body(ByteStream::from_static(b"123456789"))
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .checksum_crc32(catalogue_value(&ChecksumAlgorithm::Crc32C))
        .send()
        .await
        .expect("the emulator stores the object");
    let outcome = match client
        .get_object()
        .bucket(&bucket)
        .key("corrupt")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
    {
        Ok(got) => got
            .body
            .collect()
            .await
            .map(|_| ())
            .map_err(|error| format!("{error:?}")),
        Err(error) => Err(format!("{error:?}")),
    };
    let error = outcome.expect_err("a body that does not match its CRC-32 is refused");
    assert!(error.to_lowercase().contains("checksum"), "{error}");
}

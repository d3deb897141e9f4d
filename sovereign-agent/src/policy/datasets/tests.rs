//! The datasets loaded from the real files in testdata/.
use super::*;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(name)
}

#[test]
fn loads_every_provider_file_by_content() {
    for (file, kind, min_prefixes) in [
        ("cloud-ranges/aws-ip-ranges.json", DatasetKind::Aws, 13_000),
        (
            "cloud-ranges/microsoft-azure-ip-ranges.json",
            DatasetKind::Azure,
            90_000,
        ),
        (
            "cloud-ranges/google-cloud-ip-ranges.json",
            DatasetKind::Gcp,
            700,
        ),
        (
            "cloud-ranges/oracle-cloud-ip-ranges.json",
            DatasetKind::Oracle,
            800,
        ),
        (
            "geoip/GeoLite2-Country-Test.mmdb",
            DatasetKind::Country,
            200,
        ),
        ("geoip/GeoLite2-ASN-Test.mmdb", DatasetKind::Asn, 300),
    ] {
        let l = load(&testdata(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(l.info.kind, kind, "{file}");
        assert!(
            l.info.prefixes >= min_prefixes,
            "{file}: {}",
            l.info.prefixes
        );
    }
    let aws = load(&testdata("cloud-ranges/aws-ip-ranges.json")).unwrap();
    assert_eq!(
        aws.info.version,
        "syncToken 1753388594 (2025-07-24-20-23-14)"
    );
    assert_eq!(aws.info.prefixes, 8_971 + 4_373);
}

#[test]
fn corrupt_databases_are_clear_errors_not_hangs_or_panics() {
    for file in [
        "geoip/MaxMind-DB-test-broken-pointers-24.mmdb",
        "geoip/MaxMind-DB-test-broken-search-tree-24.mmdb",
    ] {
        let err = load(&testdata(file))
            .err()
            .unwrap_or_else(|| panic!("{file} loaded"))
            .to_string();
        assert!(err.contains(file.rsplit('/').next().unwrap()), "{err}");
        assert!(
            err.contains("corrupt MaxMind database") || err.contains("neither a country"),
            "{err}"
        );
    }
}

fn temp(name: &str, content: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sa-datasets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

#[test]
fn malformed_json_names_file_line_and_column() {
    let p = temp(
        "aws-bad.json",
        b"{\"syncToken\": \"1\", \"createDate\": \"x\",\n \"prefixes\": [ {\"ip_prefix\": }\n]}",
    );
    let err = load(&p).err().unwrap().to_string();
    assert!(
        err.contains("aws-bad.json") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn truncated_file_is_an_error() {
    let full = std::fs::read(testdata("cloud-ranges/google-cloud-ip-ranges.json")).unwrap();
    let p = temp("gcp-truncated.json", &full[..full.len() / 2]);
    let err = load(&p).err().unwrap().to_string();
    assert!(
        err.contains("gcp-truncated.json") && err.contains("malformed JSON"),
        "{err}"
    );
}

#[test]
fn an_invalid_prefix_names_its_place() {
    let p = temp(
        "oracle-bad.json",
        br#"{"last_updated_timestamp": "t", "regions": [{"region": "eu-frankfurt-1", "cidrs": [{"cidr": "130.61.0.0/16", "tags": ["OCI"]}, {"cidr": "130.61.0.0/33", "tags": ["OCI"]}]}]}"#,
    );
    let err = load(&p).err().unwrap().to_string();
    assert!(
        err.contains("regions[0] (eu-frankfurt-1).cidrs[1]") && err.contains("130.61.0.0/33"),
        "{err}"
    );
}

#[test]
fn unrecognised_files_are_skipped_in_a_directory_but_errors_elsewhere() {
    let p = temp("README.txt", b"not a dataset");
    assert!(matches!(load(&p), Err(DatasetError::Unrecognised { .. })));
    let loaded = match load_dir(&testdata("geoip")) {
        Ok(_) => panic!("the corrupt databases must fail the directory"),
        Err(e) => e.to_string(),
    };
    // The geoip folder holds the deliberately corrupt databases too.
    assert!(loaded.contains("corrupt MaxMind database"), "{loaded}");
    let all = load_dir(&testdata("cloud-ranges")).unwrap();
    let mut kinds: Vec<_> = all.iter().map(|l| l.info.kind.key()).collect();
    kinds.sort();
    assert_eq!(kinds, ["aws", "azure", "gcp", "oracle"]);
}

//! `sovereign-agent datasets update` against a local HTTP server standing in for the
//! providers (or an internal mirror), with the real provider files as the starting point.
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde_json::Value;
mod common;
use common::run_agent;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata")
        .join(name)
}

type Routes = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// A minimal HTTP/1.1 server: GET path -> (status, body).
fn http_server() -> (String, Routes) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let routes: Routes = Arc::default();
    let served = routes.clone();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let request = String::from_utf8_lossy(&buf);
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = served
                .lock()
                .unwrap()
                .get(&path)
                .cloned()
                .unwrap_or((404, b"not found".to_vec()));
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    (base, routes)
}

fn update(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["datasets".as_ref(), "update".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run_agent(all)
}

#[test]
fn update_replaces_validated_files_and_reports_changes_per_region() {
    let dir = std::env::temp_dir().join(format!("sa-datasets-update-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let original = std::fs::read(testdata("cloud-ranges/aws-ip-ranges.json")).unwrap();
    let target = dir.join("ip-ranges.json");
    std::fs::write(&target, &original).unwrap();

    // The next AWS file: the first three IPv4 prefixes gone, one new eu-central-1 prefix.
    let mut v: Value = serde_json::from_slice(&original).unwrap();
    let prefixes = v["prefixes"].as_array_mut().unwrap();
    let removed: Vec<Value> = prefixes.drain(..3).collect();
    prefixes.push(serde_json::json!({
        "ip_prefix": "198.51.100.0/24", "region": "eu-central-1",
        "service": "EC2", "network_border_group": "eu-central-1"
    }));
    v["syncToken"] = "1753999999".into();
    // A removed pair only counts if no other entry keeps that prefix in that region.
    let still = |r: &Value| {
        v["prefixes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["ip_prefix"] == r["ip_prefix"] && p["region"] == r["region"])
    };
    let expect_removed = removed.iter().filter(|r| !still(r)).count();
    let next = serde_json::to_vec(&v).unwrap();

    let (base, routes) = http_server();
    routes
        .lock()
        .unwrap()
        .insert("/aws.json".into(), (200, next.clone()));
    let url = format!("aws={base}/aws.json");
    let (code, stdout, stderr) = update(&dir, &["--url", &url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "aws: syncToken 1753388594 (2025-07-24-20-23-14) -> syncToken 1753999999 (2025-07-24-20-23-14): +1 -{expect_removed} prefixes"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("  eu-central-1: +1 -0"), "{stdout}");
    for r in removed.iter().filter(|r| !still(r)) {
        assert!(
            stdout.contains(&format!("  {}: ", r["region"].as_str().unwrap())),
            "{stdout}"
        );
    }
    assert_eq!(
        std::fs::read(&target).unwrap(),
        next,
        "the file was replaced"
    );
    assert!(!dir.join("ip-ranges.json.tmp").exists());

    // Unchanged the second time.
    let (code, stdout, _) = update(&dir, &["--url", &url]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("aws: unchanged (syncToken 1753999999"),
        "{stdout}"
    );

    // A truncated download and a 404 never replace the good file.
    routes
        .lock()
        .unwrap()
        .insert("/aws.json".into(), (200, next[..next.len() / 3].to_vec()));
    let (code, _, stderr) = update(&dir, &["--url", &url]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("aws: not updated") && stderr.contains("malformed JSON"),
        "{stderr}"
    );
    routes.lock().unwrap().remove("/aws.json");
    let (code, _, stderr) = update(&dir, &["--url", &url]);
    assert_eq!(code, 1);
    assert!(stderr.contains("404"), "{stderr}");
    assert_eq!(
        std::fs::read(&target).unwrap(),
        next,
        "the good file is kept"
    );
    assert!(!dir.join("ip-ranges.json.tmp").exists());

    // A provider not yet in the directory; the wrong kind of file is refused.
    let gcp = std::fs::read(testdata("cloud-ranges/google-cloud-ip-ranges.json")).unwrap();
    routes
        .lock()
        .unwrap()
        .insert("/gcp.json".into(), (200, gcp.clone()));
    routes
        .lock()
        .unwrap()
        .insert("/oracle.json".into(), (200, gcp.clone()));
    let (code, stdout, stderr) = update(
        &dir,
        &[
            "--provider",
            "gcp",
            "--provider",
            "oracle",
            "--url",
            &format!("gcp={base}/gcp.json"),
            "--url",
            &format!("oracle={base}/oracle.json"),
        ],
    );
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("gcp: new file") && stdout.contains(", 782 prefixes)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("oracle: not updated") && stderr.contains("not a Oracle Cloud"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.join("google-cloud-ip-ranges.json")).unwrap(),
        gcp
    );
    assert!(!dir.join("oracle-cloud-ip-ranges.json").exists());
    std::fs::remove_dir_all(&dir).ok();
}

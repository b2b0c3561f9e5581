//! Attacks on the node's connection and request bounds, over real sockets. The attacker speaks
//! from 127.0.0.1; a bystander from 127.0.0.2 (Linux routes all of 127/8 to loopback) must keep
//! being served.

use crate::api::{error_code, start, start_with, TestNode};
use reqwest::blocking::Client;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

fn bystander() -> Client {
    Client::builder()
        .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn addr(n: &TestNode) -> String {
    n.url.trim_start_matches("http://").to_string()
}

/// Whether the node closed `stream` within `within` (EOF or reset), reading whatever it sent.
fn closed_by_node(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut sink = Vec::new();
    match stream.read_to_end(&mut sink) {
        Ok(_) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

#[test]
fn slowloris_connections_are_cut_and_others_are_still_served() {
    let n = start_with(|c| {
        c.header_timeout_secs = 1;
        c.client_connections = 32;
        c.max_connections = 64;
    });
    // 200 connections that each send half a request head and then nothing.
    let mut attack: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(addr(&n)).ok())
        .collect();
    for s in &mut attack {
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: verity\r\n");
    }
    // While they hang, a different client is served.
    let health = bystander().get(format!("{}/health", n.url)).send().unwrap();
    assert_eq!(health.status(), 200);
    // Past the header timeout the node has closed every one of them.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, s) in attack.iter_mut().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            closed_by_node(s, left.max(Duration::from_millis(10))),
            "connection {i} is still open after the header timeout"
        );
    }
    // And the attacker's address is served again once it stops.
    let (status, _) = n.get("/health");
    assert_eq!(status, 200);
}

/// Starts a publish whose body never finishes: an expensive request held in flight.
fn stalled_upload(n: &TestNode) -> TcpStream {
    let mut s = TcpStream::connect(addr(n)).unwrap();
    let head = "POST /v1/models HTTP/1.1\r\nHost: verity\r\nContent-Type: multipart/form-data; \
         boundary=XX\r\nContent-Length: 100000000\r\n\r\n--XX\r\nContent-Disposition: form-data; \
         name=\"model\"; filename=\"m\"\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&[7u8; 4096]).unwrap();
    s
}

#[test]
fn one_client_gets_a_share_of_expensive_requests_and_slow_uploads_time_out() {
    let n = start_with(|c| {
        c.client_concurrency = 2;
        c.request_timeout_secs = 2;
    });
    let mut held = [stalled_upload(&n), stalled_upload(&n)];
    // Let both reach their handlers.
    std::thread::sleep(Duration::from_millis(300));
    let (status, body) = n.infer_raw("{}".into());
    assert_eq!((status, error_code(&body)), (429, "rate_limit_exceeded"));
    let refused = n
        .http
        .post(format!("{}/v1/infer", n.url))
        .body("{}")
        .send()
        .unwrap();
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    // Another client still gets its own answer (a refusal of its empty body, not of its share).
    let other = bystander()
        .post(format!("{}/v1/infer", n.url))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .unwrap();
    assert_ne!(other.status(), 429);
    // The stalled uploads are ended by the request deadline, with a 408, and leave no file.
    for s in &mut held {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = [0u8; 12];
        s.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 408");
    }
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let (status, body) = n.infer_raw("{}".into());
    assert_ne!(status, 429, "{body}");
    let tmp = n.dir.path().join("tmp");
    let left = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "a stalled upload left files in {}", tmp.display());
}

#[test]
fn publishing_is_rate_limited_per_client() {
    let n = start_with(|c| c.publishes_per_hour = 2);
    for (name, model) in [("a", "digits_mlp.onnx"), ("b", "digits_cnn.onnx")] {
        let (status, body) = n.publish(name, model, None);
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = n.publish("c", "ops_mix.onnx", None);
    assert_eq!((status, error_code(&body)), (429, "rate_limit_exceeded"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("per hour"),
        "{body}"
    );
}

#[test]
fn only_allowed_publishers_publish_when_the_node_names_them() {
    let allowed = verity_core::NodeKey::from_seed([1; 32]).public();
    let n = start_with(|c| c.publishers = vec![allowed]);
    let (status, body) = n.publish("a", "digits_mlp.onnx", None);
    assert_eq!((status, error_code(&body)), (403, "publisher_not_allowed"));
    assert_eq!(n.get("/v1/models").1["data"].as_array().unwrap().len(), 0);
}

#[test]
fn the_model_store_has_a_disk_quota_and_a_refusal_leaves_nothing() {
    let model = crate::api::fixture("digits_mlp.onnx");
    let n = start_with(|c| c.max_store_bytes = model.len() as u64 + 1000);
    let (status, body) = n.publish("a", "digits_mlp.onnx", None);
    assert_eq!(status, 201, "{body}");
    let (status, body) = n.publish("b", "digits_cnn.onnx", None);
    assert_eq!((status, error_code(&body)), (507, "store_full"));
    let tmp = n.dir.path().join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

/// Sends a request over a raw socket from another thread (the node may answer and close before
/// the body is all sent, which an HTTP client reports as an error) and reads the answer.
fn post_raw(n: &TestNode, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let mut s = TcpStream::connect(addr(n)).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: verity\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut writer = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    drop(s);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&answer);
    let status = text[9..12].parse().unwrap();
    let json = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn an_oversized_calibration_part_is_refused_before_it_is_held() {
    let n = start();
    let model = crate::api::fixture("digits_mlp.onnx");
    let calibration = vec![b' '; 33 << 20];
    let meta = n.meta("a", "1.0", &model, Some(&calibration));
    let mut body = Vec::new();
    let mut part = |name: &str, bytes: &[u8]| {
        body.extend_from_slice(
            format!(
                "--XX\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    };
    part("meta", &serde_json::to_vec(&meta).unwrap());
    part("model", &model);
    part("calibration", &calibration);
    body.extend_from_slice(b"--XX--\r\n");
    let (status, body) = post_raw(&n, "/v1/models", "multipart/form-data; boundary=XX", body);
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("calibration"),
        "{body}"
    );
}

/// digits_mlp with its logits plus a ConstantOfShape of [65536, 65536, 16] f32 zeros (256 GiB
/// asked for by 24 bytes of shape), the kind of float graph rten would run unbounded.
fn float_model_asking_for_terabytes() -> Vec<u8> {
    use prost::Message;
    use verity_engine::proto::*;
    let mut m = ModelProto::decode(crate::api::fixture("digits_mlp.onnx").as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    let out = g.output[0].name.clone();
    let last = g.node.iter_mut().find(|n| n.output[0] == out).unwrap();
    last.output[0] = "pre".into();
    g.initializer.push(TensorProto {
        name: "huge".into(),
        dims: vec![3],
        data_type: data_type::INT64,
        int64_data: vec![65536, 65536, 16],
        ..Default::default()
    });
    g.node.push(NodeProto {
        input: vec!["huge".into()],
        output: vec!["big".into()],
        op_type: "ConstantOfShape".into(),
        ..Default::default()
    });
    g.node.push(NodeProto {
        input: vec!["pre".into(), "big".into()],
        output: vec![out],
        op_type: "Add".into(),
        ..Default::default()
    });
    m.encode_to_vec()
}

#[test]
fn a_float_model_whose_memory_cannot_be_bounded_is_refused_by_name() {
    let n = start();
    let bytes = float_model_asking_for_terabytes();
    let meta = n.meta("huge", "1.0", &bytes, None);
    let (status, body) = n.publish_raw(&meta, bytes, None);
    assert_eq!((status, error_code(&body)), (422, "unsupported_operator"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ConstantOfShape"),
        "{body}"
    );
    assert_eq!(n.get("/health").0, 200);
}

#[test]
fn models_above_the_node_cost_limits_are_refused_naming_the_limit() {
    // digits_mlp holds about 550 bytes of f32 values at once; this node allows 256.
    let n = start_with(|c| c.max_inference_bytes = 256);
    let (status, body) = n.publish("mlp", "digits_mlp.onnx", None);
    assert_eq!((status, error_code(&body)), (422, "too_costly"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("above the limit of 256"),
        "{body}"
    );
    let (status, body) = n.publish("mlp", "digits_mlp.onnx", Some("digits_calib_mlp.json"));
    assert_eq!((status, error_code(&body)), (422, "too_costly"));
}

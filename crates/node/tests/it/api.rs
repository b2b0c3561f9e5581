//! The node's HTTP API, driven over real sockets: publishing, errors, inference, replays,
//! receipts, and tampering with every receipt field.

use reqwest::blocking::{multipart, Client};
use serde_json::{json, Value};
use std::path::PathBuf;
use verity_core::manifest::publish_statement;
use verity_core::verify::Expectations;
use verity_core::wire::{InferResponse, PublishMeta, PublishResponse};
use verity_core::{
    verify_receipt, Hash, InferenceRequest, Mode, ModelFormat, ModelId, NodeKey, Receipt, Tensor,
    TensorMap, VerifyError,
};
use verity_node::NodeConfig;

pub(crate) fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures")
            .join(name),
    )
    .unwrap()
}

pub(crate) struct TestNode {
    pub(crate) url: String,
    pub(crate) http: Client,
    pub(crate) key: NodeKey,
    _rt: tokio::runtime::Runtime,
    pub(crate) dir: tempfile::TempDir,
}

pub(crate) fn start_with(f: impl FnOnce(&mut NodeConfig)) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::new(dir.path().to_path_buf(), "127.0.0.1:0".parse().unwrap());
    f(&mut config);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let running = rt.block_on(verity_node::start(config)).unwrap();
    TestNode {
        url: format!("http://{}", running.addr),
        http: Client::new(),
        key: NodeKey::from_seed([9; 32]),
        _rt: rt,
        dir,
    }
}

pub(crate) fn start() -> TestNode {
    start_with(|_| {})
}

impl TestNode {
    pub(crate) fn publish_raw(
        &self,
        meta: &PublishMeta,
        model: Vec<u8>,
        calibration: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let mut form = multipart::Form::new()
            .text("meta", serde_json::to_string(meta).unwrap())
            .part("model", multipart::Part::bytes(model).file_name("m"));
        if let Some(c) = calibration {
            form = form.part("calibration", multipart::Part::bytes(c).file_name("c"));
        }
        let resp = self
            .http
            .post(format!("{}/v1/models", self.url))
            .multipart(form)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    pub(crate) fn meta(
        &self,
        name: &str,
        version: &str,
        model: &[u8],
        calibration: Option<&[u8]>,
    ) -> PublishMeta {
        let id = ModelId::of_bytes(model);
        let ch = calibration.map(|c| Hash::of(verity_core::hash::domain::CALIBRATION, c));
        PublishMeta {
            name: name.into(),
            version: version.into(),
            id,
            size: model.len() as u64,
            calibration_hash: ch,
            publisher: self.key.public(),
            signature: self
                .key
                .sign(&publish_statement(name, version, &id, ch.as_ref()).0),
        }
    }

    pub(crate) fn publish(&self, name: &str, model: &str, calib: Option<&str>) -> (u16, Value) {
        let m = fixture(model);
        let c = calib.map(fixture);
        let meta = self.meta(name, "1.0", &m, c.as_deref());
        self.publish_raw(&meta, m, c)
    }

    fn publish_mlp(&self) -> PublishResponse {
        let (status, body) = self.publish(
            "digits-mlp",
            "digits_mlp.onnx",
            Some("digits_calib_mlp.json"),
        );
        assert_eq!(status, 201, "{body}");
        serde_json::from_value(body).unwrap()
    }

    pub(crate) fn infer_raw(&self, body: String) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/v1/infer", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }

    fn request(&self, model: ModelId, inputs: TensorMap, nonce: u64) -> String {
        let req = InferenceRequest {
            model,
            inputs,
            mode: Mode::Signed,
            params: Default::default(),
            nonce,
            client: self.key.public(),
        };
        serde_json::to_string(&req.sign(&self.key)).unwrap()
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let resp = self.http.get(format!("{}{path}", self.url)).send().unwrap();
        (resp.status().as_u16(), resp.json().unwrap_or(Value::Null))
    }
}

fn digit_input() -> TensorMap {
    serde_json::from_slice(&fixture("digit_input_mlp.json")).unwrap()
}

pub(crate) fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error body: {body}"))
}

#[test]
fn publish_derives_canonical_model_and_lists_versions() {
    let n = start();
    let r = n.publish_mlp();
    assert_eq!(r.model.format, ModelFormat::Onnx);
    assert_eq!(r.model.id, ModelId::of_bytes(&fixture("digits_mlp.onnx")));
    let c = r.canonical.expect("canonical model");
    assert_eq!(c.format, ModelFormat::VerityInt8);
    assert_eq!(c.parent, Some(r.model.id));
    assert_eq!(
        c.calibration_hash,
        Some(Hash::of(
            verity_core::hash::domain::CALIBRATION,
            &fixture("digits_calib_mlp.json")
        ))
    );
    assert_eq!(r.model.canonical, Some(c.id));
    // A second version of the same name; both listed, `name` resolves to the latest.
    let cnn = fixture("digits_cnn.onnx");
    let (s, _) = n.publish_raw(&n.meta("digits-mlp", "1.1", &cnn, None), cnn.clone(), None);
    assert_eq!(s, 201);
    let (_, list) = n.get("/v1/models?name=digits-mlp");
    assert_eq!(list["object"], "list");
    let versions: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0", "1.1"]);
    let (_, latest) = n.get("/v1/models/digits-mlp");
    assert_eq!(latest["version"], "1.1");
    let (_, exact) = n.get("/v1/models/digits-mlp@1.0");
    assert_eq!(exact["id"], json!(r.model.id));
    let (s, by_id) = n.get(&format!("/v1/models/{}", c.id));
    assert_eq!((s, by_id["name"].as_str()), (200, Some("digits-mlp.int8")));
    // The downloaded bytes are the published bytes.
    let bytes = n
        .http
        .get(format!("{}/v1/models/{}/file", n.url, r.model.id))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(ModelId::of_bytes(&bytes), r.model.id);
}

#[test]
fn canonical_file_is_accepted_as_is() {
    let n = start();
    let c = n.publish_mlp().canonical.unwrap();
    let bytes = n
        .http
        .get(format!("{}/v1/models/{}/file", n.url, c.id))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    let other = start();
    let (s, body) = other.publish_raw(
        &other.meta("mlp-q", "2.0", &bytes, None),
        bytes.clone(),
        None,
    );
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["model"]["id"], json!(c.id));
    assert_eq!(body["model"]["format"], "verity-int8");
}

#[test]
fn bad_publications_are_rejected_and_leave_nothing() {
    let n = start_with(|c| c.max_model_bytes = 20_000);
    n.publish_mlp();
    let before = n.get("/v1/models").1;
    let mlp = fixture("digits_mlp.onnx");

    // Duplicate name@version.
    let cnn = fixture("digits_cnn.onnx");
    let (s, b) = n.publish_raw(&n.meta("digits-mlp", "1.0", &cnn, None), cnn.clone(), None);
    assert_eq!((s, error_code(&b)), (409, "already_published"));
    // Not ONNX at all.
    let junk = b"this is not a model".to_vec();
    let (s, b) = n.publish_raw(&n.meta("junk", "1.0", &junk, None), junk.clone(), None);
    assert_eq!((s, error_code(&b)), (400, "invalid_model"), "{b}");
    // Truncated upload: fewer bytes arrive than the publisher announced.
    let mut meta = n.meta("trunc", "1.0", &mlp, None);
    meta.size += 100;
    let (s, b) = n.publish_raw(&meta, mlp.clone(), None);
    assert_eq!((s, error_code(&b)), (400, "truncated_upload"));
    // Bytes that do not hash to the announced id.
    let mut altered = mlp.clone();
    altered[100] ^= 1;
    let (s, b) = n.publish_raw(&n.meta("alt", "1.0", &mlp, None), altered, None);
    assert_eq!((s, error_code(&b)), (400, "hash_mismatch"));
    // A signature by someone else.
    let mut meta = n.meta("forged", "1.0", &mlp, None);
    meta.publisher = NodeKey::from_seed([1; 32]).public();
    let (s, b) = n.publish_raw(&meta, mlp.clone(), None);
    assert_eq!((s, error_code(&b)), (401, "invalid_signature"));
    // Over the configured size limit.
    let big = [mlp.clone(), vec![0u8; 20_000]].concat();
    let (s, b) = n.publish_raw(&n.meta("big", "1.0", &big, None), big, None);
    assert_eq!((s, error_code(&b)), (413, "payload_too_large"));
    // Bad version string.
    let (s, b) = n.publish_raw(&n.meta("v", "latest", &mlp, None), mlp.clone(), None);
    assert_eq!((s, error_code(&b)), (400, "bad_request"));
    // Calibration that does not fit the model.
    let (s, b) = n.publish_raw(
        &n.meta("mlp2", "1.0", &cnn, Some(&fixture("digits_calib_mlp.json"))),
        cnn.clone(),
        Some(fixture("digits_calib_mlp.json")),
    );
    assert_eq!((s, error_code(&b)), (400, "invalid_calibration"), "{b}");

    assert_eq!(
        n.get("/v1/models").1,
        before,
        "a rejected publication changed the model list"
    );
    let tmp = std::fs::read_dir(n.dir.path().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0, "partial uploads left behind");
}

#[test]
fn unsupported_operator_is_named_when_making_canonical() {
    use prost::Message;
    use verity_engine::proto::*;
    let mut m = ModelProto::decode(fixture("digits_mlp.onnx").as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    // Insert an Erf between the first Relu and the second Gemm.
    let relu = g.node.iter().position(|n| n.op_type == "Relu").unwrap();
    let relu_out = g.node[relu].output[0].clone();
    g.node.insert(
        relu + 1,
        NodeProto {
            input: vec![relu_out.clone()],
            output: vec!["erf_out".into()],
            op_type: "Erf".into(),
            ..Default::default()
        },
    );
    for n in g.node.iter_mut().skip(relu + 2) {
        n.input
            .iter_mut()
            .filter(|i| **i == relu_out)
            .for_each(|i| *i = "erf_out".into());
    }
    let bytes = m.encode_to_vec();
    let n = start();
    let calib = fixture("digits_calib_mlp.json");
    let (s, b) = n.publish_raw(
        &n.meta("erf", "1.0", &bytes, Some(&calib)),
        bytes.clone(),
        Some(calib),
    );
    assert_eq!((s, error_code(&b)), (422, "unsupported_operator"));
    assert!(
        b["error"]["message"].as_str().unwrap().contains("Erf"),
        "{b}"
    );
}

#[test]
fn inference_errors_have_proper_status_codes() {
    let n = start_with(|c| c.max_request_bytes = 64 * 1024);
    let id = n.publish_mlp().canonical.unwrap().id;

    let (s, b) = n.infer_raw(n.request(ModelId::of_bytes(b"nope"), digit_input(), 1));
    assert_eq!((s, error_code(&b)), (404, "not_found"));

    let wrong_shape = TensorMap::from([(
        "input".into(),
        Tensor::from_f32(vec![1, 8, 8], &[0.0; 64]).unwrap(),
    )]);
    let (s, b) = n.infer_raw(n.request(id, wrong_shape, 2));
    assert_eq!((s, error_code(&b)), (422, "invalid_input"));
    assert!(
        b["error"]["message"].as_str().unwrap().contains("[1, 64]"),
        "must name the expected shape: {b}"
    );

    let wrong_name = TensorMap::from([(
        "pixels".into(),
        Tensor::from_f32(vec![1, 64], &[0.0; 64]).unwrap(),
    )]);
    let (s, b) = n.infer_raw(n.request(id, wrong_name, 3));
    assert_eq!((s, error_code(&b)), (422, "invalid_input"));
    assert!(b["error"]["message"].as_str().unwrap().contains("pixels"));

    let (s, b) = n.infer_raw("{not json".into());
    assert_eq!((s, error_code(&b)), (400, "malformed_json"));

    let (s, b) = n.infer_raw(r#"{"request":{"model":"x"}}"#.into());
    assert_eq!((s, error_code(&b)), (422, "invalid_request"));

    let huge = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100 * 1024));
    let (s, b) = n.infer_raw(huge);
    assert_eq!((s, error_code(&b)), (413, "payload_too_large"));

    // A request whose signature does not match its content.
    let mut v: Value = serde_json::from_str(&n.request(id, digit_input(), 4)).unwrap();
    v["request"]["nonce"] = json!(5);
    let (s, b) = n.infer_raw(v.to_string());
    assert_eq!((s, error_code(&b)), (401, "invalid_signature"));

    let body = n.request(id, digit_input(), 6);
    assert_eq!(n.infer_raw(body.clone()).0, 200);
    let (s, b) = n.infer_raw(body);
    assert_eq!((s, error_code(&b)), (409, "replayed_nonce"));
    // The same nonce from another client is fine.
    let other = NodeKey::from_seed([3; 32]);
    let req = InferenceRequest {
        model: id,
        inputs: digit_input(),
        mode: Mode::Signed,
        params: Default::default(),
        nonce: 6,
        client: other.public(),
    };
    assert_eq!(
        n.infer_raw(serde_json::to_string(&req.sign(&other)).unwrap())
            .0,
        200
    );

    let (s, b) = n.get("/v1/receipts/zz");
    assert_eq!((s, error_code(&b)), (400, "bad_request"));
    let (s, _) = n.get(&format!("/v1/receipts/{}", "0".repeat(64)));
    assert_eq!(s, 404);
    let metrics = n
        .http
        .get(format!("{}/metrics", n.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("verity_http_errors_total{status=\"422\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verity_inferences_total{engine=\"verity-int8\",outcome=\"ok\"} 2"),
        "{metrics}"
    );
}

fn infer_receipt(n: &TestNode, id: ModelId, nonce: u64) -> Receipt {
    let (s, b) = n.infer_raw(n.request(id, digit_input(), nonce));
    assert_eq!(s, 200, "{b}");
    let r: InferResponse = serde_json::from_value(b).unwrap();
    let (_, stored) = n.get(&format!("/v1/receipts/{}", r.receipt_id));
    assert_eq!(
        serde_json::from_value::<Receipt>(stored).unwrap(),
        r.receipt
    );
    r.receipt
}

#[test]
fn receipts_verify_and_every_tampered_field_is_rejected() {
    let n = start();
    let published = n.publish_mlp();
    let id = published.canonical.unwrap().id;
    let r = infer_receipt(&n, id, 11);
    let inputs = digit_input();
    let ok = Expectations {
        inputs: Some(&inputs),
        node: Some(r.node),
        ..Default::default()
    };
    verify_receipt(&r, &ok).unwrap();
    assert!(r.trace_root.is_some());
    assert_eq!(r.engine.name, "verity-int8");

    let sig_fail = |t: &Receipt| {
        matches!(
            verify_receipt(t, &ok),
            Err(VerifyError::Signature(_) | VerifyError::NodeKey { .. })
        )
    };
    let mut t = r.clone();
    t.model = published.model.id;
    assert!(sig_fail(&t), "model id");
    let mut t = r.clone();
    t.input_hash = Hash::of("x", b"other input");
    assert!(
        matches!(verify_receipt(&t, &ok), Err(VerifyError::InputHash { .. })),
        "input hash"
    );
    let mut other_input = inputs.clone();
    other_input.insert(
        "input".into(),
        Tensor::from_f32(vec![1, 64], &[0.25; 64]).unwrap(),
    );
    assert!(
        matches!(
            verify_receipt(
                &r,
                &Expectations {
                    inputs: Some(&other_input),
                    node: None,
                    ..Default::default()
                }
            ),
            Err(VerifyError::InputHash { .. })
        ),
        "input"
    );
    let mut t = r.clone();
    let mut logits = t.outputs["logits"].to_f32().unwrap();
    logits[0] += 1.0;
    t.outputs.insert(
        "logits".into(),
        Tensor::from_f32(vec![1, 10], &logits).unwrap(),
    );
    assert!(
        matches!(verify_receipt(&t, &ok), Err(VerifyError::OutputHash { .. })),
        "output"
    );
    t.output_hash = verity_core::tensor::hash_map(&t.outputs);
    assert!(sig_fail(&t), "output with recomputed hash");
    let mut t = r.clone();
    t.trace_root = Some(Hash::of("x", b"trace"));
    assert!(sig_fail(&t), "trace root");
    let mut t = r.clone();
    t.trace_root = None;
    assert!(sig_fail(&t), "trace root removed");
    let mut t = r.clone();
    t.node = NodeKey::from_seed([2; 32]).public();
    assert!(sig_fail(&t), "node key");
    assert!(
        matches!(
            verify_receipt(&t, &Expectations::default()),
            Err(VerifyError::Signature(_))
        ),
        "node key, no expectation"
    );
    let mut t = r.clone();
    t.signature.0[10] ^= 0x40;
    assert!(sig_fail(&t), "signature");
    let mut t = r.clone();
    t.timestamp_ms += 1;
    assert!(sig_fail(&t), "timestamp");
    let mut t = r.clone();
    t.request_hash = Hash::of("x", b"req");
    assert!(sig_fail(&t), "request hash");
    let mut t = r.clone();
    t.engine.version = "semantics-v2".into();
    assert!(sig_fail(&t), "engine");
    // A receipt signed by an honest but different node fails the expected-node check.
    let stranger = NodeKey::from_seed([4; 32]);
    let resigned = verity_core::ReceiptBody::from(r.clone()).sign(&stranger);
    assert!(matches!(
        verify_receipt(&resigned, &ok),
        Err(VerifyError::NodeKey { .. })
    ));
}

#[test]
fn reexecution_requires_the_same_model_inputs_and_outputs() {
    use verity_verify::{verify, Check, Context, Evidence};
    // Re-execution through the verification library, with the model bytes handed in.
    let reexecute = |r: &Receipt, model: &[u8], inputs: &TensorMap| {
        let source = |_: &verity_core::ModelId| Ok(model.to_vec());
        verify(
            &Evidence::Single(Box::new(r.clone())),
            &Context {
                inputs: Some(inputs),
                reexecute: true,
                models: Some(&source),
                ..Default::default()
            },
        )
    };
    // A lie must still carry a valid signature (by whoever tells it) to reach re-execution.
    let resign =
        |r: &Receipt| verity_core::ReceiptBody::from(r.clone()).sign(&NodeKey::from_seed([7; 32]));
    let reexecuted = |r: Result<verity_verify::Report, verity_verify::Failure>| {
        r.unwrap().established.last().unwrap().detail.clone()
    };
    let n = start();
    let published = n.publish_mlp();
    let id = published.canonical.unwrap().id;
    let model = n
        .http
        .get(format!("{}/v1/models/{id}/file", n.url))
        .send()
        .unwrap()
        .bytes()
        .unwrap()
        .to_vec();
    let r = infer_receipt(&n, id, 1);
    let inputs = digit_input();
    assert!(reexecuted(reexecute(&r, &model, &inputs)).contains("layer trace root"));
    // Another model's bytes, or the right model with a flipped weight byte.
    assert!(reexecute(&r, &fixture("digits_mlp.onnx"), &inputs).is_err());
    let mut altered = model.clone();
    let at = altered.len() - 40;
    altered[at] ^= 1;
    assert!(reexecute(&r, &altered, &inputs).is_err());
    // A receipt whose outputs were swapped for another run's (honestly signed) outputs.
    let mut lie = r.clone();
    let mut x = inputs.clone();
    x.insert(
        "input".into(),
        Tensor::from_f32(vec![1, 64], &[0.5; 64]).unwrap(),
    );
    let other =
        verity_engine::Interpreter::new(verity_engine::CanonicalModel::decode(&model).unwrap())
            .run(&x)
            .unwrap();
    lie.outputs = other.outputs;
    lie.output_hash = verity_core::tensor::hash_map(&lie.outputs);
    assert_eq!(
        reexecute(&resign(&lie), &model, &inputs).unwrap_err().check,
        Check::Reexecution
    );
    let mut lie = r.clone();
    lie.trace_root = Some(other.trace_root);
    assert_eq!(
        reexecute(&resign(&lie), &model, &inputs).unwrap_err().check,
        Check::Reexecution
    );
    // Float model receipts name the float engine and re-execute on this machine.
    let fr = infer_receipt(&n, published.model.id, 2);
    assert_eq!(fr.engine.name, "rten");
    assert_eq!(fr.trace_root, None);
    assert!(
        reexecuted(reexecute(&fr, &fixture("digits_mlp.onnx"), &inputs)).contains("float model")
    );
}

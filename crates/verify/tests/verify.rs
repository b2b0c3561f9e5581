//! Every evidence kind verifies when honest, and every tampering is refused by the check it
//! breaks: model, inputs, outputs, signature, signer, request, proof bytes, inclusion path,
//! shown text and re-execution.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use verity_core::chat::chat_outputs;
use verity_core::receipt::{EngineId, ReceiptBody};
use verity_core::tensor::hash_map;
use verity_core::wire::{
    ChatCompletionRequest, ChatReceipt, InferResponse, QuorumResult, ResponseFormat, ValidatorSet,
};
use verity_core::{
    ChatMessage, ChatRequest, FinishReason, Hash, InferenceRequest, Mode, ModelId, NodeKey,
    Receipt, Tensor, TensorMap,
};
use verity_engine::{quantize_onnx, Calibration, CanonicalModel, Interpreter};
use verity_verify::{
    infer_answer, verify, Check, Completion, Context, Evidence, Failure, ModelSource, Report,
    ZkReceipt,
};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

/// The digits MLP's canonical file.
fn mlp() -> &'static Vec<u8> {
    static MLP: OnceLock<Vec<u8>> = OnceLock::new();
    MLP.get_or_init(|| {
        let onnx = std::fs::read(fixture("digits_mlp.onnx")).unwrap();
        let calib = std::fs::read(fixture("digits_calib_mlp.json")).unwrap();
        quantize_onnx(&onnx, &Calibration::from_json(&calib).unwrap())
            .unwrap()
            .encode()
    })
}

fn digit() -> TensorMap {
    serde_json::from_slice(&std::fs::read(fixture("digit_input_mlp.json")).unwrap()).unwrap()
}

fn request(mode: Mode) -> InferenceRequest {
    InferenceRequest {
        model: ModelId::of_bytes(mlp()),
        inputs: digit(),
        mode,
        params: Default::default(),
        nonce: 7,
        client: NodeKey::from_seed([9; 32]).public(),
    }
}

/// An honest receipt of the MLP on the digit, signed by node `seed`.
fn honest(mode: Mode, seed: u8) -> Receipt {
    let q = request(mode);
    let run = Interpreter::new(CanonicalModel::decode(mlp()).unwrap())
        .run(&q.inputs)
        .unwrap();
    ReceiptBody::new(
        q.hash(),
        q.model,
        &q.inputs,
        run.outputs,
        EngineId {
            name: "verity-int8".into(),
            version: "1".into(),
        },
        Some(run.trace_root),
        mode,
    )
    .sign(&NodeKey::from_seed([seed; 32]))
}

fn mlp_source(_: &ModelId) -> Result<Vec<u8>, String> {
    Ok(mlp().clone())
}

fn check(result: Result<Report, Failure>) -> Check {
    result.expect_err("accepted").check
}

#[test]
fn a_single_receipt_and_each_tampering() {
    let r = honest(Mode::Signed, 1);
    let inputs = digit();
    let ev = |r: &Receipt| Evidence::Single(Box::new(r.clone()));
    let ctx = Context {
        inputs: Some(&inputs),
        node: Some(r.node),
        ..Default::default()
    };
    let report = verify(&ev(&r), &ctx).unwrap();
    for c in [Check::Signature, Check::InputHash, Check::NodeKey] {
        assert!(report.has(c), "{c} not established: {report:?}");
    }

    let mut t = r.clone();
    t.outputs
        .insert("x".into(), Tensor::from_f32(vec![1], &[1.0]).unwrap());
    assert_eq!(check(verify(&ev(&t), &ctx)), Check::Signature);
    let mut t = r.clone();
    t.signature.0[3] ^= 1;
    assert_eq!(check(verify(&ev(&t), &ctx)), Check::Signature);
    let mut other = inputs.clone();
    other.insert(
        "input".into(),
        Tensor::from_f32(vec![1, 64], &[0.5; 64]).unwrap(),
    );
    let wrong_inputs = Context {
        inputs: Some(&other),
        ..Default::default()
    };
    let failure = verify(&ev(&r), &wrong_inputs).unwrap_err();
    assert_eq!(failure.check, Check::InputHash);
    // What held before the failing check is reported with it.
    assert!(failure.established.is_empty() || failure.established[0].check == Check::Signature);
    let other_node = Context {
        node: Some(NodeKey::from_seed([2; 32]).public()),
        ..Default::default()
    };
    assert_eq!(check(verify(&ev(&r), &other_node)), Check::NodeKey);
    // A zk receipt without its proof proves nothing beyond a signature.
    let zk = honest(Mode::Zk, 1);
    assert_eq!(check(verify(&ev(&zk), &Context::default())), Check::ZkProof);
}

#[test]
fn reexecution_catches_a_consistent_lie_and_a_wrong_model() {
    let inputs = digit();
    let ctx = Context {
        inputs: Some(&inputs),
        reexecute: true,
        models: Some(&mlp_source),
        ..Default::default()
    };
    let r = honest(Mode::Signed, 1);
    let report = verify(&Evidence::Single(Box::new(r.clone())), &ctx).unwrap();
    assert!(report.has(Check::Reexecution) && report.has(Check::Model));

    // A receipt, validly signed, over outputs the model does not give on these inputs.
    let mut body_outputs = r.outputs.clone();
    let (name, t) = body_outputs.pop_first().unwrap();
    let mut data = t.data().to_vec();
    data[0] ^= 1;
    body_outputs.insert(
        name,
        Tensor::from_bytes(t.dtype(), t.shape().to_vec(), data).unwrap(),
    );
    let mut lie = ReceiptBody::from(r.clone());
    lie.output_hash = hash_map(&body_outputs);
    lie.outputs = body_outputs;
    let lie = lie.sign(&NodeKey::from_seed([1; 32]));
    let lie = Evidence::Single(Box::new(lie));
    verify(&lie, &Context::default()).expect("holds offline without re-execution");
    assert_eq!(check(verify(&lie, &ctx)), Check::Reexecution);

    // Model bytes that are not the receipt's model.
    let mut altered = mlp().clone();
    let at = altered.len() - 40;
    altered[at] ^= 1;
    let wrong = move |_: &ModelId| -> Result<Vec<u8>, String> { Ok(altered.clone()) };
    let ctx_wrong = Context {
        models: Some(&wrong),
        ..ctx
    };
    let evidence = Evidence::Single(Box::new(r));
    assert_eq!(check(verify(&evidence, &ctx_wrong)), Check::Model);
    // No source at all.
    let no_source = Context {
        models: None,
        ..ctx
    };
    assert_eq!(check(verify(&evidence, &no_source)), Check::Model);
}

#[test]
fn a_quorum_and_its_signers() {
    let k = 3;
    let receipts: Vec<Receipt> = (1..=k as u8)
        .map(|i| honest(Mode::Quorum { k }, i))
        .collect();
    let q = QuorumResult {
        request: receipts[0].request_hash,
        receipts: receipts.clone(),
    };
    let ctx = Context::default();
    let report = verify(&Evidence::Quorum(q.clone()), &ctx).unwrap();
    assert!(report.has(Check::Quorum) && !report.has(Check::Signers));
    // Issue 13 finding 6: a quorum file used to "check its signers" by membership of the
    // validator set. It cannot show who the ledger drew, so with a set it is refused.
    let set = ValidatorSet {
        chain_id: "test".into(),
        validators: receipts.iter().map(|r| r.node).collect(),
    };
    let with_set = Context {
        validators: Some(&set),
        ..Default::default()
    };
    assert_eq!(
        check(verify(&Evidence::Quorum(q.clone()), &with_set)),
        Check::Signers
    );
    let mut twice = q.clone();
    twice.receipts[2] = twice.receipts[0].clone();
    assert_eq!(check(verify(&Evidence::Quorum(twice), &ctx)), Check::Quorum);
    let mut other_request = q.clone();
    other_request.request = Hash::of("t", b"other");
    assert_eq!(
        check(verify(&Evidence::Quorum(other_request), &ctx)),
        Check::Quorum
    );
    let outsider = Context {
        node: Some(NodeKey::from_seed([8; 32]).public()),
        ..Default::default()
    };
    assert_eq!(
        check(verify(&Evidence::Quorum(q), &outsider)),
        Check::NodeKey
    );
}

#[test]
fn a_settled_quorum_shows_its_signers_are_the_executors_the_ledger_drew() {
    let bytes = std::fs::read(fixture("inclusion/settled_quorum.json")).unwrap();
    let set: ValidatorSet =
        serde_json::from_slice(&std::fs::read(fixture("inclusion/validators.json")).unwrap())
            .unwrap();
    let Evidence::SettledQuorum(s) = Evidence::parse(&bytes).unwrap() else {
        panic!("not a settled quorum")
    };
    let ctx = Context {
        validators: Some(&set),
        ..Default::default()
    };
    let report = verify(&Evidence::SettledQuorum(s.clone()), &ctx).unwrap();
    assert!(report.has(Check::Signers) && report.has(Check::Inclusion));
    assert_eq!(
        check(verify(
            &Evidence::SettledQuorum(s.clone()),
            &Context::default()
        )),
        Check::Evidence
    );
    let tampered = |f: &dyn Fn(&mut verity_verify::SettledQuorum)| {
        let mut t = s.clone();
        f(&mut t);
        check(verify(&Evidence::SettledQuorum(t), &ctx))
    };
    // A receipt without its proof, or a proof that belongs to another receipt.
    assert_eq!(tampered(&|t| drop(t.inclusion.pop())), Check::Signers);
    assert_eq!(
        tampered(&|t| t.inclusion[0].receipt = t.inclusion[1].receipt.clone()),
        Check::Signers
    );
    assert_eq!(
        tampered(&|t| t.inclusion[0].path = t.inclusion[1].path.clone()),
        Check::Inclusion
    );
    // A signer the ledger never drew: a receipt (validly signed) replaced by a stranger's.
    assert_eq!(
        tampered(&|t| {
            let stranger = NodeKey::from_seed([77; 32]);
            t.quorum.receipts[2] =
                verity_core::ReceiptBody::from(t.quorum.receipts[2].clone()).sign(&stranger);
        }),
        Check::Signers
    );
    // Proofs under another network's validators.
    let other = ValidatorSet {
        chain_id: "another".into(),
        ..set.clone()
    };
    let ctx_other = Context {
        validators: Some(&other),
        ..Default::default()
    };
    assert!(verify(&Evidence::SettledQuorum(s), &ctx_other).is_err());
}

#[test]
fn the_committed_inclusion_proof_and_each_tampering() {
    let bytes = std::fs::read(fixture("inclusion/inclusion_proof.json")).unwrap();
    let set: ValidatorSet =
        serde_json::from_slice(&std::fs::read(fixture("inclusion/validators.json")).unwrap())
            .unwrap();
    let evidence = Evidence::parse(&bytes).unwrap();
    assert!(matches!(evidence, Evidence::Inclusion(_)));
    let ctx = Context {
        validators: Some(&set),
        ..Default::default()
    };
    assert!(verify(&evidence, &ctx).unwrap().has(Check::Inclusion));
    assert_eq!(
        check(verify(&evidence, &Context::default())),
        Check::Evidence
    );

    let Evidence::Inclusion(p) = evidence else {
        unreachable!()
    };
    let tampered = |f: &dyn Fn(&mut verity_verify::InclusionProof)| {
        let mut t = p.clone();
        f(&mut t);
        check(verify(&Evidence::Inclusion(t), &ctx))
    };
    assert_eq!(tampered(&|t| t.path.index ^= 1), Check::Inclusion);
    assert_eq!(tampered(&|t| t.header.height += 1), Check::Inclusion);
    assert_eq!(tampered(&|t| t.receipt.timestamp_ms += 1), Check::Signature);
    assert_eq!(
        tampered(&|t| t.finalization.replace_range(10..12, "00")),
        Check::Inclusion
    );
    let mut other = set.clone();
    other.validators[0] = NodeKey::from_seed([5; 32]).public();
    let ctx_other = Context {
        validators: Some(&other),
        ..Default::default()
    };
    assert_eq!(
        check(verify(&Evidence::Inclusion(p), &ctx_other)),
        Check::Inclusion
    );
}

#[test]
fn a_zk_receipt_and_a_proof_file_and_each_tampering() {
    let zk = verity_verify::zk::setup(mlp()).unwrap();
    let inputs = digit();
    let (outputs, _, proof) = zk.prove(&inputs).unwrap();
    let mut r = honest(Mode::Zk, 1);
    assert_eq!(r.outputs, outputs);
    let b64 = |p: &[u8]| base64::engine::general_purpose::STANDARD.encode(p);
    let zk_receipt = |r: &Receipt, proof: &[u8]| {
        Evidence::Zk(Box::new(ZkReceipt {
            receipt: r.clone(),
            zk_proof: b64(proof),
        }))
    };
    let ctx = Context {
        inputs: Some(&inputs),
        models: Some(&mlp_source),
        ..Default::default()
    };
    let report = verify(&zk_receipt(&r, &proof), &ctx).unwrap();
    assert!(report.has(Check::ZkProof) && report.has(Check::Model));

    let mut flipped = proof.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    assert_eq!(
        check(verify(&zk_receipt(&r, &flipped), &ctx)),
        Check::ZkProof
    );
    assert_eq!(
        check(verify(&zk_receipt(&r, &proof[..proof.len() - 1]), &ctx)),
        Check::ZkProof
    );
    let no_inputs = Context {
        inputs: None,
        ..ctx
    };
    assert_eq!(
        check(verify(&zk_receipt(&r, &proof), &no_inputs)),
        Check::Evidence
    );
    // A signed-mode receipt carrying a proof is not a zk receipt.
    let signed = honest(Mode::Signed, 1);
    assert_eq!(
        check(verify(&zk_receipt(&signed, &proof), &ctx)),
        Check::ZkProof
    );
    // The proof file `verity prove` writes: the same proof, no node.
    let file = verity_verify::ProofFile {
        model: r.model,
        commitment: hex::encode(zk.commitment()),
        inputs: inputs.clone(),
        outputs: outputs.clone(),
        proof: b64(&proof),
    };
    let proof_ctx = Context {
        models: Some(&mlp_source),
        ..Default::default()
    };
    verify(&Evidence::Proof(Box::new(file.clone())), &proof_ctx).unwrap();
    let mut lie = file.clone();
    let (name, t) = lie.outputs.pop_first().unwrap();
    let mut data = t.data().to_vec();
    data[0] ^= 1;
    lie.outputs.insert(
        name,
        Tensor::from_bytes(t.dtype(), t.shape().to_vec(), data).unwrap(),
    );
    assert_eq!(
        check(verify(&Evidence::Proof(Box::new(lie)), &proof_ctx)),
        Check::ZkProof
    );
    // The receipt's outputs swapped for another run's, re-signed: the proof still binds.
    r.outputs = honest(Mode::Signed, 2).outputs;
    let mut other = inputs.clone();
    other.insert(
        "input".into(),
        Tensor::from_f32(vec![1, 64], &[0.5; 64]).unwrap(),
    );
    let (other_outputs, _, _) = zk.prove(&other).unwrap();
    let mut lie = ReceiptBody::from(r.clone());
    lie.output_hash = hash_map(&other_outputs);
    lie.outputs = other_outputs;
    let lie = lie.sign(&NodeKey::from_seed([1; 32]));
    assert_eq!(
        check(verify(&zk_receipt(&lie, &proof), &ctx)),
        Check::ZkProof
    );
}

/// A chat receipt signed over a made-up generation (the checks below do not re-execute).
fn chat_receipt() -> ChatReceipt {
    let request = ChatRequest {
        model: ModelId([3; 32]),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: "Hi".into(),
        }],
        max_tokens: 12,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        seed: 0,
        stop: vec!["\n".into()],
        json_object: true,
    };
    let outputs = chat_outputs(&[1, 2, 3], "{}", FinishReason::Stop);
    let receipt = ReceiptBody::new(
        request.hash(),
        request.model,
        &request.inputs(),
        outputs,
        EngineId {
            name: verity_llm::RUNTIME_NAME.into(),
            version: verity_llm::RUNTIME_VERSION.into(),
        },
        None,
        Mode::Signed,
    )
    .sign(&NodeKey::from_seed([4; 32]));
    ChatReceipt {
        receipt_id: Some(receipt.id().to_hex()),
        receipt,
        request,
    }
}

#[test]
fn chat_receipts_completions_and_the_request_sent() {
    let c = chat_receipt();
    let ev = |c: &ChatReceipt| Evidence::Chat(Box::new(c.clone()));
    verify(&ev(&c), &Context::default()).unwrap();
    let inputs = digit();
    let with_inputs = Context {
        inputs: Some(&inputs),
        ..Default::default()
    };
    assert_eq!(check(verify(&ev(&c), &with_inputs)), Check::Evidence);

    let mut t = c.clone();
    t.request.messages[0].content.push('!');
    assert_eq!(
        check(verify(&ev(&t), &Context::default())),
        Check::InputHash
    );
    let mut t = c.clone();
    t.receipt_id = Some("00".repeat(32));
    assert_eq!(check(verify(&ev(&t), &Context::default())), Check::Evidence);
    let mut t = c.clone();
    t.receipt.outputs = chat_outputs(&[1, 2, 3], "{ }", FinishReason::Stop);
    assert_eq!(
        check(verify(&ev(&t), &Context::default())),
        Check::Signature
    );

    // A saved chat.completion: the message shown must be the signed text.
    let completion = |text: &str| {
        Evidence::Completion(Box::new(Completion {
            verity: c.clone(),
            choices: vec![serde_json::json!({"message": {"content": text}})],
        }))
    };
    verify(&completion("{}"), &Context::default()).unwrap();
    assert_eq!(
        check(verify(&completion("Something else"), &Context::default())),
        Check::ShownText
    );
    // Evidence files round-trip and are told apart.
    for e in [ev(&c), completion("{}")] {
        let bytes = serde_json::to_vec(&e).unwrap();
        assert_eq!(Evidence::parse(&bytes).unwrap(), e);
    }

    // The signed request must be the one asked for.
    let model = c.request.model;
    let asked = ChatCompletionRequest {
        model: "smollm2".into(),
        messages: c.request.messages.clone(),
        max_tokens: Some(12),
        temperature: Some(0.0),
        stop: vec!["\n".into()],
        response_format: Some(ResponseFormat {
            kind: "json_object".into(),
        }),
        ..Default::default()
    };
    let matches = |asked: &ChatCompletionRequest, signed: &ChatRequest| {
        verity_verify::chat::request_matches(asked, model, signed, &mut Report::default())
    };
    matches(&asked, &c.request).unwrap();
    type Change = Box<dyn Fn(&mut ChatRequest)>;
    let changes: Vec<(Change, &str)> = vec![
        (Box::new(|q| q.temperature = 0.5), "temperature"),
        (Box::new(|q| q.max_tokens = 13), "max_tokens"),
        // Greedy without a seed given must be seed 0.
        (Box::new(|q| q.seed = 1), "seed"),
        (Box::new(|q| q.top_p = 0.9), "top_p"),
        (Box::new(|q| q.top_k = 5), "top_k"),
        (Box::new(|q| q.stop.clear()), "stop"),
        (Box::new(|q| q.json_object = false), "json_object"),
        (Box::new(|q| q.model = ModelId([4; 32])), "model"),
        (Box::new(|q| q.messages[0].content.push('!')), "messages"),
    ];
    for (change, name) in changes {
        let mut other = c.request.clone();
        change(&mut other);
        let f = matches(&asked, &other).unwrap_err();
        assert_eq!(f.check, Check::Request);
        assert!(f.message.contains(name), "{name}: {}", f.message);
    }
    // Unset parameters: the API's defaults, any max_tokens and (sampled) seed.
    let defaults = ChatCompletionRequest {
        messages: c.request.messages.clone(),
        ..Default::default()
    };
    let mut sampled = c.request.clone();
    (sampled.temperature, sampled.seed, sampled.max_tokens) = (1.0, 12345, 99);
    (sampled.stop, sampled.json_object) = (vec![], false);
    matches(&defaults, &sampled).unwrap();
}

#[test]
fn an_answer_must_answer_the_request_sent() {
    let own = request(Mode::Signed);
    let r = honest(Mode::Signed, 1);
    let answer = |r: &Receipt| InferResponse {
        receipt_id: r.id(),
        receipt: r.clone(),
        settled_height: None,
        quorum: None,
        zk_proof: None,
    };
    let (evidence, report) = infer_answer(&own, "", &answer(&r)).unwrap();
    assert!(matches!(evidence, Evidence::Single(_)) && report.has(Check::Request));

    // The same model and inputs, but another request (another nonce): refused.
    let mut other = request(Mode::Signed);
    other.nonce += 1;
    assert_eq!(
        infer_answer(&other, "", &answer(&r)).unwrap_err().check,
        Check::Request
    );
    // Another mode than asked.
    let zk = request(Mode::Zk);
    assert_eq!(
        infer_answer(&zk, "", &answer(&r)).unwrap_err().check,
        Check::Request
    );
    // A zk answer without its proof.
    let zr = honest(Mode::Zk, 1);
    assert_eq!(
        infer_answer(&zk, "", &answer(&zr)).unwrap_err().check,
        Check::ZkProof
    );
    // A quorum request answered by one node.
    let quorum = request(Mode::Quorum { k: 2 });
    let qr = honest(Mode::Quorum { k: 2 }, 1);
    assert_eq!(
        infer_answer(&quorum, "", &answer(&qr)).unwrap_err().check,
        Check::Quorum
    );
    let receipts = vec![qr.clone(), honest(Mode::Quorum { k: 2 }, 2)];
    let mut full = answer(&qr);
    full.quorum = Some(QuorumResult {
        request: quorum.hash(),
        receipts,
    });
    let (evidence, _) = infer_answer(&quorum, "", &full).unwrap();
    assert!(matches!(evidence, Evidence::Quorum(_)));
    // The headline receipt must be one of the quorum's.
    let mut stray = full;
    stray.receipt = honest(Mode::Quorum { k: 2 }, 3);
    stray.receipt_id = stray.receipt.id();
    assert_eq!(
        infer_answer(&quorum, "", &stray).unwrap_err().check,
        Check::Request
    );
}

/// The trait object the CLI hands in: any closure over model ids.
#[test]
fn a_model_source_is_not_trusted() {
    let liar = |_: &ModelId| -> Result<Vec<u8>, String> { Ok(b"not the model".to_vec()) };
    let source: &dyn ModelSource = &liar;
    let inputs = digit();
    let ctx = Context {
        inputs: Some(&inputs),
        reexecute: true,
        models: Some(source),
        ..Default::default()
    };
    let f = verify(&Evidence::Single(Box::new(honest(Mode::Signed, 1))), &ctx).unwrap_err();
    assert_eq!(f.check, Check::Model);
    assert!(f.established.iter().any(|e| e.check == Check::Signature));
}

/// Evidence files come from anyone: garbage, truncation, a valid JSON of another shape, and a
/// receipt with an unknown version are refused by name, never accepted or panicking.
#[test]
fn malformed_evidence_files_are_refused() {
    let r = honest(Mode::Signed, 1);
    let good = serde_json::to_vec(&Evidence::Single(Box::new(r.clone()))).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\xff\xfe not json".to_vec(),
        b"[]".to_vec(),
        b"{\"receipts\": 3}".to_vec(),
        good[..good.len() / 2].to_vec(),
        // Deeply nested JSON: serde_json's recursion limit refuses it.
        [b"[".repeat(100_000), b"]".repeat(100_000)].concat(),
    ];
    cases.push(serde_json::to_vec(&serde_json::json!({"receipt": {"version": 1}})).unwrap());
    for bytes in cases {
        assert_eq!(Evidence::parse(&bytes).unwrap_err().check, Check::Evidence);
    }
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["version"] = serde_json::json!(99);
    let evidence = Evidence::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(
        check(verify(&evidence, &Context::default())),
        Check::Signature
    );
}

//! Cross-CPU determinism: the canonical engine binary run under `qemu-x86_64 -cpu` for older
//! CPU models (no AVX2, AVX2 on Intel and AMD) must print the same output bytes and layer
//! trace root as the host. Needs Debian's `qemu-user` (installed by .ci/run).

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn run(mut cmd: Command) -> String {
    let o = cmd.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn canonical_outputs_identical_under_emulated_older_cpus() {
    if Command::new("qemu-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").is_err(),
            "qemu-x86_64 is required in CI (apt-get install qemu-user)"
        );
        eprintln!("SKIPPED: qemu-x86_64 not installed (apt-get install qemu-user)");
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("SKIPPED: host is not x86_64");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_verity");
    let dir = tempfile::tempdir().unwrap();
    for (model, calib, input) in [
        (
            "digits_mlp.onnx",
            "digits_calib_mlp.json",
            "digit_input_mlp.json",
        ),
        (
            "digits_cnn.onnx",
            "digits_calib_cnn.json",
            "digit_input_cnn.json",
        ),
        ("ops_mix.onnx", "ops_calib.json", "ops_input.json"),
    ] {
        let q = dir.path().join(format!("{model}.q8"));
        let mut c = Command::new(bin);
        c.args(["model", "quantize"])
            .arg(fixture(model))
            .arg("--calibration")
            .arg(fixture(calib))
            .arg("--out")
            .arg(&q);
        run(c);
        let host = {
            let mut c = Command::new(bin);
            c.arg("run").arg(&q).arg("--input").arg(fixture(input));
            run(c)
        };
        assert!(host.contains("trace_root"), "{host}");
        let portable = {
            let mut c = Command::new(bin);
            c.env("VERITY_ISA", "portable")
                .arg("run")
                .arg(&q)
                .arg("--input")
                .arg(fixture(input));
            run(c)
        };
        assert_eq!(
            portable, host,
            "{model}: portable kernels differ from the host's"
        );
        for cpu in ["Nehalem", "Haswell", "EPYC-Rome", "core2duo"] {
            let mut c = Command::new("qemu-x86_64");
            c.args(["-cpu", cpu, bin, "run"])
                .arg(&q)
                .arg("--input")
                .arg(fixture(input));
            let emulated = run(c);
            assert_eq!(
                emulated, host,
                "{model}: output under -cpu {cpu} differs from the host"
            );
            eprintln!("{model}: -cpu {cpu} identical to host");
        }
    }
}

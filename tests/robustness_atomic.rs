//! No lost output: an interrupted or failed `tfc build` leaves an existing
//! model and its data file byte-identical and no temporary file behind.
//!
//! The binary is run in a subprocess on a model of about 1.6 GB with
//! external data; SIGINT is sent once a temporary file has appeared, that
//! is, while weights are being written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::root;

/// A Llama-style model of about 400 million parameters: writing it takes
/// seconds, long enough to interrupt.
const BIG: &str = "
model big {
  vocab_size = 32000
  hidden_size = 2048
  embeddings { position = rotary }
  decoder {
    layers = 4
    attention { heads = 16, bias = false }
    feed_forward { intermediate_size = 8192, activation = swiglu, bias = false }
    norm = rms_norm { position = pre }
    final_norm = true
  }
  heads { logits = language_model }
}
";

/// The same architecture at toy size, for the output that must survive.
const SMALL: &str = "
model small {
  vocab_size = 64
  hidden_size = 16
  embeddings { position = rotary }
  decoder {
    layers = 1
    attention { heads = 2, bias = false }
    feed_forward { intermediate_size = 32, activation = swiglu, bias = false }
    norm = rms_norm { position = pre }
    final_norm = true
  }
  heads { logits = language_model }
}
";

fn tfc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tfc"));
    c.current_dir(root()).env("NO_COLOR", "1");
    c
}

/// Builds `spec` into `out` with external data and waits for success.
fn build_ok(spec: &Path, out: &Path) {
    let o = tfc()
        .args(["build", "--external-data", "always", "-o"])
        .arg(out)
        .arg(spec)
        .output()
        .expect("tfc runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Temporary files the writer leaves while working (`.NAME.XXXX.tmp`).
fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tmp"))
        .collect();
    out.sort();
    out
}

/// Waits until `child` has a temporary file of some size in `dir`.
fn wait_for_writing(child: &mut Child, dir: &Path) {
    let start = Instant::now();
    loop {
        let started = temp_files(dir)
            .iter()
            .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0));
        if started {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tfc ended before writing anything: {status}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no temporary file appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(ok.success());
}

struct Outputs {
    dir: tempfile::TempDir,
    spec: PathBuf,
    out: PathBuf,
    data: PathBuf,
    before: (Vec<u8>, Vec<u8>),
}

/// A folder with a finished small model at `model.onnx` (+ `.data`) and the
/// big spec that will try to replace it.
fn existing_output() -> Outputs {
    let dir = tempfile::tempdir().expect("temporary folder");
    let small = dir.path().join("small.tfm");
    let spec = dir.path().join("big.tfm");
    std::fs::write(&small, SMALL).expect("spec");
    std::fs::write(&spec, BIG).expect("spec");
    let out = dir.path().join("model.onnx");
    let data = dir.path().join("model.onnx.data");
    build_ok(&small, &out);
    let before = (
        std::fs::read(&out).expect("model"),
        std::fs::read(&data).expect("data"),
    );
    Outputs {
        dir,
        spec,
        out,
        data,
        before,
    }
}

fn assert_untouched(o: &Outputs) {
    assert_eq!(std::fs::read(&o.out).expect("model"), o.before.0);
    assert_eq!(std::fs::read(&o.data).expect("data"), o.before.1);
    assert_eq!(temp_files(o.dir.path()), Vec::<PathBuf>::new());
}

#[test]
fn sigint_while_writing_weights_keeps_the_old_output_and_no_temp_files() {
    let o = existing_output();
    let mut child = tfc()
        .args(["build", "--external-data", "always", "-o"])
        .arg(&o.out)
        .arg(&o.spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tfc starts");
    wait_for_writing(&mut child, o.dir.path());
    signal(&child, "-INT");
    let result = child.wait_with_output().expect("tfc ends");
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_untouched(&o);
}

#[test]
fn sigterm_is_handled_like_sigint() {
    let o = existing_output();
    let mut child = tfc()
        .args(["build", "--external-data", "always", "-o"])
        .arg(&o.out)
        .arg(&o.spec)
        .stderr(Stdio::piped())
        .spawn()
        .expect("tfc starts");
    wait_for_writing(&mut child, o.dir.path());
    signal(&child, "-TERM");
    let result = child.wait_with_output().expect("tfc ends");
    assert_eq!(result.status.code(), Some(130));
    assert_untouched(&o);
}

#[test]
fn a_full_disk_fails_cleanly() {
    // A 1 MiB tmpfs stands in for a full disk; mounting needs root, so the
    // case is skipped (and says so) where that is not possible.
    let mnt = tempfile::tempdir().expect("mount point");
    let mounted = Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tfc-full",
            &mnt.path().to_string_lossy(),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    let result = std::panic::catch_unwind(|| {
        let dir = mnt.path();
        let spec = dir.join("big.tfm");
        std::fs::write(&spec, BIG).expect("spec");
        let out = dir.join("model.onnx");
        std::fs::write(&out, b"previous model").expect("old output");
        let o = tfc()
            .args(["build", "--external-data", "always", "-o"])
            .arg(&out)
            .arg(&spec)
            .output()
            .expect("tfc runs");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("No space left on device"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(std::fs::read(&out).expect("old output"), b"previous model");
        assert!(!dir.join("model.onnx.data").exists());
        assert_eq!(temp_files(dir), Vec::<PathBuf>::new());
    });
    let _ = Command::new("umount").arg(mnt.path()).status();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

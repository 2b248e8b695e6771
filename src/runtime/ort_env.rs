//! Finding and loading the ONNX Runtime shared library.
//!
//! tfc does not link ONNX Runtime at build time; it loads `libonnxruntime.so*` when a model is
//! first run. The library is looked for, in order:
//!
//! 1. the path passed to [`init_ort`] (a file, or a folder holding one);
//! 2. the `ORT_DYLIB_PATH` environment variable, then `TFC_ORT_LIB`;
//! 3. a `.venv` in the current directory or one of its parents;
//! 4. the active virtual environment (`VIRTUAL_ENV`);
//! 5. a `.venv` next to the running executable or one of its parents (so `target/debug/tfc`
//!    finds the repository's `.venv`);
//! 6. the `onnxruntime` package of whatever `python3` is on `PATH`.
//!
//! Inside a virtual environment the library sits at
//! `lib/python3.*/site-packages/onnxruntime/capi/libonnxruntime.so.<version>`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::environment::Environment;

use super::RuntimeError;

/// The process-wide ONNX Runtime environment and the library it was loaded from.
///
/// ONNX Runtime allows one environment per process, and `ort` refuses to build a second one
/// even after the first is dropped, so the environment lives until the process exits.
static ORT: OnceLock<(Environment, PathBuf)> = OnceLock::new();

/// Serialises the first initialisation, so two threads never load the library twice.
static INIT: Mutex<()> = Mutex::new(());

/// Finds ONNX Runtime, loads it and creates the process-wide environment named `tfc`.
///
/// `explicit` is a library file, or a folder (an `onnxruntime/capi` folder or a virtual
/// environment) holding one; when `None`, the locations listed in the module documentation
/// are searched. Calling this again, from any thread, is cheap and returns `Ok(())` once the
/// library is loaded; a later `explicit` path is then ignored (see [`loaded_library`]).
pub fn init_ort(explicit: Option<&Path>) -> Result<(), RuntimeError> {
    environment(explicit).map(|_| ())
}

/// The library file ONNX Runtime was loaded from, once [`init_ort`] has succeeded.
pub fn loaded_library() -> Option<&'static Path> {
    ORT.get().map(|(_, path)| path.as_path())
}

/// The process-wide environment, initialising it first when needed.
pub(crate) fn environment(explicit: Option<&Path>) -> Result<&'static Environment, RuntimeError> {
    if let Some((env, _)) = ORT.get() {
        return Ok(env);
    }
    let _guard = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((env, _)) = ORT.get() {
        return Ok(env);
    }

    let library = find_library(&SearchContext::from_process(explicit))?;
    tracing::debug!(library = %library.display(), "loading ONNX Runtime");
    let builder = ort::init_from(&library).map_err(|err| RuntimeError::OrtLoad {
        path: library.clone(),
        message: err.to_string(),
    })?;
    // ONNX Runtime's own log lines go to tracing: an error it logs is also
    // returned to tfc, which reports it once, in its own words.
    let logger: ort::logging::LoggerFunction =
        std::sync::Arc::new(|level, category, _id, location, message| {
            use ort::logging::LogLevel;
            match level {
                LogLevel::Warning | LogLevel::Error | LogLevel::Fatal => {
                    tracing::debug!(%category, %location, "onnxruntime: {message}")
                }
                LogLevel::Verbose | LogLevel::Info => {
                    tracing::trace!(%category, %location, "onnxruntime: {message}")
                }
            }
        });
    let env = builder
        .with_name("tfc")
        .with_logger(logger)
        .build()
        .map_err(|source| RuntimeError::OrtEnvironment {
            path: library.clone(),
            source,
        })?;
    Ok(&ORT.get_or_init(|| (env, library)).0)
}

/// Everything the search looks at, gathered up front so the search itself is a pure function
/// of its inputs and can be tested without touching the process environment.
#[derive(Debug, Clone, Default)]
struct SearchContext {
    explicit: Option<PathBuf>,
    ort_dylib_path: Option<OsString>,
    tfc_ort_lib: Option<OsString>,
    cwd: Option<PathBuf>,
    virtual_env: Option<OsString>,
    exe: Option<PathBuf>,
    /// The Python interpreter to ask; `None` skips that step.
    python: Option<OsString>,
}

impl SearchContext {
    fn from_process(explicit: Option<&Path>) -> Self {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        SearchContext {
            explicit: explicit.map(Path::to_path_buf),
            ort_dylib_path: non_empty("ORT_DYLIB_PATH"),
            tfc_ort_lib: non_empty("TFC_ORT_LIB"),
            cwd: std::env::current_dir().ok(),
            virtual_env: non_empty("VIRTUAL_ENV"),
            exe: std::env::current_exe().ok(),
            python: Some(OsString::from("python3")),
        }
    }
}

/// Runs the search described in the module documentation.
fn find_library(ctx: &SearchContext) -> Result<PathBuf, RuntimeError> {
    let mut searched = Vec::new();

    // Locations the user named: a wrong one is an error rather than silently skipped.
    let named = [
        (
            "the explicit path",
            ctx.explicit.as_ref().map(PathBuf::from),
        ),
        (
            "ORT_DYLIB_PATH",
            ctx.ort_dylib_path.as_ref().map(PathBuf::from),
        ),
        ("TFC_ORT_LIB", ctx.tfc_ort_lib.as_ref().map(PathBuf::from)),
    ];
    for (origin, path) in named {
        let Some(path) = path else {
            searched.push(format!("{origin}: not given"));
            continue;
        };
        return library_at(&path).ok_or_else(|| RuntimeError::OrtPathInvalid {
            origin: origin.to_string(),
            path,
        });
    }

    // Virtual environments named `.venv` above the working directory.
    if let Some(cwd) = &ctx.cwd {
        if let Some(found) = search_venvs_above(cwd, "the working directory", &mut searched) {
            return Ok(found);
        }
    }

    // The active virtual environment.
    match &ctx.virtual_env {
        Some(venv) => {
            let venv = PathBuf::from(venv);
            if let Some(found) = library_in_venv(&venv) {
                return Ok(found);
            }
            searched.push(format!(
                "VIRTUAL_ENV={}: no onnxruntime package",
                venv.display()
            ));
        }
        None => searched.push("VIRTUAL_ENV: not set".to_string()),
    }

    // Virtual environments named `.venv` above the executable.
    if let Some(exe_dir) = ctx.exe.as_deref().and_then(Path::parent) {
        if let Some(found) = search_venvs_above(exe_dir, "the executable", &mut searched) {
            return Ok(found);
        }
    }

    // The Python interpreter on PATH.
    if let Some(python) = &ctx.python {
        match ask_python(python) {
            Ok(package_dir) => {
                if let Some(found) = library_at(&package_dir) {
                    return Ok(found);
                }
                let shown = package_dir.display();
                searched.push(format!("{python:?}: onnxruntime at {shown} has no library"));
            }
            Err(why) => searched.push(format!("{python:?}: {why}")),
        }
    }

    Err(RuntimeError::OrtNotFound { searched })
}

/// Looks for `.venv` in `start` and each of its ancestors, recording each one tried.
fn search_venvs_above(start: &Path, what: &str, searched: &mut Vec<String>) -> Option<PathBuf> {
    let mut tried = Vec::new();
    for dir in start.ancestors() {
        let venv = dir.join(".venv");
        if !venv.is_dir() {
            continue;
        }
        if let Some(found) = library_in_venv(&venv) {
            return Some(found);
        }
        tried.push(venv.display().to_string());
    }
    let detail = if tried.is_empty() {
        "none found".to_string()
    } else {
        format!("no onnxruntime package in {}", tried.join(", "))
    };
    let shown = start.display();
    searched.push(format!(
        ".venv in {shown} and its parents ({what}): {detail}"
    ));
    None
}

/// Resolves a user-named path: the library file itself, an `onnxruntime` package or `capi`
/// folder, or a virtual environment.
fn library_at(path: &Path) -> Option<PathBuf> {
    if path.is_file() {
        return Some(path.to_path_buf());
    }
    if !path.is_dir() {
        return None;
    }
    library_in_dir(path)
        .or_else(|| library_in_dir(&path.join("capi")))
        .or_else(|| library_in_venv(path))
}

/// Finds `lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*` under a virtual
/// environment.
fn library_in_venv(venv: &Path) -> Option<PathBuf> {
    // `lib64` is usually a link to `lib`; look there only when `lib` has nothing.
    ["lib", "lib64"].iter().find_map(|lib| {
        let mut python_dirs: Vec<PathBuf> = std::fs::read_dir(venv.join(lib))
            .ok()?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
            .map(|entry| entry.path())
            .collect();
        python_dirs.sort();
        python_dirs
            .iter()
            .rev()
            .find_map(|dir| library_in_dir(&dir.join("site-packages/onnxruntime/capi")))
    })
}

/// The ONNX Runtime library in `dir`, preferring the highest versioned name
/// (`libonnxruntime.so.1.31.1` over a bare `libonnxruntime.so`).
fn library_in_dir(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| is_library_name(&entry.file_name().to_string_lossy()))
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// Whether a file name is the main ONNX Runtime library (not a provider plug-in such as
/// `libonnxruntime_providers_shared.so`).
fn is_library_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("libonnxruntime.") else {
        return false;
    };
    rest == "so" || rest.starts_with("so.") || rest.ends_with("dylib")
}

/// Asks a Python interpreter where its `onnxruntime` package is installed.
fn ask_python(python: &OsString) -> Result<PathBuf, String> {
    let script = "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))";
    let output = Command::new(python)
        .args(["-c", script])
        .output()
        .map_err(|err| format!("could not run it ({err})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("no error output").trim();
        return Err(format!("`import onnxruntime` failed: {last}"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(PathBuf::from(stdout.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake virtual environment holding an empty file where the library would be.
    fn fake_venv(root: &Path) -> PathBuf {
        let capi = root.join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime_providers_shared.so"), b"").unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.31.1"), b"").unwrap();
        capi.join("libonnxruntime.so.1.31.1")
    }

    #[test]
    fn library_names() {
        assert!(is_library_name("libonnxruntime.so"));
        assert!(is_library_name("libonnxruntime.so.1.31.1"));
        assert!(is_library_name("libonnxruntime.1.31.1.dylib"));
        assert!(!is_library_name("libonnxruntime_providers_shared.so"));
        assert!(!is_library_name("onnxruntime_pybind11_state.so"));
    }

    #[test]
    fn finds_venv_above_the_working_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let expected = fake_venv(&tmp.path().join(".venv"));
        let nested = tmp.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let ctx = SearchContext {
            cwd: Some(nested),
            ..SearchContext::default()
        };
        assert_eq!(find_library(&ctx).unwrap(), expected);
    }

    #[test]
    fn finds_venv_above_the_executable() {
        let tmp = tempfile::tempdir().unwrap();
        let expected = fake_venv(&tmp.path().join(".venv"));
        let ctx = SearchContext {
            cwd: Some(tmp.path().join("elsewhere")),
            exe: Some(tmp.path().join("target/debug/tfc")),
            ..SearchContext::default()
        };
        assert_eq!(find_library(&ctx).unwrap(), expected);
    }

    #[test]
    fn explicit_path_wins_and_accepts_a_venv_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let expected = fake_venv(&tmp.path().join("explicit"));
        fake_venv(&tmp.path().join(".venv"));
        let ctx = SearchContext {
            explicit: Some(tmp.path().join("explicit")),
            ort_dylib_path: Some(tmp.path().join(".venv").into()),
            cwd: Some(tmp.path().to_path_buf()),
            ..SearchContext::default()
        };
        assert_eq!(find_library(&ctx).unwrap(), expected);
    }

    #[test]
    fn a_wrong_named_path_is_an_error() {
        let ctx = SearchContext {
            ort_dylib_path: Some("/nonexistent/libonnxruntime.so".into()),
            ..SearchContext::default()
        };
        let message = find_library(&ctx).unwrap_err().to_string();
        assert!(message.contains("ORT_DYLIB_PATH points to `/nonexistent/libonnxruntime.so`"));
    }

    #[test]
    fn not_found_lists_every_location_and_the_install_command() {
        let tmp = tempfile::tempdir().unwrap();
        let ctx = SearchContext {
            cwd: Some(tmp.path().to_path_buf()),
            virtual_env: Some(tmp.path().join("venv").into()),
            python: Some("tfc-no-such-python".into()),
            ..SearchContext::default()
        };
        let message = find_library(&ctx).unwrap_err().to_string();
        for expected in [
            "ORT_DYLIB_PATH: not given",
            "TFC_ORT_LIB: not given",
            "(the working directory): none found",
            "VIRTUAL_ENV=",
            "\"tfc-no-such-python\": could not run it",
            "pip install onnxruntime==1.31.1",
            "bash scripts/setup.sh",
        ] {
            assert!(
                message.contains(expected),
                "{expected:?} missing in:\n{message}"
            );
        }
    }
}

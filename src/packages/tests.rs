use serde_json::json;

use super::*;

fn settings(dir: &Path) -> PackageSettings {
    PackageSettings {
        enabled: true,
        startup: vec!["humanize".into(), "pyfiglet==1.0.4".into()],
        cache_bytes: 1 << 20,
        cache_dir: Some(dir.join("cache")),
        sessions_root: dir.join("sessions-root"),
        pip_python: PathBuf::from("python3"),
    }
}

fn params(value: &Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

#[test]
fn installs_off_means_no_service() {
    let tmp = tempfile::tempdir().unwrap();
    let mut off = settings(tmp.path());
    off.enabled = false;
    assert!(Packages::new(&off, "wasi").is_none());
    off.enabled = true;
    off.cache_dir = None;
    assert!(Packages::new(&off, "wasi").is_none());
}

#[test]
fn a_session_directory_is_readable_and_goes_with_its_session() {
    let tmp = tempfile::tempdir().unwrap();
    let packages = Packages::new(&settings(tmp.path()), "wasi").unwrap();
    let session = packages.open_session().unwrap();
    let dir = session.host_dir().to_path_buf();
    assert!(dir.is_dir());
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let other = packages.open_session().unwrap();
    assert_ne!(other.host_dir(), dir);
    drop(session);
    assert!(!dir.exists());
}

#[test]
fn directories_of_dead_bridges_are_swept_and_live_ones_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions-root").join("sessions");
    // Pid 1 is alive; no process has a pid this large.
    for name in ["1-1", "2147483646-1", "junk"] {
        fs::create_dir_all(sessions.join(name)).unwrap();
    }
    let _packages = Packages::new(&settings(tmp.path()), "docker").unwrap();
    assert!(sessions.join("1-1").exists());
    assert!(!sessions.join("2147483646-1").exists());
    assert!(!sessions.join("junk").exists());
}

#[test]
fn the_startup_code_names_each_requirement_once() {
    let tmp = tempfile::tempdir().unwrap();
    let packages = Packages::new(&settings(tmp.path()), "wasi").unwrap();
    let code = packages.startup_code().unwrap();
    assert!(
        code.ends_with(".install(*[\"humanize\",\"pyfiglet==1.0.4\"])"),
        "{code}"
    );
}

#[test]
fn an_install_call_is_checked_before_pip_sees_it() {
    let good = json!({"requirements": ["humanize"], "python": "3.11", "machine": "x86_64",
                      "libc": "glibc 2.36", "provided": [["numpy", "2.5.2"], ["bad name", "1"],
                      ["x", "1-2"], "junk"]});
    let request = InstallRequest::parse(&params(&good), Family::Linux).unwrap();
    assert_eq!(request.provided, vec![("numpy".into(), "2.5.2".into())]);
    for bad in [
        json!({"requirements": [], "python": "3.15"}),
        json!({"requirements": "humanize", "python": "3.15"}),
        json!({"requirements": ["--pre"], "python": "3.15"}),
        json!({"requirements": [1], "python": "3.15"}),
        json!({"requirements": ["humanize"], "python": "4.0"}),
        json!({"requirements": ["humanize"]}),
        json!({"requirements": ["humanize"], "python": "3.15", "provided": {}}),
    ] {
        let err = InstallRequest::parse(&params(&bad), Family::PureOnly).err();
        assert_eq!(err.map(|e| e.kind()), Some("invalid_params"), "{bad}");
    }
}

#[test]
fn what_the_sandbox_has_is_written_as_empty_wheels_and_pins() {
    let tmp = tempfile::tempdir().unwrap();
    let links = tmp.path().join("links");
    let constraints = tmp.path().join("c.txt");
    let provided = vec![
        ("scikit_learn".to_string(), "1.9.1".to_string()),
        ("Scikit-Learn".to_string(), "1.0".to_string()),
    ];
    write_provided(&links, &constraints, &provided).unwrap();
    assert_eq!(
        fs::read_to_string(&constraints).unwrap(),
        "scikit_learn==1.9.1\n"
    );
    let wheel = links.join("scikit_learn-1.9.1-py3-none-any.whl");
    let mut archive = zip::ZipArchive::new(fs::File::open(wheel).unwrap()).unwrap();
    let mut metadata = String::new();
    std::io::Read::read_to_string(
        &mut archive
            .by_name("scikit_learn-1.9.1.dist-info/METADATA")
            .unwrap(),
        &mut metadata,
    )
    .unwrap();
    assert!(metadata.contains("Name: scikit_learn\nVersion: 1.9.1\n"));
}

#[test]
fn file_names_from_urls_are_decoded() {
    assert_eq!(
        percent_decode("a-1.0%2Blocal-py3-none-any.whl"),
        "a-1.0+local-py3-none-any.whl"
    );
    assert_eq!(percent_decode("100%"), "100%");
}

#[test]
fn the_guest_runtime_accepts_paths_under_the_same_directory() {
    let line = format!("PACKAGES_DIR = \"{GUEST_DIR}\"");
    assert!(
        sandbox_core::guest::RUNTIME_SOURCE.contains(&line),
        "{line}"
    );
}

#[test]
fn the_sessions_root_is_private_to_this_user_yet_passable() {
    let tmp = tempfile::tempdir().unwrap();
    let packages = Packages::new(&settings(tmp.path()), "oci").unwrap();
    let root = tmp.path().join("sessions-root");
    assert_eq!(
        fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o711
    );
    let session = packages.open_session().unwrap();
    assert!(session.host_dir().starts_with(&root));
}

#[test]
fn a_planted_link_is_not_used_as_the_sessions_root() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, tmp.path().join("sessions-root")).unwrap();
    assert!(Packages::new(&settings(tmp.path()), "oci").is_none());
}

//! The client's MCP roots as grants: each `file://` root becomes `/data/<last component>`.
//!
//! What it trusts: the client names the directories its user works in. What it guarantees:
//! the same roots in the same order always give the same names (a clash gets `-2`, `-3`, …
//! in order, after the configured grants); a root that is not a `file://` URI, or not an
//! existing directory, is skipped with a reason, never granted half.

use std::path::Path;

use super::{MountGrant, MountRequest, grant, valid_name};

/// A name for the directory `host`: its last component, with characters outside the name
/// set replaced by `_`, cut to 64 bytes; `root` when nothing is left.
fn name_for(host: &Path) -> String {
    let last = host
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if !valid_name(&name) {
        name = "root".to_string();
    }
    name
}

/// `base`, or `base-2`, `base-3`, … : the first not in `taken`, within 64 bytes.
fn unique(base: &str, taken: &[&str]) -> String {
    if !taken.contains(&base) {
        return base.to_string();
    }
    // Of `taken.len() + 1` candidates at least one is free.
    (2..=taken.len() + 2)
        .map(|n| {
            let suffix = format!("-{n}");
            let keep = 64 - suffix.len();
            format!("{}{suffix}", &base[..base.len().min(keep)])
        })
        .find(|name| !taken.contains(&name.as_str()))
        .expect("more candidates than taken names")
}

/// Grants for the roots `uris`, named apart from `taken` (the configured grants) and from
/// each other. Returns the grants and, for each root skipped, why.
pub fn grants_from_roots<'a>(
    uris: impl IntoIterator<Item = &'a str>,
    taken: &[MountGrant],
) -> (Vec<MountGrant>, Vec<String>) {
    let mut grants: Vec<MountGrant> = Vec::new();
    let mut skipped = Vec::new();
    for uri in uris {
        let path = match url::Url::parse(uri) {
            Ok(url) if url.scheme() == "file" => url.to_file_path().ok(),
            _ => None,
        };
        let Some(path) = path else {
            skipped.push(format!("root {uri:?} is not a file:// URI of a local path"));
            continue;
        };
        let request = MountRequest {
            name: name_for(&path),
            host: path,
        };
        let granted = match grant(&request) {
            Ok(granted) => granted,
            Err(e) => {
                skipped.push(format!("root {uri:?}: {}", sandbox_core::error_chain(&e)));
                continue;
            }
        };
        if taken.iter().chain(&grants).any(|g| g.host == granted.host) {
            continue;
        }
        let names: Vec<&str> = taken
            .iter()
            .chain(&grants)
            .map(|g| g.name.as_str())
            .collect();
        let name = unique(&granted.name, &names);
        grants.push(MountGrant { name, ..granted });
    }
    (grants, skipped)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file_uri(path: &Path) -> String {
        url::Url::from_file_path(path).unwrap().to_string()
    }

    #[test]
    fn roots_are_named_after_their_last_component_and_clashes_numbered() {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["a/data", "b/data", "c/data", "my project"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let taken = [MountGrant {
            name: "data".into(),
            host: PathBuf::from("/srv/data"),
        }];
        let uris: Vec<String> = ["a/data", "b/data", "my project", "c/data"]
            .iter()
            .map(|sub| file_uri(&dir.path().join(sub)))
            .collect();
        let (grants, skipped) = grants_from_roots(uris.iter().map(String::as_str), &taken);
        assert!(skipped.is_empty(), "{skipped:?}");
        let names: Vec<&str> = grants.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["data-2", "data-3", "my_project", "data-4"]);
        // The same roots give the same names again.
        let (again, _) = grants_from_roots(uris.iter().map(String::as_str), &taken);
        assert_eq!(again, grants);
    }

    #[test]
    fn other_schemes_missing_dirs_and_repeats_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let here = file_uri(dir.path());
        let gone = file_uri(&dir.path().join("gone"));
        let uris = [
            "https://example.com/x",
            "not a uri",
            gone.as_str(),
            here.as_str(),
            here.as_str(),
        ];
        let (grants, skipped) = grants_from_roots(uris, &[]);
        assert_eq!(grants.len(), 1, "{grants:?}");
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[2].contains("gone"), "{skipped:?}");
    }

    #[test]
    fn odd_names_become_safe_ones() {
        assert_eq!(name_for(Path::new("/")), "root");
        assert_eq!(name_for(Path::new("/x/..")), "root");
        assert_eq!(name_for(Path::new("/x/é t")), "__t");
        assert_eq!(
            name_for(Path::new(&format!("/{}", "x".repeat(100)))).len(),
            64
        );
        let long = "n".repeat(64);
        assert_eq!(unique(&long, &[long.as_str()]).len(), 64);
    }
}

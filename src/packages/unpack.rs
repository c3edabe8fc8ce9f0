//! Unpacking a wheel into a directory the sandbox will read.
//!
//! What is trusted: nothing in the archive. Each member's path is checked before it touches
//! the file system (no absolute paths, no `..`, nothing outside the target), members are
//! written as plain files (no links, no special modes: read-only for the sandbox, never
//! executable), and the bytes written are counted against a budget, so a zip bomb stops at
//! the cap. Only the installable part of a wheel is kept: its packages, its `.dist-info`,
//! and `*.data/purelib` and `*.data/platlib` moved to the top as an installer does;
//! scripts, headers and data files are left out. Nothing in the wheel is ever run.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Why a wheel could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The archive is not a readable zip.
    #[error("cannot read the wheel {}", path.display())]
    Zip {
        /// The wheel.
        path: PathBuf,
        /// What went wrong.
        source: zip::result::ZipError,
    },
    /// Writing the unpacked files failed.
    #[error("cannot write {}", path.display())]
    Io {
        /// What was being written.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The unpacked files would pass the budget.
    #[error("unpacked, it would be larger than {budget} bytes")]
    TooLarge {
        /// The budget it passed.
        budget: u64,
    },
}

/// Unpack the wheel at `wheel` into `into`, writing at most `budget` bytes; returns the
/// bytes written.
pub fn unpack_wheel(wheel: &Path, into: &Path, budget: u64) -> Result<u64, UnpackError> {
    let zip_error = |source| UnpackError::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let file = fs::File::open(wheel).map_err(|source| UnpackError::Io {
        path: wheel.to_path_buf(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    let mut written: u64 = 0;
    for index in 0..archive.len() {
        let mut member = archive.by_index(index).map_err(zip_error)?;
        if member.is_dir() {
            continue;
        }
        let Some(relative) = member.enclosed_name().and_then(|p| installed_path(&p)) else {
            continue;
        };
        let path = into.join(&relative);
        let io_error = |source| UnpackError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut out = fs::File::create(&path).map_err(io_error)?;
        let left = budget.saturating_sub(written);
        let copied = io::copy(&mut (&mut member).take(left + 1), &mut out).map_err(io_error)?;
        if copied > left {
            return Err(UnpackError::TooLarge { budget });
        }
        written += copied;
    }
    Ok(written)
}

/// Where a member of a wheel goes, relative to the install directory; `None`: left out.
fn installed_path(member: &Path) -> Option<PathBuf> {
    let parts: Vec<&str> = member
        .components()
        .map(|c| match c {
            Component::Normal(part) => part.to_str(),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if parts.iter().any(|p| p.contains('\\')) {
        return None;
    }
    match parts.as_slice() {
        [top, scheme, rest @ ..] if is_data_dir(top) => matches!(*scheme, "purelib" | "platlib")
            .then(|| rest.iter().collect::<PathBuf>())
            .filter(|p| p.components().next().is_some()),
        [top, ..] if is_data_dir(top) => None,
        _ => Some(parts.iter().collect()),
    }
}

/// A wheel's `<name>-<version>.data` directory.
fn is_data_dir(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("data"))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use zip::ZipWriter;
    use zip::write::SimpleFileOptions;

    use super::*;

    fn make_wheel(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = ZipWriter::new(fs::File::create(path).unwrap());
        for (name, body) in members {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(body).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn the_installable_part_is_unpacked_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("demo-1.0-py3-none-any.whl");
        make_wheel(
            &wheel,
            &[
                ("demo/__init__.py", b"X = 1\n"),
                ("demo-1.0.dist-info/METADATA", b"Name: demo\n"),
                ("demo-1.0.data/purelib/extra.py", b"Y = 2\n"),
                ("demo-1.0.data/scripts/run", b"#!/bin/sh\n"),
                ("../escape.py", b"bad"),
                ("/abs.py", b"bad"),
            ],
        );
        let into = tmp.path().join("site");
        let written = unpack_wheel(&wheel, &into, 1 << 20).unwrap();
        assert_eq!(written, 6 + 11 + 6);
        assert_eq!(fs::read(into.join("demo/__init__.py")).unwrap(), b"X = 1\n");
        assert!(into.join("demo-1.0.dist-info/METADATA").is_file());
        assert!(into.join("extra.py").is_file());
        assert!(!into.join("demo-1.0.data").exists());
        assert!(!tmp.path().join("escape.py").exists());
        assert!(!into.join("escape.py").exists());
    }

    #[test]
    fn a_wheel_larger_than_the_budget_stops_at_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp.path().join("big-1.0-py3-none-any.whl");
        let zeros = vec![0u8; 4096];
        make_wheel(&wheel, &[("big/a.bin", &zeros), ("big/b.bin", &zeros)]);
        let into = tmp.path().join("site");
        assert!(matches!(
            unpack_wheel(&wheel, &into, 5000),
            Err(UnpackError::TooLarge { budget: 5000 })
        ));
        assert!(unpack_wheel(&wheel, &tmp.path().join("ok"), 8192).is_ok());
    }
}

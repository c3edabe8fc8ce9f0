//! Wheels kept by their sha256, under a size cap, oldest used evicted first.
//!
//! What it guarantees: a file in the cache is named by the sha256 of its content, checked
//! when it was added (a wheel whose content does not match the hash it was fetched for never
//! enters); it is written under a temporary name and renamed, so a reader never sees half a
//! wheel. Each use refreshes a wheel's modification time, which is the eviction order.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Why the cache could not take or give a wheel.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Reading or writing the cache failed.
    #[error("{action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// To what.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The content did not match the hash it was fetched for.
    #[error("{} has sha256 {actual}, but the index said {expected}", path.display())]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// What the resolver reported.
        expected: String,
        /// What the file holds.
        actual: String,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CacheError {
    let path = path.to_path_buf();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

/// The wheel cache in one directory.
#[derive(Debug)]
pub struct WheelCache {
    dir: PathBuf,
    cap_bytes: u64,
}

impl WheelCache {
    /// A cache in `dir` holding at most `cap_bytes` of wheels.
    pub fn new(dir: PathBuf, cap_bytes: u64) -> Self {
        Self { dir, cap_bytes }
    }

    /// The size cap.
    pub fn cap_bytes(&self) -> u64 {
        self.cap_bytes
    }

    /// The cached wheel with this sha256 (lowercase hex), refreshed as just used.
    pub fn get(&self, sha256: &str) -> Option<PathBuf> {
        let path = self.path_of(sha256)?;
        let file = fs::File::options().append(true).open(&path).ok()?;
        let _ = file.set_modified(SystemTime::now());
        Some(path)
    }

    /// Move the downloaded wheel at `file` into the cache, after checking it hashes to
    /// `sha256`. Returns its path in the cache.
    pub fn add(&self, file: &Path, sha256: &str) -> Result<PathBuf, CacheError> {
        let actual = sha256_of(file)?;
        let Some(path) = self.path_of(sha256).filter(|_| actual == sha256) else {
            return Err(CacheError::HashMismatch {
                path: file.to_path_buf(),
                expected: sha256.to_string(),
                actual,
            });
        };
        fs::create_dir_all(&self.dir).map_err(io_error("cannot create", &self.dir))?;
        let partial = self
            .dir
            .join(format!(".{sha256}.{}.partial", std::process::id()));
        fs::copy(file, &partial).map_err(io_error("cannot copy into", &partial))?;
        fs::rename(&partial, &path).map_err(io_error("cannot rename into place", &path))?;
        Ok(path)
    }

    /// Remove the least recently used wheels until the cache is within its cap.
    pub fn evict(&self) -> Result<u64, CacheError> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut wheels: Vec<(SystemTime, u64, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".whl"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = wheels.iter().map(|(_, len, _)| len).sum();
        wheels.sort();
        let mut removed = 0;
        for (_, len, path) in wheels {
            if total <= self.cap_bytes {
                break;
            }
            fs::remove_file(&path).map_err(io_error("cannot evict", &path))?;
            total -= len;
            removed += 1;
        }
        Ok(removed)
    }

    /// Where a wheel with this hash lives; `None` unless `sha256` is 64 lowercase hex digits.
    fn path_of(&self, sha256: &str) -> Option<PathBuf> {
        let ok = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| self.dir.join(format!("{sha256}.whl")))
    }
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_of(path: &Path) -> Result<String, CacheError> {
    let mut file = fs::File::open(path).map_err(io_error("cannot open", path))?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(io_error("cannot read", path))?;
    Ok(crate::digest::hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn wheel(dir: &Path, name: &str, bytes: usize) -> (PathBuf, String) {
        let path = dir.join(name);
        fs::write(&path, vec![name.as_bytes()[0]; bytes]).unwrap();
        let sha = sha256_of(&path).unwrap();
        (path, sha)
    }

    #[test]
    fn a_wheel_enters_only_under_its_own_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = WheelCache::new(tmp.path().join("wheels"), 1 << 20);
        let (file, sha) = wheel(tmp.path(), "a.whl", 10);
        let wrong = "0".repeat(64);
        assert!(matches!(
            cache.add(&file, &wrong),
            Err(CacheError::HashMismatch { .. })
        ));
        assert!(cache.get(&wrong).is_none());
        let cached = cache.add(&file, &sha).unwrap();
        assert_eq!(cache.get(&sha), Some(cached.clone()));
        assert_eq!(sha256_of(&cached).unwrap(), sha);
        assert!(cache.get("../../etc/passwd").is_none());
        assert!(cache.get(&sha.to_uppercase()).is_none());
    }

    #[test]
    fn the_least_recently_used_wheels_go_first_when_over_the_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = WheelCache::new(tmp.path().join("wheels"), 250);
        let mut shas = Vec::new();
        for name in ["a.whl", "b.whl", "c.whl"] {
            let (file, sha) = wheel(tmp.path(), name, 100);
            let cached = cache.add(&file, &sha).unwrap();
            // Distinct times, oldest first, whatever the file system's resolution.
            let age = Duration::from_secs(100 - 10 * shas.len() as u64);
            fs::File::options()
                .append(true)
                .open(&cached)
                .unwrap()
                .set_modified(SystemTime::now() - age)
                .unwrap();
            shas.push(sha);
        }
        // Using `a` makes `b` the oldest.
        assert!(cache.get(&shas[0]).is_some());
        assert_eq!(cache.evict().unwrap(), 1);
        assert!(cache.get(&shas[1]).is_none());
        assert!(cache.get(&shas[0]).is_some());
        assert!(cache.get(&shas[2]).is_some());
    }
}

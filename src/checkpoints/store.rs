//! Where checkpoints live: `<root>/<scope>/<session>.ckpt`, one file per named session.
//!
//! `<scope>` is the SHA-256 of the scope's identity (for stdio the client's name from
//! `initialize`, over HTTP the tenant), so any identity gives one plain folder and two
//! scopes never share a file. Session names are checked by the caller
//! (`sessions::validate_name`) and again here before they touch a path.
//!
//! Guarantees: folders are created 0700 and files written 0600, atomically (a reader sees
//! the old checkpoint or the new one); a checkpoint over the size cap is refused with its
//! size named; reads are bounded by the same cap, so a planted huge file is refused, never
//! read whole. All calls block on file I/O.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sandbox_core::atomic_file::{Mode, write_atomic};

use super::format::{self, FormatError, Header};
use crate::digest::sha256_hex;

/// The file name extension of checkpoints.
const EXTENSION: &str = "ckpt";

/// What went wrong storing or reading a checkpoint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The checkpoint is larger than the cap.
    #[error("the checkpoint is {bytes} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        /// Its size.
        bytes: u64,
        /// The cap.
        limit: u64,
    },
    /// A session name that may not become a file name.
    #[error("session name {0:?} cannot name a checkpoint")]
    BadName(String),
    /// The file is there but cannot be read as a checkpoint.
    #[error("the checkpoint of session {session:?} cannot be read")]
    Unreadable {
        /// The session.
        session: String,
        /// Why.
        #[source]
        source: FormatError,
    },
    /// The file system refused.
    #[error("cannot {operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

fn io_error(operation: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        operation,
        path,
        source,
    }
}

/// One stored checkpoint, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The session's name.
    pub session: String,
    /// Size of the file.
    pub bytes: u64,
    /// Its header.
    pub header: Header,
}

/// The checkpoints of one bridge, under one root folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    limit: u64,
}

impl Store {
    /// A store under `root` (created when first written), refusing files over `limit` bytes.
    pub fn new(root: PathBuf, limit: u64) -> Self {
        Self { root, limit }
    }

    /// The largest checkpoint file it keeps.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn scope_dir(&self, scope: &str) -> PathBuf {
        self.root.join(sha256_hex(scope.as_bytes()))
    }

    fn file(&self, scope: &str, session: &str) -> Result<PathBuf, StoreError> {
        let plain = !session.is_empty()
            && session.len() <= 128
            && !session.starts_with('.')
            && session
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !plain {
            return Err(StoreError::BadName(session.to_string()));
        }
        Ok(self.scope_dir(scope).join(format!("{session}.{EXTENSION}")))
    }

    /// Whether `session` in `scope` may have a checkpoint: false only when its file surely
    /// does not exist. One `stat`, cheap enough to ask on an async task before paying for
    /// a [`Store::load`] on the blocking pool.
    pub fn may_have(&self, scope: &str, session: &str) -> bool {
        match self.file(scope, session) {
            Ok(path) => !matches!(
                fs::symlink_metadata(&path),
                Err(e) if e.kind() == io::ErrorKind::NotFound
            ),
            Err(_) => true, // `load` says why
        }
    }

    /// Store the checkpoint of `session` in `scope`, replacing any older one.
    pub fn save(
        &self,
        scope: &str,
        session: &str,
        header: Header,
        payload: &[u8],
    ) -> Result<(), StoreError> {
        let path = self.file(scope, session)?;
        let bytes = format::encode(header, payload);
        if bytes.len() as u64 > self.limit {
            return Err(StoreError::TooLarge {
                bytes: bytes.len() as u64,
                limit: self.limit,
            });
        }
        let dir = self.scope_dir(scope);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error("create the folder", &dir))?;
        write_atomic(&path, &bytes, Mode::Masked(0o600)).map_err(io_error("write", &path))
    }

    /// The checkpoint of `session` in `scope`: `None` when there is none.
    pub fn load(
        &self,
        scope: &str,
        session: &str,
    ) -> Result<Option<(Header, Vec<u8>)>, StoreError> {
        let path = self.file(scope, session)?;
        let Some(bytes) = self.read_bounded(&path)? else {
            return Ok(None);
        };
        let (header, payload) =
            format::decode(&bytes).map_err(|source| StoreError::Unreadable {
                session: session.to_string(),
                source,
            })?;
        Ok(Some((header, payload.to_vec())))
    }

    fn read_bounded(&self, path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", path)(e)),
        };
        let mut bytes = Vec::new();
        file.take(self.limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", path))?;
        if bytes.len() as u64 > self.limit {
            return Err(StoreError::TooLarge {
                bytes: bytes.len() as u64,
                limit: self.limit,
            });
        }
        Ok(Some(bytes))
    }

    /// Remove the checkpoint of `session` in `scope`; true when there was one.
    pub fn discard(&self, scope: &str, session: &str) -> Result<bool, StoreError> {
        let path = self.file(scope, session)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &path)(e)),
        }
    }

    /// Copy the checkpoint of `from` to `to` in the same scope (a fork); false when `from`
    /// has none.
    pub fn copy(&self, scope: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        match self.load(scope, from)? {
            Some((header, payload)) => self.save(scope, to, header, &payload).map(|()| true),
            None => Ok(false),
        }
    }

    /// Remove every checkpoint of every scope last written more than `max_age` ago; the
    /// number removed.
    pub fn prune(&self, max_age: Duration) -> Result<usize, StoreError> {
        let now = SystemTime::now();
        let mut removed = 0;
        for scope in read_dir_or_empty(&self.root)? {
            for file in read_dir_or_empty(&scope)? {
                let old = fs::symlink_metadata(&file)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| now.duration_since(modified).ok())
                    .is_some_and(|age| age > max_age);
                if old && file.extension().is_some_and(|e| e == EXTENSION) {
                    fs::remove_file(&file).map_err(io_error("remove", &file))?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The checkpoints of `scope`, by session name; unreadable files are left out.
    pub fn list(&self, scope: &str) -> Result<Vec<Stored>, StoreError> {
        Self::list_dir(&self.scope_dir(scope))
    }

    /// The checkpoints of every scope, by scope and session name (headers only: a listing
    /// never reads a payload); unreadable files are left out.
    pub fn list_all(&self) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for dir in read_dir_or_empty(&self.root)? {
            if dir.is_dir() && dir.file_name().is_some_and(|n| n.len() == 64) {
                out.extend(Self::list_dir(&dir)?);
            }
        }
        out.sort_by(|a, b| (&a.header.scope, &a.session).cmp(&(&b.header.scope, &b.session)));
        Ok(out)
    }

    /// Where the store keeps its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn list_dir(dir: &Path) -> Result<Vec<Stored>, StoreError> {
        let mut out = Vec::new();
        for file in read_dir_or_empty(dir)? {
            let Some(session) = file
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".ckpt"))
                .filter(|n| !n.starts_with('.'))
            else {
                continue;
            };
            if let Ok((header, bytes)) = read_header(&file) {
                out.push(Stored {
                    session: session.to_string(),
                    bytes,
                    header,
                });
            }
        }
        out.sort_by(|a, b| a.session.cmp(&b.session));
        Ok(out)
    }
}

/// The header of the checkpoint file at `path` and the file's size, reading no more than
/// the header.
fn read_header(path: &Path) -> Result<(Header, u64), StoreError> {
    let file = fs::File::open(path).map_err(io_error("open", path))?;
    let size = file.metadata().map_err(io_error("read", path))?.len();
    let mut prefix = Vec::new();
    let most = (format::MAGIC.len() + 4 + format::MAX_HEADER_BYTES) as u64;
    file.take(most)
        .read_to_end(&mut prefix)
        .map_err(io_error("read", path))?;
    let (header, _) = format::decode_header(&prefix).map_err(|source| StoreError::Unreadable {
        session: path.display().to_string(),
        source,
    })?;
    Ok((header, size))
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_error("list", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn header() -> Header {
        Header {
            created_at_unix: 1,
            scope: "stdio:a".into(),
            interpreter: "CPython 3.15.0".into(),
            backend: "wasi".into(),
            runtime: "r".into(),
            names: vec!["x".into()],
            unsaveable: Vec::new(),
            payload_bytes: 0,
            payload_sha256: String::new(),
        }
    }

    fn sessions(store: &Store, scope: &str) -> Vec<String> {
        let listed = store.list(scope).expect("listed");
        listed.into_iter().map(|s| s.session).collect()
    }

    fn store(limit: u64) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::new(dir.path().join("checkpoints"), limit);
        (dir, store)
    }

    #[test]
    fn a_checkpoint_round_trips_privately_and_scopes_do_not_meet() {
        let (_dir, store) = store(1 << 20);
        store
            .save("client-a", "work", header(), b"state")
            .expect("saved");
        let (read, payload) = store
            .load("client-a", "work")
            .expect("read")
            .expect("there");
        assert_eq!(
            (read.names, payload.as_slice()),
            (vec!["x".to_string()], &b"state"[..])
        );
        assert!(store.load("client-b", "work").expect("read").is_none());
        assert!(store.may_have("client-a", "work"));
        assert!(
            !store.may_have("client-b", "work"),
            "another scope's checkpoint"
        );
        assert!(
            store.may_have("client-a", "../x"),
            "a bad name is for `load` to refuse"
        );
        let path = store.file("client-a", "work").expect("a file");
        let mode = |p: &Path| fs::metadata(p).expect("there").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("a folder")), 0o700);
    }

    #[test]
    fn fork_discard_and_list() {
        let (_dir, store) = store(1 << 20);
        store.save("s", "a", header(), b"one").expect("saved");
        assert!(store.copy("s", "a", "b").expect("copied"));
        assert!(!store.copy("s", "missing", "c").expect("nothing to copy"));
        let names = sessions(&store, "s");
        assert_eq!(names, ["a", "b"]);
        assert!(store.discard("s", "a").expect("removed"));
        assert!(!store.discard("s", "a").expect("already gone"));
        assert_eq!(
            store.load("s", "b").expect("read").expect("there").1,
            b"one"
        );
    }

    #[test]
    fn too_large_is_refused_with_its_size_and_planted_files_are_bounded() {
        let (_dir, store) = store(200);
        let err = store.save("s", "big", header(), &[0u8; 400]).unwrap_err();
        assert!(err.to_string().contains("more than the 200 bytes"), "{err}");
        let planted = store.file("s", "planted").expect("a file");
        fs::create_dir_all(planted.parent().expect("a folder")).expect("made");
        fs::write(&planted, vec![b'x'; 10_000]).expect("written");
        assert!(matches!(
            store.load("s", "planted"),
            Err(StoreError::TooLarge { .. })
        ));
        fs::write(&planted, b"garbage").expect("written");
        assert!(matches!(
            store.load("s", "planted"),
            Err(StoreError::Unreadable { .. })
        ));
    }

    #[test]
    fn names_that_could_leave_the_folder_are_refused() {
        let (_dir, store) = store(1 << 20);
        for bad in ["", "../x", ".hidden", "a/b", "a\0b"] {
            assert!(
                matches!(
                    store.save("s", bad, header(), b""),
                    Err(StoreError::BadName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn pruning_removes_only_old_checkpoints() {
        let (_dir, store) = store(1 << 20);
        store.save("s", "old", header(), b"1").expect("saved");
        store.save("s", "new", header(), b"2").expect("saved");
        let old = store.file("s", "old").expect("a file");
        let long_ago = SystemTime::now() - Duration::from_hours(1);
        fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(long_ago))
            .expect("aged");
        assert_eq!(store.prune(Duration::from_mins(1)).expect("pruned"), 1);
        let names = sessions(&store, "s");
        assert_eq!(names, ["new"]);
    }
}

//! Host directories granted with `MCP_BRIDGE_MOUNTS`: readable at `/data/<name>`, a whole
//! tree, never writable, and nothing outside them reachable through a symlink or `..`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use crate::support::{TestBackend, TestBridge, hand_to_bridge_user};

/// What the CSV's groups add up to, as both readers print them.
const TOTALS: &str = "{'north': 8, 'south': 4}";

/// Content of the host file outside the grant; it must never show inside.
const SECRET: &str = "host-secret-outside-the-grant";

/// A granted directory `sales/` (with `data.csv` and `deeper/more.csv`), beside a host
/// directory `outside/` holding a secret, and symlinks in the grant pointing at it.
struct Grant {
    _root: tempfile::TempDir,
    dir: PathBuf,
    secret: PathBuf,
}

impl Grant {
    fn new(b: &TestBackend) -> Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("bridge-mounts-")
            .tempdir()?;
        let dir = root.path().join("sales");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(dir.join("deeper"))?;
        std::fs::create_dir(&outside)?;
        std::fs::write(
            dir.join("data.csv"),
            "region,amount\nnorth,3\nsouth,4\nnorth,5\n",
        )?;
        std::fs::write(dir.join("deeper/more.csv"), "region,amount\neast,1\n")?;
        let secret = outside.join("secret.txt");
        std::fs::write(&secret, SECRET)?;
        std::os::unix::fs::symlink(&secret, dir.join("absolute_link"))?;
        std::os::unix::fs::symlink("../outside/secret.txt", dir.join("relative_link"))?;
        std::os::unix::fs::symlink("../outside", dir.join("dir_link"))?;
        // Readable by the sandbox's unprivileged user, as a user's own folders usually are.
        for path in [root.path(), &dir, &dir.join("deeper"), &outside] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
        }
        hand_to_bridge_user(b, root.path())?;
        Ok(Self {
            _root: root,
            dir,
            secret,
        })
    }

    async fn bridge(&self, b: &TestBackend) -> Result<TestBridge> {
        let mounts = format!("sales={}", self.dir.display());
        b.bridge_with(&[("MCP_BRIDGE_MOUNTS", &mounts)]).await
    }

    /// The grant's files and their contents, to prove a run changed nothing.
    fn snapshot(&self) -> Result<Vec<(PathBuf, Vec<u8>)>> {
        fn walk(dir: &Path, into: &mut Vec<(PathBuf, Vec<u8>)>) -> Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let meta = std::fs::symlink_metadata(&path)?;
                if meta.is_dir() {
                    walk(&path, into)?;
                } else if meta.is_file() {
                    into.push((path.clone(), std::fs::read(&path)?));
                } else {
                    into.push((
                        path.clone(),
                        std::fs::read_link(&path)?
                            .into_os_string()
                            .into_encoded_bytes(),
                    ));
                }
            }
            Ok(())
        }
        let mut files = Vec::new();
        walk(&self.dir, &mut files)?;
        files.sort();
        Ok(files)
    }
}

pub(crate) async fn csv_in_a_granted_dir_is_read_with_the_csv_module(
    b: &TestBackend,
) -> Result<()> {
    let grant = Grant::new(b)?;
    let bridge = grant.bridge(b).await?;
    let code = r"
import csv
totals = {}
with open('/data/sales/data.csv', newline='') as f:
    for row in csv.DictReader(f):
        totals[row['region']] = totals.get(row['region'], 0) + int(row['amount'])
print(dict(sorted(totals.items())))
with open('/data/sales/deeper/more.csv') as f:
    print(f.read().splitlines()[1])
";
    let out = bridge.ok(code).await?;
    ensure!(out == format!("{TOTALS}\neast,1\n"), "{out}");
    Ok(())
}

pub(crate) async fn csv_in_a_granted_dir_is_read_with_pandas(b: &TestBackend) -> Result<()> {
    if !b.has_data_stack("pandas") {
        return Ok(());
    }
    let grant = Grant::new(b)?;
    let bridge = grant.bridge(b).await?;
    let code = r"
import pandas as pd
df = pd.read_csv('/data/sales/data.csv')
print({k: int(v) for k, v in df.groupby('region')['amount'].sum().items()})
";
    let out = bridge.ok(code).await?;
    ensure!(out == format!("{TOTALS}\n"), "{out}");
    Ok(())
}

pub(crate) async fn granted_dirs_are_never_writable(b: &TestBackend) -> Result<()> {
    let grant = Grant::new(b)?;
    let before = grant.snapshot()?;
    let bridge = grant.bridge(b).await?;
    // Every way of changing the tree, each expected to fail with an OSError.
    let code = r"
import os
attempts = {
    'create': lambda: open('/data/sales/new.txt', 'w').write('x'),
    'append': lambda: open('/data/sales/data.csv', 'a').write('x'),
    'truncate': lambda: open('/data/sales/data.csv', 'w'),
    'mkdir': lambda: os.mkdir('/data/sales/newdir'),
    'remove': lambda: os.remove('/data/sales/data.csv'),
    'rename': lambda: os.rename('/data/sales/data.csv', '/data/sales/moved.csv'),
    'rmdir': lambda: os.rmdir('/data/sales/deeper'),
    'symlink': lambda: os.symlink('/tmp', '/data/sales/link'),
}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, 'SUCCEEDED')
    except OSError as e:
        print(name, 'refused', type(e).__name__)
";
    let out = bridge.ok(code).await?;
    ensure!(!out.contains("SUCCEEDED"), "a write got through:\n{out}");
    ensure!(out.lines().count() == 8, "{out}");
    ensure!(
        grant.snapshot()? == before,
        "the granted tree changed:\n{out}"
    );
    Ok(())
}

pub(crate) async fn symlinks_out_of_a_grant_give_nothing(b: &TestBackend) -> Result<()> {
    let grant = Grant::new(b)?;
    let bridge = grant.bridge(b).await?;
    let code = r"
import os
for path in ['/data/sales/absolute_link', '/data/sales/relative_link',
             '/data/sales/dir_link/secret.txt']:
    try:
        with open(path) as f:
            print(path, 'read', f.read())
    except OSError as e:
        print(path, 'refused', type(e).__name__)
try:
    print('listing', os.listdir('/data/sales/dir_link'))
except OSError as e:
    print('listing refused', type(e).__name__)
";
    let out = bridge.ok(code).await?;
    ensure!(
        !out.contains(SECRET),
        "the secret outside the grant leaked:\n{out}"
    );
    ensure!(
        !out.contains("secret.txt'"),
        "the outside directory was listed:\n{out}"
    );
    ensure!(out.lines().count() == 4, "{out}");
    Ok(())
}

pub(crate) async fn dot_dot_cannot_leave_a_grant(b: &TestBackend) -> Result<()> {
    let grant = Grant::new(b)?;
    let bridge = grant.bridge(b).await?;
    // The secret by `..` from the grant, and by `..` up to `/` then the host's own path.
    let host_path = grant.secret.display().to_string();
    let code = format!(
        r"
paths = ['/data/sales/../outside/secret.txt', '/data/sales/../../outside/secret.txt',
         '/data/sales/../..' + {host_path:?}, '/data/sales/deeper/../../../..' + {host_path:?}]
for path in paths:
    try:
        with open(path) as f:
            print('read', f.read())
    except OSError as e:
        print('refused', type(e).__name__)
"
    );
    let out = bridge.ok(&code).await?;
    ensure!(!out.contains(SECRET), "`..` reached the host:\n{out}");
    ensure!(out.lines().count() == 4, "{out}");
    Ok(())
}

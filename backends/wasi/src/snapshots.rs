//! Which layouts have a snapshot in this process, and making the missing ones in the
//! background.
//!
//! A session asks [`Snapshots::ready`] for its layout's snapshot. The answer never waits
//! for a build: a snapshot in memory or in the module cache (loaded in about a millisecond)
//! is returned; otherwise the session starts the plain way and one background task per
//! layout makes the snapshot, after which new sessions of that layout start from it. A
//! failed build is logged and not retried by session starts (it costs minutes of CPU);
//! [`Snapshots::ensure`] (from `provision`) tries again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use python_wasm::Provisioner;
use tracing::{info, warn};
use wasmtime::InstancePre;

use crate::GuestState;
use crate::error::SnapshotError;
use crate::interpreter::{Loaded, compile_estimate};
use crate::snapshot::{self, Grant, Layout};

/// The snapshots of this process, by layout.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    slots: Mutex<HashMap<Layout, Slot>>,
}

#[derive(Clone)]
enum Slot {
    Building,
    Ready(InstancePre<GuestState>),
    Failed,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Building => "Building",
            Self::Ready(_) => "Ready",
            Self::Failed => "Failed",
        })
    }
}

/// What a snapshot is made from: the loaded interpreter and where its cache is.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub(crate) loaded: Arc<Loaded>,
    pub(crate) provisioner: Provisioner,
}

impl Snapshots {
    /// The snapshot for `layout` when there is one now (in memory or in the module cache);
    /// otherwise `None`, and the snapshot is made in the background (once per layout).
    pub(crate) fn ready(
        self: &Arc<Self>,
        source: &Source,
        layout: &Layout,
        read_only: &[Grant],
    ) -> Option<InstancePre<GuestState>> {
        let mut slots = self.slots.lock().expect("snapshot slots lock");
        match slots.get(layout) {
            Some(Slot::Ready(pre)) => return Some(pre.clone()),
            Some(Slot::Building | Slot::Failed) => return None,
            None => {}
        }
        if let Ok(Some(pre)) = cached(source, layout) {
            slots.insert(layout.clone(), Slot::Ready(pre.clone()));
            return Some(pre);
        }
        slots.insert(layout.clone(), Slot::Building);
        drop(slots);
        let this = self.clone();
        let (source, layout, read_only) = (source.clone(), layout.clone(), read_only.to_vec());
        tokio::spawn(async move {
            let slot = match this_build(&source, &layout, &read_only).await {
                Ok(pre) => Slot::Ready(pre),
                Err(e) => {
                    warn!(
                        error = %sandbox_core::error_chain(&e),
                        "making the snapshot failed; sessions start without the stack \
                         imported (`provision` tries again)"
                    );
                    Slot::Failed
                }
            };
            this.slots
                .lock()
                .expect("snapshot slots lock")
                .insert(layout, slot);
        });
        None
    }

    /// The snapshot for `layout`, made now if it is not cached. Waits for a build another
    /// task runs.
    pub(crate) async fn ensure(
        &self,
        source: &Source,
        layout: &Layout,
        read_only: &[Grant],
    ) -> Result<InstancePre<GuestState>, SnapshotError> {
        loop {
            let slot = self
                .slots
                .lock()
                .expect("snapshot slots lock")
                .get(layout)
                .cloned();
            match slot {
                Some(Slot::Ready(pre)) => return Ok(pre),
                Some(Slot::Building) => {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Some(Slot::Failed) | None => break,
            }
        }
        let pre = this_build(source, layout, read_only).await?;
        self.slots
            .lock()
            .expect("snapshot slots lock")
            .insert(layout.clone(), Slot::Ready(pre.clone()));
        Ok(pre)
    }
}

/// The cached snapshot for `layout`, linked; `Ok(None)` when it is not cached.
fn cached(
    source: &Source,
    layout: &Layout,
) -> Result<Option<InstancePre<GuestState>>, SnapshotError> {
    let engine = &source.loaded.engine;
    let derived = layout.module(&source.provisioner, engine, &source.loaded.wasm);
    source
        .provisioner
        .load_derived(engine, &derived)
        .map(|module| link(engine, &module))
        .transpose()
}

fn link(
    engine: &wasmtime::Engine,
    module: &wasmtime::Module,
) -> Result<InstancePre<GuestState>, SnapshotError> {
    crate::interpreter::linker(engine)
        .and_then(|linker| linker.instantiate_pre(module))
        .map_err(|e| SnapshotError::LinkSnapshot(e.into()))
}

/// Make, compile and cache the snapshot for `layout` (or load it, if another process
/// made it meanwhile), off the async runtime.
async fn this_build(
    source: &Source,
    layout: &Layout,
    read_only: &[Grant],
) -> Result<InstancePre<GuestState>, SnapshotError> {
    let (source, layout, read_only) = (source.clone(), layout.clone(), read_only.to_vec());
    tokio::task::spawn_blocking(move || {
        if let Some(pre) = cached(&source, &layout)? {
            return Ok(pre);
        }
        let started = Instant::now();
        let wasm = &source.loaded.wasm;
        info!(
            layout = %layout.key(),
            "making a snapshot of the interpreter with numpy, pandas and matplotlib imported, \
             once per machine: two compiles of {} each and a warm-up of a few seconds",
            compile_estimate(&wasm.path)
        );
        let engine = &source.loaded.engine;
        let bytes = snapshot::build(engine, wasm, &layout, &read_only)?;
        let derived = layout.module(&source.provisioner, engine, wasm);
        let module = source
            .provisioner
            .compile_derived(engine, &derived, &bytes)?;
        info!(
            elapsed = ?started.elapsed(),
            wasm_bytes = bytes.len(),
            path = %derived.path().display(),
            "the snapshot is ready; new sessions start with the stack imported"
        );
        link(engine, &module)
    })
    .await
    .unwrap_or_else(|e| Err(SnapshotError::Panicked(e)))
}

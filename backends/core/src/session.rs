//! The session engine: one guest interpreter, many runs, written once for every backend.
//!
//! What it trusts: the [`Sandbox`] to start a guest with the spec it was given, and nothing
//! the guest sends (frames are validated by [`FrameScanner`]; a result for another run, a
//! second `ready`, or an oversized frame ends the session).
//!
//! What it guarantees:
//! - runs on one session are serialised (a mutex held for the whole run); different sessions
//!   share nothing and run in parallel;
//! - every run ends by its deadline plus the interrupt grace: first a soft interrupt where the
//!   backend has one (state kept), then a hard kill (state lost, said so in the outcome);
//! - output is capped per stream on both sides of the seam;
//! - after a kill, a crash or a protocol violation the session is dead, and says so; it never
//!   half-works.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use tokio::io::AsyncReadExt;
use tokio::sync::Mutex;
use tokio::time::timeout_at;
use tokio_util::sync::CancellationToken;
use tracing::{debug, instrument, warn};

use crate::error::SandboxError;
use crate::frame::{
    CatalogueEntry, FrameError, FrameScanner, GuestErrorInfo, GuestFrame, HostFrame, Nonce,
    OutFile, OutputFrame, ReadyFrame, ResultFrame, RpcFrame, ScanEvent, ServerRef,
    encode_host_frame, encode_raw,
};
use crate::frame_sender::FrameSender;
use crate::guest::runtime_payload;
use crate::output::{CappedBytes, Captured, KeptOutput};
use crate::rpc::{MAX_CALLS_IN_FLIGHT, RpcError, RpcHandler};
use crate::sandbox::{GuestControl, GuestReader, ResourceUsage, Sandbox};
use crate::spec::SandboxSpec;

/// Settings shared by every session of a process.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Per-stream output cap in bytes.
    pub output_limit: usize,
    /// How long a new guest may take to become ready.
    pub start_timeout: Duration,
    /// How long an interrupted run may take to stop before the guest is killed.
    pub interrupt_grace: Duration,
    /// The server catalogue sent to every guest.
    pub catalogue: Vec<CatalogueEntry>,
    /// The manual `mcp.runtime.capability_summary()` returns.
    pub manual: String,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            output_limit: 64 * 1024,
            start_timeout: Duration::from_secs(30),
            interrupt_grace: Duration::from_secs(2),
            catalogue: Vec::new(),
            manual: String::new(),
        }
    }
}

/// One run: code, the servers it may use, and its deadline.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Python source.
    pub code: String,
    /// Servers this run may use.
    pub servers: Vec<ServerRef>,
    /// Wall-clock budget.
    pub timeout: Duration,
    /// The user's saved tools, to be defined before `code` (when they changed).
    pub saved_tools: Option<String>,
    /// Cancelled when the client gives up on the run: it is then stopped like a run past its
    /// deadline (interrupt, then kill).
    pub cancel: Option<CancellationToken>,
    /// Where stdout goes while the run goes on (for progress or log notifications), if
    /// anyone listens. The result still carries all of it.
    pub output_stream: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// The bridge's own preparation of a session (warming it, installing its startup
    /// packages), numbered apart from the user's runs so that the user's first is run 1
    /// (`<run-1>` in tracebacks).
    pub preparation: bool,
    /// Something the runtime does in place of running `code` (see [`RunAction`]).
    pub action: Option<RunAction>,
}

/// A runtime operation the host asks for in place of user code. It runs like a run (same
/// deadline, interrupt and kill; its host calls go to the run's [`RpcHandler`]), but runs no
/// code of the user's: it cannot be shadowed or broken by what the session defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAction {
    /// Serialise the session's state inside the sandbox and send it to the host in
    /// `checkpoint_*` calls.
    Checkpoint,
    /// Fetch a checkpoint from the host in `restore_*` calls and load it into the session.
    Restore,
}

impl RunAction {
    /// The action's name in the `run` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            RunAction::Checkpoint => "checkpoint",
            RunAction::Restore => "restore",
        }
    }
}

impl RunRequest {
    /// A run of `code` with no servers and no saved tools.
    pub fn code(code: impl Into<String>, timeout: Duration) -> Self {
        Self {
            code: code.into(),
            servers: Vec::new(),
            timeout,
            saved_tools: None,
            cancel: None,
            output_stream: None,
            preparation: false,
            action: None,
        }
    }

    /// A run of `code` that prepares a session before anyone uses it (see
    /// [`RunRequest::preparation`]).
    pub fn preparation(code: impl Into<String>, timeout: Duration) -> Self {
        Self {
            preparation: true,
            ..Self::code(code, timeout)
        }
    }

    /// A preparation run that does `action` instead of running code.
    pub fn action(action: RunAction, timeout: Duration) -> Self {
        Self {
            action: Some(action),
            ..Self::preparation("", timeout)
        }
    }
}

/// Where the numbers of preparation runs start: far above any user run's.
const PREPARATION_RUN_IDS: u64 = 1 << 40;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStatus {
    /// The code ran to the end.
    Completed,
    /// The code raised an exception (see [`RunOutcome::error`]).
    Raised,
    /// The deadline passed. `state_lost` says whether the guest had to be killed.
    TimedOut {
        /// True when the session's state is gone.
        state_lost: bool,
    },
    /// The client cancelled the run. `state_lost` says whether the guest had to be killed.
    Cancelled {
        /// True when the session's state is gone.
        state_lost: bool,
    },
    /// The guest died or broke the protocol mid-run; the session's state is gone.
    SandboxFailed {
        /// What happened, in words for the user.
        reason: String,
    },
}

impl RunStatus {
    /// How the run ended, without the details.
    pub fn kind(&self) -> RunKind {
        match self {
            RunStatus::Completed => RunKind::Completed,
            RunStatus::Raised => RunKind::Raised,
            RunStatus::TimedOut { .. } => RunKind::TimedOut,
            RunStatus::Cancelled { .. } => RunKind::Cancelled,
            RunStatus::SandboxFailed { .. } => RunKind::SandboxFailed,
        }
    }
}

/// How a run ended, as one word: the `status` a run's report gives and the label its
/// metrics carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// [`RunStatus::Completed`].
    Completed,
    /// [`RunStatus::Raised`].
    Raised,
    /// [`RunStatus::TimedOut`].
    TimedOut,
    /// [`RunStatus::Cancelled`].
    Cancelled,
    /// [`RunStatus::SandboxFailed`].
    SandboxFailed,
}

impl RunKind {
    /// Every kind, in the order the docs list them.
    pub const ALL: [RunKind; 5] = [
        RunKind::Completed,
        RunKind::Raised,
        RunKind::TimedOut,
        RunKind::Cancelled,
        RunKind::SandboxFailed,
    ];

    /// The word for it: `completed`, `raised`, `timed_out`, `cancelled`, `sandbox_failed`.
    pub fn name(self) -> &'static str {
        match self {
            RunKind::Completed => "completed",
            RunKind::Raised => "raised",
            RunKind::TimedOut => "timed_out",
            RunKind::Cancelled => "cancelled",
            RunKind::SandboxFailed => "sandbox_failed",
        }
    }
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// How it ended.
    pub status: RunStatus,
    /// Captured stdout (and raw writes to fd 1).
    pub stdout: Captured,
    /// Captured stderr (and raw writes to fd 2).
    pub stderr: Captured,
    /// The exception, when the code raised one.
    pub error: Option<GuestErrorInfo>,
    /// Wall-clock time on the host, from sending the run to its end.
    pub elapsed: Duration,
    /// Files the code wrote under `/workspace/out/` during the run.
    pub files: Vec<OutFile>,
    /// Where the whole stdout was saved in the sandbox when the cap cut it.
    pub stdout_saved: Option<String>,
    /// Where the whole stderr was saved in the sandbox when the cap cut it.
    pub stderr_saved: Option<String>,
}

impl RunOutcome {
    /// True when the run did not complete cleanly.
    pub fn is_error(&self) -> bool {
        self.status != RunStatus::Completed
    }
    /// True when the session's state did not survive this run.
    pub fn state_lost(&self) -> bool {
        loses_state(&self.status)
    }
}

/// A live guest and the host's half of its streams.
struct Live {
    stdin: FrameSender,
    stdout: GuestReader,
    stderr: Option<GuestReader>,
    scanner: FrameScanner,
    control: Box<dyn GuestControl>,
    /// The next user run's number.
    next_run: u64,
    /// The next preparation run's number.
    next_preparation: u64,
}

/// One guest interpreter whose globals persist across runs.
pub struct Session {
    backend: &'static str,
    output_limit: usize,
    interrupt_grace: Duration,
    ready: ReadyFrame,
    notice: Option<String>,
    live: Mutex<Option<Live>>,
    dead: AtomicBool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("backend", &self.backend)
            .field("python", &self.ready.python)
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 64 * 1024;

impl Session {
    /// Start a guest on `sandbox` and bring its runtime up.
    #[instrument(skip_all, fields(backend = sandbox.name()))]
    pub async fn start(
        sandbox: &dyn Sandbox,
        spec: &SandboxSpec,
        config: &SessionConfig,
    ) -> Result<Self, SandboxError> {
        let started_at = Instant::now();
        let guest = sandbox.start(spec).await?;
        let notice = guest.notice;
        let compiled = guest.compiled_runtime;
        let nonce = Nonce::random();
        let max_frame = config
            .output_limit
            .saturating_mul(2)
            .saturating_add(crate::frame::FRAME_SLACK)
            .min(crate::frame::FRAME_CEILING);
        let mut live = Live {
            stdin: FrameSender::spawn(guest.stdin),
            stdout: guest.stdout,
            stderr: Some(guest.stderr),
            scanner: FrameScanner::new(&nonce, max_frame),
            control: guest.control,
            next_run: 1,
            next_preparation: PREPARATION_RUN_IDS,
        };
        let deadline = tokio::time::Instant::now() + config.start_timeout;
        let handshake = async {
            let mut hello = encode_raw(&runtime_payload(compiled.as_deref()));
            hello.extend(encode_host_frame(&HostFrame::Hello {
                nonce: nonce.as_str(),
                catalogue: &config.catalogue,
                output_limit: config.output_limit as u64,
                manual: &config.manual,
                state: serde_json::Value::Object(serde_json::Map::new()),
            }));
            live.stdin.send(hello)?;
            wait_for_ready(&mut live).await
        };
        let ready = match timeout_at(deadline, handshake).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => {
                live.control.kill().await;
                return Err(e);
            }
            Err(_) => {
                live.control.kill().await;
                return Err(SandboxError::StartTimeout(config.start_timeout));
            }
        };
        debug!(elapsed = ?started_at.elapsed(), python = %ready.python, "session ready");
        Ok(Self {
            backend: sandbox.name(),
            output_limit: config.output_limit,
            interrupt_grace: config.interrupt_grace,
            ready,
            notice,
            live: Mutex::new(Some(live)),
            dead: AtomicBool::new(false),
        })
    }

    /// The backend this session runs on.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// What the guest said when it became ready.
    pub fn ready_info(&self) -> &ReadyFrame {
        &self.ready
    }

    /// What every reply from this session should tell the agent about its sandbox, if
    /// anything (see [`crate::StartedGuest::notice`]).
    pub fn notice(&self) -> Option<&str> {
        self.notice.as_deref()
    }

    /// False once the guest was killed, crashed or broke the protocol. Never waits.
    pub fn is_alive(&self) -> bool {
        !self.dead.load(Ordering::Acquire)
    }

    /// Resource usage of the guest, if the backend reports it (waits for a run in flight).
    pub async fn usage(&self) -> ResourceUsage {
        self.live
            .lock()
            .await
            .as_ref()
            .map(|l| l.control.usage())
            .unwrap_or_default()
    }

    /// Resource usage of the guest now, or `None` while a run holds the session.
    pub fn try_usage(&self) -> Option<ResourceUsage> {
        let live = self.live.try_lock().ok()?;
        Some(live.as_ref().map(|l| l.control.usage()).unwrap_or_default())
    }

    /// Kill the guest now (waits for a run in flight to end first).
    pub async fn shutdown(&self) {
        self.dead.store(true, Ordering::Release);
        if let Some(live) = self.live.lock().await.take() {
            live.control.kill().await;
        }
    }

    /// Run code in this session. Never fails: every way a run can end is a [`RunOutcome`].
    #[instrument(skip_all, fields(backend = self.backend))]
    pub async fn run(&self, request: &RunRequest, calls: Arc<dyn RpcHandler>) -> RunOutcome {
        let started = Instant::now();
        match self.try_run(request, calls).await {
            Some(outcome) => outcome,
            None => self.failed(
                started,
                "this session's sandbox is gone; start a new one".into(),
            ),
        }
    }

    /// Like [`Session::run`], but `None` when the session was already dead by the time the
    /// run could start (it waited behind a run that killed it): the caller can then run it in
    /// a fresh session instead, having lost nothing.
    pub async fn try_run(
        &self,
        request: &RunRequest,
        calls: Arc<dyn RpcHandler>,
    ) -> Option<RunOutcome> {
        let started = Instant::now();
        let mut guard = self.live.lock().await;
        let live = guard.as_mut()?;
        let mut run = RunState::new(self.output_limit, !live.control.can_interrupt());
        // If this future is dropped mid-run, the guest may still answer later and desynchronise
        // the next run: the session is then dead rather than half-working.
        let abandoned = DeadUnlessDisarmed(&self.dead);
        let verdict = self.drive(live, request, &calls, &mut run).await;
        std::mem::forget(abandoned);
        let (status, result) = match verdict {
            Verdict::Finished(result) => {
                let status = if run.cancelled {
                    RunStatus::Cancelled { state_lost: false }
                } else if run.interrupted {
                    RunStatus::TimedOut { state_lost: false }
                } else if result.error.is_some() {
                    RunStatus::Raised
                } else {
                    RunStatus::Completed
                };
                (status, Some(*result))
            }
            Verdict::Killed if run.cancelled => (RunStatus::Cancelled { state_lost: true }, None),
            Verdict::Killed => (RunStatus::TimedOut { state_lost: true }, None),
            Verdict::Failed(reason) => (RunStatus::SandboxFailed { reason }, None),
        };
        if RunState::kill_needed(&status) {
            self.dead.store(true, Ordering::Release);
            if let Some(live) = guard.take() {
                live.control.kill().await;
            }
        }
        drop(guard);
        Some(run.into_outcome(status, result, self.output_limit, started.elapsed()))
    }

    async fn drive(
        &self,
        live: &mut Live,
        request: &RunRequest,
        calls: &Arc<dyn RpcHandler>,
        run: &mut RunState,
    ) -> Verdict {
        let counter = if request.preparation {
            &mut live.next_preparation
        } else {
            &mut live.next_run
        };
        let id = *counter;
        *counter += 1;
        let mut deadline = tokio::time::Instant::now() + request.timeout;
        let frame = encode_host_frame(&HostFrame::Run {
            id,
            code: &request.code,
            servers: &request.servers,
            timeout_ms: u64::try_from(request.timeout.as_millis()).unwrap_or(u64::MAX),
            saved_tools: request.saved_tools.as_deref(),
            stream_output: request.output_stream.is_some(),
            keep_output: run.keeps_output,
            action: request.action.map(RunAction::as_str),
        });
        if let Err(e) = live.stdin.send(frame) {
            return Verdict::Failed(self.gone_reason(live, &crate::error::chain(&e)).await);
        }
        // Calls to the host run concurrently, polled by this task (no task hop to answer
        // one); dropping the set (the run ended) abandons them.
        let mut in_flight: FuturesUnordered<CallFuture> = FuturesUnordered::new();
        let sent_at = Instant::now();
        tracing::trace!(run = id, "run frame sent");
        let mut out_buf = vec![0u8; READ_CHUNK];
        let mut err_buf = vec![0u8; READ_CHUNK];
        let mut events = Vec::new();
        loop {
            tokio::select! {
                read = live.stdout.read(&mut out_buf) => {
                    let n = match read {
                        Ok(0) => return Verdict::Failed(self.gone_reason(live, "its output closed").await),
                        Ok(n) => n,
                        Err(e) => return Verdict::Failed(self.gone_reason(live, &crate::error::chain(&e)).await),
                    };
                    tracing::trace!(run = id, bytes = n, after = ?sent_at.elapsed(), "guest stdout");
                    if let Err(e) = live.scanner.push(&out_buf[..n], &mut events) {
                        // What the code wrote before the bad frame is still its output.
                        for event in events.drain(..) {
                            if let ScanEvent::Stray(bytes) = event {
                                run.stray_out.push(&bytes);
                            }
                        }
                        return Verdict::Failed(protocol_reason(&e));
                    }
                    for event in events.drain(..) {
                        match event {
                            ScanEvent::Stray(bytes) => run.stray_out.push(&bytes),
                            ScanEvent::Frame(frame) => match *frame {
                                GuestFrame::Rpc(call) if call.run == id => {
                                    if let Err(e) = accept_call(live, calls, &mut in_flight, call) {
                                        return Verdict::Failed(self.gone_reason(live, &crate::error::chain(&e)).await);
                                    }
                                }
                                GuestFrame::Output(output) if output.run == id => {
                                    run.keep(&output);
                                    if output.stream == "stdout"
                                        && let Some(stream) = &request.output_stream
                                    {
                                        let _ = stream.send(output.text);
                                    }
                                }
                                GuestFrame::Result(result) if result.id == id => {
                                    drain_ready(&mut live.stderr, &mut err_buf, &mut run.stray_err).await;
                                    return Verdict::Finished(Box::new(result));
                                }
                                other => {
                                    let e = FrameError::Unexpected(describe(&other, id));
                                    return Verdict::Failed(protocol_reason(&e));
                                }
                            },
                        }
                    }
                }
                read = read_optional(&mut live.stderr, &mut err_buf) => {
                    match read {
                        Ok(0) | Err(_) => live.stderr = None,
                        Ok(n) => run.stray_err.push(&err_buf[..n]),
                    }
                }
                Some((call_id, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                    if let Err(e) = live.stdin.send(encode_answer(call_id, &answer)) {
                        return Verdict::Failed(self.gone_reason(live, &crate::error::chain(&e)).await);
                    }
                }
                () = cancelled(request.cancel.as_ref()), if !run.cancelled => {
                    // Stop it as if its deadline had passed: interrupt, then kill.
                    run.cancelled = true;
                    deadline = tokio::time::Instant::now();
                }
                () = tokio::time::sleep_until(deadline) => {
                    if run.interrupted {
                        warn!("run ignored its interrupt; killing the sandbox");
                        return Verdict::Killed;
                    }
                    match live.control.interrupt().await {
                        Ok(()) => {
                            run.interrupted = true;
                            deadline = tokio::time::Instant::now() + self.interrupt_grace;
                        }
                        Err(_) => return Verdict::Killed,
                    }
                }
            }
        }
    }

    async fn gone_reason(&self, live: &mut Live, what: &str) -> String {
        let exit = tokio::time::timeout(Duration::from_secs(2), live.control.wait()).await;
        match exit {
            Ok(exit) => format!("the sandbox stopped mid-run ({exit}); its state is lost"),
            Err(_) => format!("lost contact with the sandbox ({what}); its state is lost"),
        }
    }

    fn failed(&self, started: Instant, reason: String) -> RunOutcome {
        RunState::new(self.output_limit, false).into_outcome(
            RunStatus::SandboxFailed { reason },
            None,
            self.output_limit,
            started.elapsed(),
        )
    }
}

/// Marks the session dead when dropped; forgotten once a run has ended normally.
struct DeadUnlessDisarmed<'a>(&'a AtomicBool);

impl Drop for DeadUnlessDisarmed<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

enum Verdict {
    Finished(Box<ResultFrame>),
    Killed,
    Failed(String),
}

/// Host-side state of one run in flight.
struct RunState {
    stray_out: CappedBytes,
    stray_err: CappedBytes,
    /// True when the guest sends its output as it is written (`keep_output`).
    keeps_output: bool,
    /// What the guest sent of each stream while it ran: the output if the run is killed.
    kept_out: KeptOutput,
    kept_err: KeptOutput,
    interrupted: bool,
    cancelled: bool,
}

impl RunState {
    /// The state of a run keeping `limit` bytes of output, both streams together; with
    /// `keeps_output`, the guest sends its output as it is written.
    fn new(limit: usize, keeps_output: bool) -> Self {
        Self {
            stray_out: CappedBytes::new(limit),
            stray_err: CappedBytes::new(limit),
            keeps_output,
            kept_out: KeptOutput::new(limit / 2),
            kept_err: KeptOutput::new(limit / 2),
            interrupted: false,
            cancelled: false,
        }
    }

    /// Keep the text of an `output` frame, for the reply of a run that may be killed.
    fn keep(&mut self, output: &OutputFrame) {
        if !self.keeps_output {
            return;
        }
        let kept = match output.stream.as_str() {
            "stdout" => &mut self.kept_out,
            "stderr" => &mut self.kept_err,
            _ => return,
        };
        kept.push(&output.text, output.skipped);
    }

    fn kill_needed(status: &RunStatus) -> bool {
        loses_state(status)
    }

    fn into_outcome(
        self,
        status: RunStatus,
        result: Option<ResultFrame>,
        limit: usize,
        elapsed: Duration,
    ) -> RunOutcome {
        let (mut stdout, mut stderr, error, files, stdout_saved, stderr_saved) = match result {
            Some(r) => (
                Captured::from_guest(r.stdout, r.stdout_cut, r.stdout_cut_at, limit),
                Captured::from_guest(r.stderr, r.stderr_cut, r.stderr_cut_at, limit),
                r.error,
                r.files,
                r.stdout_saved,
                r.stderr_saved,
            ),
            // Killed before it answered: what it sent while it ran is all there is.
            None => (
                self.kept_out.into_captured(),
                self.kept_err.into_captured(),
                None,
                Vec::new(),
                None,
                None,
            ),
        };
        stdout.append_stray(&self.stray_out);
        stderr.append_stray(&self.stray_err);
        RunOutcome {
            status,
            stdout,
            stderr,
            error,
            elapsed,
            files,
            stdout_saved,
            stderr_saved,
        }
    }
}

async fn wait_for_ready(live: &mut Live) -> Result<ReadyFrame, SandboxError> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut events = Vec::new();
    let mut early_stderr = CappedBytes::new(8 * 1024);
    let mut err_buf = vec![0u8; 8 * 1024];
    loop {
        tokio::select! {
            read = live.stdout.read(&mut buf) => {
                let n = read?;
                if n == 0 {
                    let exit = tokio::time::timeout(Duration::from_secs(2), live.control.wait()).await;
                    let mut text = Captured::default();
                    text.append_stray(&early_stderr);
                    let how = exit.map_or_else(|_| "its output closed".to_string(), |e| e.to_string());
                    return Err(SandboxError::GuestGone(format!(
                        "the guest runtime did not start ({how}); its stderr: {}",
                        text.text.trim()
                    )));
                }
                live.scanner.push(&buf[..n], &mut events)?;
                for event in events.drain(..) {
                    match event {
                        ScanEvent::Stray(_) => {}
                        ScanEvent::Frame(frame) => match *frame {
                            GuestFrame::Ready(ready) => return Ok(ready),
                            other @ (GuestFrame::Result(_)
                            | GuestFrame::Rpc(_)
                            | GuestFrame::Output(_)) => {
                                return Err(FrameError::Unexpected(describe(&other, 0)).into());
                            }
                        },
                    }
                }
            }
            read = read_optional(&mut live.stderr, &mut err_buf) => {
                match read {
                    Ok(0) | Err(_) => live.stderr = None,
                    Ok(n) => early_stderr.push(&err_buf[..n]),
                }
            }
        }
    }
}

/// Take what a stream already holds without waiting for more (stderr written before the
/// result frame may still sit in the pipe). Never sleeps: a timer here would cost a whole
/// timer tick (1 ms) on every run.
async fn drain_ready(stream: &mut Option<GuestReader>, buf: &mut [u8], into: &mut CappedBytes) {
    loop {
        let Some(reader) = stream.as_mut() else {
            return;
        };
        let polled = std::future::poll_fn(|cx| {
            let mut read_buf = tokio::io::ReadBuf::new(buf);
            match reader.as_mut().poll_read(cx, &mut read_buf) {
                std::task::Poll::Ready(Ok(())) => {
                    std::task::Poll::Ready(Some(Ok(read_buf.filled().len())))
                }
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Some(Err(e))),
                std::task::Poll::Pending => std::task::Poll::Ready(None),
            }
        })
        .await;
        match polled {
            None => return,
            Some(Ok(0) | Err(_)) => {
                *stream = None;
                return;
            }
            Some(Ok(n)) => into.push(&buf[..n]),
        }
    }
}

/// True when a run that ended this way took the session's state with it.
fn loses_state(status: &RunStatus) -> bool {
    matches!(
        status,
        RunStatus::TimedOut { state_lost: true }
            | RunStatus::Cancelled { state_lost: true }
            | RunStatus::SandboxFailed { .. }
    )
}

/// Resolves when the token is cancelled; never without a token.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Read from a stream that may have closed; a closed stream never becomes ready.
async fn read_optional(stream: &mut Option<GuestReader>, buf: &mut [u8]) -> std::io::Result<usize> {
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

fn describe(frame: &GuestFrame, expected_run: u64) -> String {
    match frame {
        GuestFrame::Ready(_) => "a second `ready` frame".into(),
        GuestFrame::Result(r) => {
            format!(
                "a result for run {} while run {expected_run} was in flight",
                r.id
            )
        }
        GuestFrame::Rpc(r) if expected_run == 0 => {
            format!("a call (`{}`) before the runtime was ready", r.method)
        }
        GuestFrame::Rpc(r) => {
            format!(
                "a call for run {} while run {expected_run} was in flight",
                r.run
            )
        }
        GuestFrame::Output(o) => {
            format!(
                "output of run {} while run {expected_run} was in flight",
                o.run
            )
        }
    }
}

fn protocol_reason(error: &FrameError) -> String {
    format!("the sandbox broke the frame protocol ({error}); the session was ended")
}

/// A call to the host being served: its id and, once done, its answer.
type CallFuture = Pin<Box<dyn Future<Output = (u64, Result<serde_json::Value, RpcError>)> + Send>>;

/// Start serving one call, or refuse it at once when too many are in flight.
fn accept_call(
    live: &Live,
    calls: &Arc<dyn RpcHandler>,
    in_flight: &mut FuturesUnordered<CallFuture>,
    call: RpcFrame,
) -> Result<(), SandboxError> {
    if in_flight.len() >= MAX_CALLS_IN_FLIGHT {
        let busy = RpcError::new(
            "busy",
            format!("more than {MAX_CALLS_IN_FLIGHT} calls are in flight; await some first"),
        );
        return live.stdin.send(encode_answer(call.id, &Err(busy)));
    }
    let calls = calls.clone();
    in_flight.push(Box::pin(async move {
        let answer = AssertUnwindSafe(calls.call(&call.method, call.params))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                Err(RpcError::new(
                    "internal",
                    "the call failed: the bridge's handler panicked",
                ))
            });
        (call.id, answer)
    }));
    Ok(())
}

fn encode_answer(id: u64, answer: &Result<serde_json::Value, RpcError>) -> Vec<u8> {
    encode_host_frame(&match answer {
        Ok(result) => HostFrame::RpcResult {
            id,
            result: Some(result),
            error: None,
        },
        Err(error) => HostFrame::RpcResult {
            id,
            result: None,
            error: Some(error),
        },
    })
}

//! The guest's stdout, as the host reads it: frames among stray bytes, from a hostile guest.
//!
//! The input is raw guest stdout in which the placeholder marker (`\0\x1bMCPB`, the nonce
//! `0123456789abcdef0123456789abcdef`, `\x1f`) stands for the session's real marker; the
//! seeds in `corpus/guest_frames/` are real frames written that way. Checked:
//! - scanning never panics, and finds the same frames, stray bytes and error whether the
//!   bytes arrive at once or in arbitrary chunks;
//! - encode → decode: the input taken as one frame's payload and wrapped in a real marker and
//!   length comes back as exactly that frame, or as a `Malformed` error;
//! - a `result` frame's fields, used the way the session and the MCP layer use them, keep
//!   honest accounting (kept text within the cap, every dropped byte counted, markers at
//!   char boundaries) and never return a file from outside `/workspace/out/`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::mcp::files::{OUT_DIR, content_blocks};
use sandbox_core::Captured;
use sandbox_core::frame::{
    FrameError, FrameScanner, GuestFrame, Nonce, ResultFrame, ScanEvent, parse_guest_frame,
};

/// The nonce the corpus writes in its markers.
const PLACEHOLDER_NONCE: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

fn placeholder_marker() -> Vec<u8> {
    let mut marker = b"\x00\x1bMCPB".to_vec();
    marker.extend_from_slice(PLACEHOLDER_NONCE);
    marker.push(0x1f);
    marker
}

/// `data` with every placeholder marker replaced by `real` (same length).
fn with_real_marker(data: &[u8], real: &[u8]) -> Vec<u8> {
    let placeholder = placeholder_marker();
    assert_eq!(placeholder.len(), real.len());
    let mut out = data.to_vec();
    let mut at = 0;
    while let Some(found) = out[at..]
        .windows(placeholder.len())
        .position(|w| w == placeholder.as_slice())
    {
        let start = at + found;
        out[start..start + real.len()].copy_from_slice(real);
        at = start + real.len();
    }
    out
}

/// Events with adjacent stray runs merged (how stray bytes are split is not a property).
fn normalised(events: Vec<ScanEvent>) -> Vec<ScanEvent> {
    let mut out: Vec<ScanEvent> = Vec::new();
    for event in events {
        match (out.last_mut(), event) {
            (Some(ScanEvent::Stray(prev)), ScanEvent::Stray(more)) => prev.extend(more),
            (_, ScanEvent::Stray(bytes)) if bytes.is_empty() => {}
            (_, event) => out.push(event),
        }
    }
    out
}

/// Feed `chunks` until the first error.
fn scan<'a>(
    nonce: &Nonce,
    max_frame: usize,
    chunks: impl Iterator<Item = &'a [u8]>,
) -> (Vec<ScanEvent>, Option<FrameError>) {
    let mut scanner = FrameScanner::new(nonce, max_frame);
    let mut events = Vec::new();
    for chunk in chunks {
        if let Err(e) = scanner.push(chunk, &mut events) {
            return (normalised(events), Some(e));
        }
    }
    (normalised(events), None)
}

/// Chunk lengths drawn from the input itself, so that a crash reproduces from the file.
fn chunk_lengths(data: &[u8]) -> impl Iterator<Item = usize> + '_ {
    data.iter().cycle().map(|b| usize::from(b % 17) + 1)
}

fn chunks<'a>(data: &'a [u8], seed: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    let mut lengths = chunk_lengths(if seed.is_empty() { b"\x05" } else { seed });
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = lengths.next().expect("cycle is endless").min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

fn check_captured(text: &str, cut: u64, cut_at: Option<u64>, limit: usize) {
    let captured = Captured::from_guest(text.to_string(), cut, cut_at, limit);
    assert!(captured.text.len() <= limit, "kept text over the cap");
    assert!(
        text.starts_with(&captured.text),
        "kept text is not a prefix"
    );
    let dropped = (text.len() - captured.text.len()) as u64;
    assert_eq!(
        captured.cut_bytes(),
        cut.saturating_add(dropped),
        "every dropped byte is counted once"
    );
    let mut from = 0;
    for c in &captured.cuts {
        assert!(c.at >= from && c.at <= captured.text.len(), "cuts in order");
        assert!(captured.text.is_char_boundary(c.at));
        from = c.at;
    }
    let rendered = captured.render(|_| String::new());
    assert_eq!(rendered, captured.text);
}

fn check_result(result: &ResultFrame, limit: usize) {
    check_captured(
        &result.stdout,
        result.stdout_cut,
        result.stdout_cut_at,
        limit,
    );
    check_captured(
        &result.stderr,
        result.stderr_cut,
        result.stderr_cut_at,
        limit,
    );
    let (blocks, reports) = content_blocks(&result.files);
    assert_eq!(blocks.len(), reports.len());
    for report in &reports {
        assert!(report.path.starts_with(OUT_DIR), "{}", report.path);
        assert!(!report.path.split('/').any(|part| part == ".."));
    }
}

fuzz_target!(|data: &[u8]| {
    let nonce = Nonce::random();
    let marker = nonce.marker();
    let stream = with_real_marker(data, &marker);
    let max_frame = 4096;

    // The same bytes at once and in chunks scan alike.
    let whole = scan(&nonce, max_frame, std::iter::once(stream.as_slice()));
    let chunked = scan(&nonce, max_frame, chunks(&stream, data));
    assert_eq!(whole, chunked, "chunking changed what was scanned");

    let limit = data.len() % 257;
    for event in &whole.0 {
        if let ScanEvent::Frame(frame) = event
            && let GuestFrame::Result(result) = frame.as_ref()
        {
            check_result(result, limit);
        }
    }

    // Encode → decode: the input as one frame's payload.
    let mut wire = marker.clone();
    wire.extend_from_slice(
        &u32::try_from(data.len())
            .expect("small input")
            .to_be_bytes(),
    );
    wire.extend_from_slice(data);
    let (events, error) = scan(&nonce, data.len(), std::iter::once(wire.as_slice()));
    match parse_guest_frame(data) {
        Ok(frame) => {
            assert_eq!(error, None);
            assert_eq!(events, vec![ScanEvent::Frame(Box::new(frame.clone()))]);
            if let GuestFrame::Result(result) = &frame {
                check_result(result, limit);
            }
        }
        Err(e) => {
            assert!(matches!(e, FrameError::Malformed(_)));
            assert_eq!(error, Some(e));
            assert!(events.is_empty());
        }
    }
});

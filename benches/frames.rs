//! Micro benchmarks of the host's hot paths: finding guest frames in stdout, encoding host
//! frames, and rendering captured output. Run with `cargo bench --bench frames`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use sandbox_core::frame::{FrameScanner, HostFrame, Nonce, encode_host_frame};
use sandbox_core::{CappedBytes, Captured};

fn guest_frame(nonce: &Nonce, json: &str) -> Vec<u8> {
    let mut out = nonce.marker();
    out.extend_from_slice(&u32::try_from(json.len()).expect("small").to_be_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

fn scanning(c: &mut Criterion) {
    let nonce = Nonce::random();
    let result = r#"{"type":"result","id":1,"stdout":"hello\n","stderr":"","stdout_cut":0,"stderr_cut":0,"error":null,"duration_ms":0.1}"#;
    let small = guest_frame(&nonce, result);
    let stray: Vec<u8> = b"raw output from os.write(1, ...)\n".repeat(2048);
    let mut group = c.benchmark_group("scan");
    group.throughput(Throughput::Bytes(small.len() as u64));
    group.bench_function("result_frame", |b| {
        b.iter(|| {
            let mut scanner = FrameScanner::new(&nonce, 1 << 20);
            let mut events = Vec::new();
            scanner.push(black_box(&small), &mut events).expect("valid");
            events
        });
    });
    group.throughput(Throughput::Bytes(stray.len() as u64));
    group.bench_function("stray_64k", |b| {
        b.iter(|| {
            let mut scanner = FrameScanner::new(&nonce, 1 << 20);
            let mut events = Vec::new();
            scanner.push(black_box(&stray), &mut events).expect("valid");
            events
        });
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let code = "import json\nprint(json.dumps({'a': 1}))\n".repeat(20);
    c.bench_function("encode_run_frame", |b| {
        b.iter(|| {
            encode_host_frame(&HostFrame::Run {
                id: 1,
                code: black_box(&code),
                servers: &[],
                timeout_ms: 30_000,
                saved_tools: None,
                stream_output: false,
                keep_output: false,
                action: None,
            })
        });
    });
}

fn rendering(c: &mut Criterion) {
    let head = "x".repeat(48 * 1024);
    let tail = "y".repeat(16 * 1024);
    let mut stray = CappedBytes::new(64 * 1024);
    stray.push(&[b'z'; 1000]);
    c.bench_function("render_cut_output", |b| {
        b.iter(|| {
            let mut captured = Captured::from_guest(
                format!("{head}{tail}"),
                1_000_000,
                Some(48 * 1024),
                64 * 1024,
            );
            captured.append_stray(&stray);
            captured.render(|n| format!("… {n} bytes cut …"))
        });
    });
}

mod group {
    #![allow(
        missing_docs,
        reason = "criterion's macros generate undocumented functions"
    )]
    use super::{encoding, rendering, scanning};
    criterion::criterion_group!(benches, scanning, encoding, rendering);
}

criterion_main!(group::benches);

//! Human-written durations and sizes (`MCP_BRIDGE_TIMEOUT=30s`, `MCP_BRIDGE_MEMORY=512m`,
//! a `run_python` `timeout` of `"2m"`): any text.
//!
//! Checked: parsing never panics; a parsed duration is at most 10^9 s and a size at most
//! 10^18 bytes; padding with spaces changes nothing; and the printed form of a result parses
//! back to the same value (sizes exactly, durations to within the precision of an `f64`).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mcp_server_code_execution_mode::units::{parse_bytes, parse_duration};

/// A duration as the text a person would write: whole seconds and nanoseconds.
fn printed(duration: Duration) -> String {
    format!("{}.{:09}s", duration.as_secs(), duration.subsec_nanos())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let duration = parse_duration(text);
    assert_eq!(duration, parse_duration(&format!("  {text}\t")));
    if let Ok(duration) = duration {
        assert!(
            duration <= Duration::from_secs(1_000_000_000),
            "{duration:?}"
        );
        let again = parse_duration(&printed(duration)).expect("a printed duration parses");
        // Parsing goes through an f64: allow its rounding (2^-52 relative) plus a nanosecond.
        let slack = duration.as_secs_f64() * f64::EPSILON * 2.0 + 1e-9;
        let diff = again.abs_diff(duration).as_secs_f64();
        assert!(
            diff <= slack,
            "{text:?}: {duration:?} printed and parsed is {again:?}"
        );
    }

    let bytes = parse_bytes(text);
    assert_eq!(bytes, parse_bytes(&format!(" {text} ")));
    if let Ok(bytes) = bytes {
        assert!(bytes <= 1_000_000_000_000_000_000, "{bytes}");
        if bytes < 1 << 53 {
            assert_eq!(parse_bytes(&bytes.to_string()), Ok(bytes), "{text:?}");
        }
    }
});

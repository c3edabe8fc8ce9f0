//! Nothing a run sends back can drive the user's terminal: control characters arrive
//! escaped, and their exact bytes stay in the sandbox to read on purpose.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use crate::support::TestBackend;

/// A character the bridge must never send raw: C0 but newline and tab, DEL, C1, and the
/// bidirectional overrides and isolates.
fn is_terminal_control(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Every string in `value` (keys too) that holds a raw control character.
fn raw_controls(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) if text.chars().any(is_terminal_control) => {
            found.push(format!("{text:?}"));
        }
        Value::Array(items) => items.iter().for_each(|item| raw_controls(item, found)),
        Value::Object(map) => {
            for (key, item) in map {
                if key.chars().any(is_terminal_control) {
                    found.push(format!("key {key:?}"));
                }
                raw_controls(item, found);
            }
        }
        _ => {}
    }
}

const HOSTILE: &str = r#"
import sys
osc52 = "\x1b]52;c;" + "cm0gLXJmIH4=" + "\x07"
link = "\x1b]8;;https://attacker.example/\x1b\\docs\x1b]8;;\x1b\\"
print("clip", osc52, "title \x1b]0;pwned\x07 csi \x9b2J bidi \u202eexe.txt", link)
print("\x1b[1;31mred\x1b[0m and a lone\rcarriage return")
sys.stderr.write("err \x1b[2J\x1bc\n")
with open("/workspace/out/name\x1b]0;x\x07.txt", "w") as f:
    f.write("inside \x1b]52;c;eA==\x07 a file\n")
raise ValueError("boom \x1b]0;from the message\x07")
"#;

pub(crate) async fn control_sequences_reach_the_client_escaped(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge.run(HOSTILE).await?;
    ensure!(reply.status() == "raised", "{}", reply.text);
    let mut found = Vec::new();
    raw_controls(&reply.structured, &mut found);
    raw_controls(&Value::Array(reply.content.clone()), &mut found);
    ensure!(
        found.is_empty(),
        "raw control characters reached the client: {found:?}"
    );

    let stdout = reply.stdout();
    for shown in [
        "\\x1b]52;c;cm0gLXJmIH4=\\x07",
        "\\x1b]0;pwned\\x07",
        "\\x9b2J",
        "\\u202eexe.txt",
        "\\x1b]8;;https://attacker.example/\\x1b\\docs",
        "\\x1b[1;31mred\\x1b[0m",
        "lone\\x0dcarriage",
    ] {
        ensure!(stdout.contains(shown), "{shown:?} not in {stdout:?}");
    }
    ensure!(
        reply.stderr().contains("err \\x1b[2J\\x1bc"),
        "{:?}",
        reply.stderr()
    );
    let error = reply.structured["error"]["message"]
        .as_str()
        .unwrap_or_default();
    ensure!(error.contains("\\x1b]0;from the message\\x07"), "{error:?}");
    ensure!(
        reply.text.contains("\\x1b]52;c;") && !reply.text.contains('\u{1b}'),
        "{}",
        reply.text
    );
    ensure!(
        reply
            .file_paths()
            .iter()
            .any(|path| path.contains("name\\x1b]0;x\\x07.txt")),
        "{:?}",
        reply.file_paths()
    );

    // The exact bytes are kept on purpose, and the notice says where.
    let saved = reply.structured["saved_output"]["stdout"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    ensure!(!saved.is_empty(), "no saved stdout: {}", reply.structured);
    let notice = reply.structured["notice"].as_str().unwrap_or_default();
    ensure!(
        notice.contains("control characters") && notice.contains(&saved),
        "{notice}"
    );
    let check = format!(
        "data = open({saved:?}, 'rb').read()\n\
         print(b'\\x1b]52;c;cm0gLXJmIH4=\\x07' in data, b'\\xc2\\x9b2J' in data, \
         b'lone\\rcarriage' in data)"
    );
    let out = bridge.ok(&check).await?;
    ensure!(out == "True True True\n", "{out:?}");
    Ok(())
}

pub(crate) async fn plain_output_is_untouched(b: &TestBackend) -> Result<()> {
    let bridge = b.bridge().await?;
    let reply = bridge
        .call(json!({"code": "print('tab\\there, naïve café 日本 \\\\x1b literal')"}))
        .await?;
    ensure!(!reply.is_error, "{}", reply.text);
    ensure!(
        reply.stdout() == "tab\there, naïve café 日本 \\x1b literal\n",
        "{:?}",
        reply.stdout()
    );
    ensure!(
        reply.structured.get("saved_output").is_none(),
        "{}",
        reply.structured
    );
    ensure!(
        reply.structured.get("notice").is_none(),
        "{}",
        reply.structured
    );
    Ok(())
}

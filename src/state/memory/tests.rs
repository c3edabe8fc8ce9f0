use serde_json::{Value, json};

use super::*;
use crate::state::files::tree;

fn open_memory() -> (tempfile::TempDir, Memory) {
    let root = tempfile::tempdir().unwrap();
    let memory = Memory::open(&root.path().join("MCPs")).unwrap();
    (root, memory)
}

#[test]
fn memory_round_trip_and_ops() {
    let (_root, memory) = open_memory();
    let value = json!({"a": [1, 2, {"b": null}], "s": "ü"});
    memory.save("notes.v1", &value).unwrap();
    assert_eq!(memory.load("notes.v1").unwrap(), value);
    assert!(memory.exists("notes.v1").unwrap());
    assert!(!memory.exists("other").unwrap());
    memory.save("a-key_2", &json!(null)).unwrap();
    assert_eq!(memory.list().unwrap(), ["a-key_2", "notes.v1"]);
    let info = memory.info().unwrap();
    assert_eq!(info.keys, 2);
    assert_eq!(
        info.bytes,
        (serde_json::to_vec(&value).unwrap().len() + 4) as u64
    );
    assert!(info.path.ends_with("memory"));
    // Replacing keeps one key.
    memory.save("notes.v1", &json!(2)).unwrap();
    assert_eq!(memory.load("notes.v1").unwrap(), json!(2));
    assert_eq!(memory.list().unwrap().len(), 2);
    assert!(memory.delete("notes.v1").unwrap());
    assert!(!memory.delete("notes.v1").unwrap());
    let err = memory.load("notes.v1").unwrap_err();
    assert_eq!(err.kind(), "not_found");
    assert_eq!(err.to_string(), "no memory is saved under \"notes.v1\"");
}

#[test]
fn memory_keeps_every_float_exactly() {
    // Found by the guest_rpc fuzz target: without serde_json's `float_roundtrip`, this
    // number (as the guest's JSON spells it) loaded back one unit in the last place off.
    let (_root, memory) = open_memory();
    let text = "2333333333333333333333333333333333333333333.5";
    let sent: Value = serde_json::from_str(text).unwrap();
    assert_eq!(sent.as_f64(), text.parse::<f64>().ok(), "parsed exactly");
    memory.save("f", &sent).unwrap();
    assert_eq!(memory.load("f").unwrap(), sent);
}

#[test]
fn path_traversal_and_bad_keys_are_refused() {
    let (root, memory) = open_memory();
    let long = "k".repeat(129);
    let bad = [
        "../x",
        "/etc/passwd",
        "a/b",
        "..",
        ".",
        "",
        long.as_str(),
        ".hidden",
        "a\\b",
        "a b",
        "é",
        "a\0b",
        "~root",
        "x/../../y",
    ];
    for key in bad {
        for result in [
            memory.save(key, &json!(1)).map(|()| Value::Null),
            memory.load(key),
            memory.delete(key).map(Value::Bool),
            memory.exists(key).map(Value::Bool),
        ] {
            let err = result.unwrap_err();
            assert!(
                matches!(err, StateError::InvalidKey { .. }),
                "{key:?}: {err}"
            );
            assert_eq!(err.kind(), "invalid_params");
            assert!(err.to_string().starts_with("memory key"), "{err}");
        }
    }
    // The longest allowed key works; the message for a long one is clipped.
    memory.save(&"k".repeat(128), &json!(1)).unwrap();
    assert!(memory.save(&long, &json!(1)).unwrap_err().to_string().len() < 300);
    // Nothing was written outside memory/.
    assert_eq!(
        tree(root.path()),
        [format!("MCPs/memory/{}.json", "k".repeat(128))]
    );
}

#[test]
fn value_and_total_limits() {
    let (_root, memory) = open_memory();
    let big = json!("x".repeat(MAX_VALUE_BYTES));
    let err = memory.save("big", &big).unwrap_err();
    assert!(matches!(err, StateError::ValueTooLarge { .. }), "{err}");
    assert_eq!(err.kind(), "invalid_params");
    let just_fits = json!("x".repeat(MAX_VALUE_BYTES - 2));
    memory.save("fits", &just_fits).unwrap();
    assert!(!memory.exists("big").unwrap());

    // The total: 64 values of exactly 1 MiB fit, then not one byte more.
    let (_root, memory) = open_memory();
    let chunk = json!("y".repeat(MAX_VALUE_BYTES - 2));
    for i in 0..64 {
        memory.save(&format!("k{i}"), &chunk).unwrap();
    }
    let err = memory.save("one-more", &json!("z")).unwrap_err();
    assert!(matches!(err, StateError::MemoryFull { .. }), "{err}");
    // Replacing an existing key with a value of the same size still fits.
    memory.save("k0", &chunk).unwrap();
}

#[test]
fn corrupt_values_are_reported() {
    let (_root, memory) = open_memory();
    fs::write(memory.dir().join("bad.json"), b"{not json").unwrap();
    let err = memory.load("bad").unwrap_err();
    assert_eq!(err.kind(), "internal");
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[test]
fn failed_write_leaves_nothing_behind() {
    let (root, memory) = open_memory();
    // A folder where the file should go makes the rename fail.
    fs::create_dir(memory.dir().join("blocked.json")).unwrap();
    let err = memory.save("blocked", &json!(1)).unwrap_err();
    assert_eq!(err.kind(), "internal");
    assert!(err.to_string().starts_with("could not write"), "{err}");
    let temps: Vec<String> = tree(root.path())
        .into_iter()
        .filter(|p| p.contains(".tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
}

#[test]
fn two_writers_of_one_key_never_tear_it() {
    let (root, first) = open_memory();
    // A second handle on the same folder: its own lock, as another process would have.
    let second = Memory::open(&root.path().join("MCPs")).unwrap();
    let value = |writer: usize, i: usize| json!({"writer": writer, "i": i, "pad": "p".repeat(4096 * writer)});
    std::thread::scope(|scope| {
        for (writer, memory) in [(1, &first), (2, &second)] {
            scope.spawn(move || {
                for i in 0..100 {
                    memory.save("shared", &value(writer, i)).unwrap();
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..200 {
                match first.load("shared") {
                    Ok(v) => {
                        let writer = usize::try_from(v["writer"].as_u64().unwrap()).unwrap();
                        let i = usize::try_from(v["i"].as_u64().unwrap()).unwrap();
                        assert_eq!(v, value(writer, i));
                    }
                    Err(StateError::NotFound { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
        });
    });
    let last = first.load("shared").unwrap();
    assert_eq!(last["i"], 99);
    assert_eq!(tree(root.path()), ["MCPs/memory/shared.json"]);
}

#[test]
fn memory_rpc_follows_the_frame_contract() {
    let (_root, memory) = open_memory();
    let rpc = |params: Value| memory.rpc(&params);
    assert_eq!(
        rpc(json!({"op": "save", "key": "k", "value": [1]})).unwrap(),
        json!(null)
    );
    assert_eq!(
        rpc(json!({"op": "save", "key": "n", "value": null})).unwrap(),
        json!(null)
    );
    assert_eq!(rpc(json!({"op": "load", "key": "k"})).unwrap(), json!([1]));
    assert_eq!(rpc(json!({"op": "load", "key": "n"})).unwrap(), json!(null));
    assert_eq!(
        rpc(json!({"op": "exists", "key": "k"})).unwrap(),
        json!(true)
    );
    assert_eq!(rpc(json!({"op": "list"})).unwrap(), json!(["k", "n"]));
    let info = rpc(json!({"op": "info"})).unwrap();
    assert_eq!(info["keys"], 2);
    assert_eq!(info["bytes"], 7);
    assert_eq!(
        info["path"], GUEST_MEMORY_PATH,
        "no host path reaches the guest"
    );
    assert_eq!(
        rpc(json!({"op": "delete", "key": "k"})).unwrap(),
        json!(true)
    );
    assert_eq!(
        rpc(json!({"op": "delete", "key": "k"})).unwrap(),
        json!(false)
    );
    assert_eq!(
        rpc(json!({"op": "load", "key": "k"})).unwrap_err().kind(),
        "not_found"
    );
    for bad in [
        json!({}),
        json!({"op": 3}),
        json!({"op": "drop"}),
        json!({"op": "save", "key": "k"}),
        json!({"op": "load"}),
        json!({"op": "load", "key": 5}),
        json!({"op": "load", "key": "../k"}),
    ] {
        let err = rpc(bad.clone()).unwrap_err();
        assert_eq!(err.kind(), "invalid_params", "{bad}: {err}");
    }
}

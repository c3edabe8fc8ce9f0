//! The recursion guard: whether a stdio entry would launch this bridge itself.

use super::discovery_env::DiscoveryEnv;

/// This bridge's executable name, as clients launch it.
pub const BRIDGE_NAME: &str = "mcp-server-code-execution-mode";
/// The reference's Python module name (`python -m mcp_server_code_execution_mode`).
const BRIDGE_MODULE: &str = "mcp_server_code_execution_mode";

/// Whether a stdio entry would start this bridge: by name (`mcp-server-code-execution-mode`
/// as the program or the program's file name, or as a bare argument of a launcher such as
/// `uvx` or `pipx run`, with or without a version suffix), by module
/// (`python -m mcp_server_code_execution_mode`), or by path (the command resolves to this
/// very executable). Arguments that are paths (`/src/mcp-server-code-execution-mode`, say a
/// folder given to a filesystem server) do not count: they name files, not programs.
pub(super) fn launches_self(env: &DiscoveryEnv, command: &str, args: &[String]) -> bool {
    let names_bridge = |word: &str| {
        let word = word.strip_suffix(".exe").unwrap_or(word);
        let base = word
            .split(['@', '=', '[', '<', '>', '~'])
            .next()
            .unwrap_or(word);
        base == BRIDGE_NAME || base == BRIDGE_MODULE
    };
    let program = command.rsplit(['/', '\\']).next().unwrap_or(command);
    let is_path = |arg: &&String| arg.contains(['/', '\\']);
    if names_bridge(program) || args.iter().filter(|a| !is_path(a)).any(|a| names_bridge(a)) {
        return true;
    }
    let Some(self_exe) = &env.self_exe else {
        return false;
    };
    let Ok(self_exe) = std::fs::canonicalize(self_exe) else {
        return false;
    };
    let resolved = if command.contains('/') {
        Some(env.cwd.join(command))
    } else {
        env.var("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(command))
                .find(|candidate| candidate.is_file())
        })
    };
    resolved
        .and_then(|p| std::fs::canonicalize(p).ok())
        .is_some_and(|p| p == self_exe)
}

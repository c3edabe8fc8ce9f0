//! The adversarial suite: hostile Python, sent through `run_python` as an agent's code
//! would be, trying to get out of the sandbox or take the server down. Every test is named
//! `attack_<what>` (so `cargo test --test adversarial -- --list` counts them), runs once per
//! backend like the behaviour suite, and checks two things: the attack was stopped, and the
//! server still serves afterwards. Where a backend legitimately stops an attack another way
//! (WASI has no processes, gVisor answers syscalls with its own kernel), the test says what
//! that backend must show instead.
//!
//! Run one backend's attacks with `cargo test --release --test adversarial podman::`.

mod attack;
mod bridge_abuse;
mod cross_session;
mod exhaustion;
mod host;
mod host_files;
mod leaks;
mod network;
mod privilege;
#[allow(
    dead_code,
    reason = "shared with the behaviour suite; this suite uses part of it"
)]
#[path = "../behaviour/support.rs"]
mod support;
mod writes;

#[macro_use]
#[path = "../common/stamp.rs"]
mod stamp;

for_each_backend! {
    host_files: attack_read_host_marker_files, attack_read_proc_1_environ,
        attack_symlink_to_root, attack_symlink_through_proc_self_root,
        attack_symlink_to_host_paths, attack_dotdot_traversal, attack_hardlink_to_host_file,
        attack_mountinfo_names_no_marker, attack_inherited_descriptors;
    writes: attack_write_system_directories, attack_write_engine_scratch_directories,
        attack_write_through_symlinks, attack_remount_root_read_write;
    network: attack_tcp_to_host_loopback, attack_tcp_to_host_address, attack_dns_resolution,
        attack_udp_to_host, attack_raw_sockets, attack_container_engine_sockets,
        attack_bridge_channel_sockets, attack_abstract_unix_socket,
        attack_listen_for_inbound, attack_egress_to_host_services,
        attack_header_injection_around_a_placeholder;
    privilege: attack_capabilities, attack_setuid_root, attack_setgid_root, attack_mount,
        attack_ptrace, attack_unshare, attack_chroot, attack_kernel_modules, attack_keyctl,
        attack_bpf_and_perf, attack_host_wide_syscalls, attack_setuid_binaries;
    exhaustion: attack_memory_bomb, attack_memory_across_processes, attack_fork_bomb,
        attack_spinners_outlive_the_deadline,
        attack_thread_bomb, attack_fill_tmp, attack_fill_workspace, attack_huge_stdout,
        attack_huge_stderr, attack_deep_recursion_in_c, attack_many_files;
    leaks: attack_bridge_secret_env, attack_host_name_and_user, attack_host_paths;
    bridge_abuse: attack_unlisted_server, attack_forged_rpc_for_unlisted_server,
        attack_oversized_frame, attack_malformed_frame, attack_protocol_lookalikes,
        attack_path_traversal_in_tool_arguments, attack_path_traversal_in_saved_tool_names,
        attack_path_traversal_in_memory_keys, attack_unknown_rpc_methods;
    cross_session: attack_files_of_another_session, attack_globals_of_another_session,
        attack_kill_another_session, attack_across_bridges;
}

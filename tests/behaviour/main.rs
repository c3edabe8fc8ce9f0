//! The behaviour suite: every test is written once, as `async fn(&TestBackend)`, and stamped
//! out per backend by `for_each_backend!`. It starts the real binary and speaks MCP to it.
//! A backend that cannot run here prints `SKIP <backend>: <reason>` and passes, unless
//! `TEST_REQUIRE_BACKENDS` names it.
//!
//! Run one backend's tests with `cargo test --test behaviour wasi::`.

mod confinement;
mod discovery;
mod durable;
mod exec;
mod faults;
mod files;
mod fresh;
mod isolation;
mod limits;
mod load;
mod mounts;
mod network;
mod packages;
mod plots;
mod protocol;
mod stack;
mod support;
mod terminal;

#[macro_use]
#[path = "../common/stamp.rs"]
mod stamp;

#[path = "../common/procs.rs"]
mod procs;

for_each_backend! {
    exec: prints_stdout, keeps_globals_between_calls, top_level_await_works,
        asyncio_objects_survive_between_calls, exceptions_show_only_user_frames,
        syntax_errors_point_at_the_line, runs_are_numbered_from_one_in_every_session,
        stderr_is_captured_separately,
        system_exit_ends_the_run_not_the_session, named_sessions_are_separate,
        reset_starts_afresh, stdin_reads_see_end_of_file, runtime_helpers_are_importable,
        large_code_runs, unicode_round_trips, frames_use_the_json_accelerator,
        code_that_never_waits_still_runs_in_a_task;
    limits: runaway_loop_is_stopped_and_next_call_works, blocking_sleep_is_stopped,
        output_before_a_deadline_is_kept,
        memory_cap_gives_memory_error, huge_stdout_is_capped_honestly,
        a_reply_carries_its_output_within_the_cap,
        raw_fd_writes_do_not_break_the_protocol, frame_lookalike_text_is_plain_output,
        guest_exit_is_reported_and_next_call_works, timeout_argument_is_clamped,
        concurrent_calls_on_one_session_are_serialised, filling_scratch_space_is_stopped,
        deep_recursion_is_contained, idle_sessions_are_reaped;
    protocol: lists_one_tool_with_schemas, unknown_tool_is_a_protocol_error,
        bad_arguments_get_a_clear_error, unknown_server_is_named,
        malformed_json_rpc_keeps_the_server_serving, capabilities_resource_is_readable,
        output_modes_shape_the_text, structured_content_reports_the_run,
        cancelling_a_request_stops_its_run;
    confinement: memory_bomb_is_stopped_with_a_clear_error, fork_bomb_hits_the_pids_cap,
        privileges_are_dropped, interrupted_code_keeps_its_session,
        code_ignoring_the_interrupt_is_killed_and_reported,
        nothing_is_left_after_the_client_leaves, nothing_is_left_after_sigterm,
        a_crashed_bridge_is_cleaned_up_by_the_next, the_kernel_is_the_one_promised,
        cpu_quota_is_enforced, missing_limits_are_named_in_every_reply;
    files: files_written_to_out_come_back, cut_output_is_saved_to_read_on_purpose;
    fresh: fresh_sessions_share_no_state_and_no_random_seed,
        the_data_stack_imports_in_a_fresh_session, wasi_sessions_start_from_the_snapshot;
    plots: plt_show_returns_the_figure_as_an_image, figures_left_open_come_back_once;
    isolation: no_network, loopback_is_the_only_interface, empty_environment, host_files_are_invisible,
        scratch_is_writable_and_private_per_session, root_is_not_writable;
    faults: upstream_crash_mid_call_is_reported, upstream_hang_ends_at_the_timeout,
        upstream_flood_is_refused_clearly, guest_crash_is_reported_and_next_call_works,
        oom_killed_guest_is_reported_and_next_call_works,
        ending_the_bridge_mid_run_leaves_nothing;
    discovery: docs_and_descriptions_leave_no_server_running;
    durable: a_session_survives_the_client_closing_stdin, a_session_survives_sigterm,
        an_idle_save_survives_sigkill_and_the_reaper, a_fork_is_a_copy_the_original_never_sees,
        unsaveable_names_are_listed, a_bad_checkpoint_gives_a_fresh_session_with_a_notice,
        reset_discards_the_checkpoint, idle_sessions_are_suspended_to_make_room,
        live_and_saved_sessions_are_listed_with_their_sizes,
        a_checkpoint_over_the_cap_is_refused_with_its_size;
    load: sixteen_sessions_share_a_thousand_runs, a_long_soak_keeps_memory_flat;
    stack: numpy_and_pandas_compute_the_right_numbers, scipy_and_scikit_learn_fit,
        a_saved_figure_comes_back_as_an_image, matplotlib_starts_from_the_prebuilt_font_list;
    mounts: csv_in_a_granted_dir_is_read_with_the_csv_module,
        csv_in_a_granted_dir_is_read_with_pandas, granted_dirs_are_never_writable,
        symlinks_out_of_a_grant_give_nothing, dot_dot_cannot_leave_a_grant;
    packages: install_adds_a_pure_python_package_to_this_session_only,
        startup_packages_are_in_every_session, a_package_not_on_the_index_is_named,
        a_package_with_only_an_sdist_is_refused,
        a_package_without_a_wheel_for_this_platform_is_refused,
        an_install_over_the_size_cap_is_refused, installs_can_be_turned_off;
    terminal: control_sequences_reach_the_client_escaped, plain_output_is_untouched;
    network: fetch_and_urllib_reach_allowed_hosts_only,
        allowed_names_of_loopback_reach_nothing_unless_opted_in,
        without_an_allow_list_there_is_no_network,
        clients_that_honour_the_proxy_variables_reach_allowed_hosts_only,
        pip_installs_from_the_index_alone, each_session_is_capped_in_connections_and_bytes;
}

"""Shared test set-up. Tests run on the CPU with one device; multi-device tests use a subprocess."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests count compilations; a warm persistent cache would load programs instead of compiling
# them. tests/test_compile_cache.py turns it on in subprocesses of its own.
os.environ.setdefault("JAXTUNE_COMPILATION_CACHE", "0")
# Most of the suite's time is XLA:CPU compiling small programs; LLVM's lowest optimization
# level compiles them several times faster (the suite runs about a quarter faster). Every
# comparison in the tests is between programs compiled with the same flags (a member and its
# solo run, two layouts, a hand-written loop), so no claim depends on the level.
# Subprocesses that set XLA_FLAGS themselves use the default level.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(
        [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()


# ---------------------------------------------------------------------------------------------
# Test tiers. `make test` (CI) runs the suite without the tests below, the longest ones (each
# 9-70 s on a 2-core machine: multi-device and multi-process equivalence, end-to-end
# experiments, the longer documentation pages, crash-and-resume loops); `make test-all` runs
# everything. Each behaviour they check has a cheaper check in the fast tier too (one
# multi-process run, the member-equals-solo and compile-once tests, the README, quickstart,
# porting and own-code pages), so a break is caught by CI; the slow tier checks it more widely.
# Tests already decorated with @pytest.mark.slow are slow as well.
SLOW_TESTS = frozenset({
    "tests/test_bayes.py::test_batches_are_distinct_and_in_the_space[kriging_believer]",
    "tests/test_budgets.py::test_batch_sizes_share_the_set_up_program",
    "tests/test_budgets.py::test_schedules_that_read_the_horizon_keep_one_program_per_budget",
    "tests/test_checkpoint.py::test_sigkill_at_random_points_then_resume",
    "tests/test_checkpoint.py::test_unsorted_space_file_killed_at_each_stage_resumes_to_the_same_rows[stages0]",
    "tests/test_checkpoint.py::test_unsorted_space_file_killed_at_each_stage_resumes_to_the_same_rows[stages1]",
    "tests/test_cli.py::test_sweep_with_plots_end_to_end",
    "tests/test_compile_cache.py::test_a_second_process_loads_instead_of_compiling",
    "tests/test_compile_cache.py::test_processes_share_one_empty_folder",
    "tests/test_contracts.py::test_multi_round_tune_metadata_counts_every_round",
    "tests/test_cv.py::test_doc_examples_run[cross_validation.md]",
    "tests/test_cv.py::test_nested_cv_survives_diverged_configs",
    "tests/test_cv.py::test_nested_cv_with_the_one_standard_error_rule",
    "tests/test_cv.py::test_select_model_reports_a_failed_candidate_and_keeps_the_others",
    "tests/test_devices.py::test_chunks_and_device_counts_give_the_same_bits",
    "tests/test_engine_segment.py::test_fast_program_equals_guarded_program_bit_for_bit[vmap]",
    "tests/test_devices.py::test_max_members_per_chunk_and_members_per_device_in_python",
    "tests/test_devices.py::test_memory_budget_splits_a_population_into_chunks",
    "tests/test_devices.py::test_memory_estimate_bounds_the_compiled_segment[map-cnn-static1]",
    "tests/test_devices.py::test_memory_estimate_bounds_the_compiled_segment[vmap-cnn-static1]",
    "tests/test_devices.py::test_pinned_layout_is_identical_on_1_2_4_8_devices",
    "tests/test_devices.py::test_same_members_on_1_2_4_8_devices",
    "tests/test_distributed.py::test_a_dead_peer_fails_the_other_quickly[crash-before-training]",
    "tests/test_distributed.py::test_a_dead_peer_fails_the_other_quickly[sigkill-coordinator-mid-training]",
    "tests/test_distributed.py::test_a_dead_peer_fails_the_other_quickly[sigkill-mid-training]",
    "tests/test_distributed.py::test_a_dead_peer_fails_the_other_quickly[sys.exit-before-training]",
    "tests/test_distributed.py::test_engine_flags_reach_the_engine_on_the_scheduler_path[halving]",
    "tests/test_distributed.py::test_jaxtune_sweep_in_two_processes_writes_once_what_one_process_computes",
    "tests/test_distributed.py::test_optuna_storage_is_written_once_by_two_processes",
    "tests/test_distributed.py::test_sweep_flags_reach_the_engine",
    "tests/test_docs.py::test_blocks_run[docs/api.md]",
    "tests/test_docs.py::test_blocks_run[docs/checkpointing.md]",
    "tests/test_docs.py::test_blocks_run[docs/cli.md]",
    "tests/test_docs.py::test_blocks_run[docs/distributed.md]",
    "tests/test_docs.py::test_blocks_run[docs/early_stopping.md]",
    "tests/test_docs.py::test_blocks_run[docs/experiments.md]",
    "tests/test_docs.py::test_blocks_run[docs/faq.md]",
    "tests/test_docs.py::test_blocks_run[docs/integrations.md]",
    "tests/test_docs.py::test_blocks_run[docs/nnx.md]",
    "tests/test_docs.py::test_blocks_run[docs/sklearn.md]",
    "tests/test_docs.py::test_blocks_run[docs/strategies.md]",
    "tests/test_engine.py::test_dynamic_fixed_value_does_not_recompile",
    "tests/test_engine.py::test_member_loop_map_is_the_solo_run_and_agrees_with_vmap",
    "tests/test_experiments.py::test_binary_classifier_searches_at_equal_budget",
    "tests/test_experiments.py::test_digits_mlp_cv_search_and_the_same_images_as_mnist_files",
    "tests/test_experiments.py::test_linear_regression_recovers_the_slope_of_each_objective",
    "tests/test_experiments.py::test_lr_schedules_tunes_each_schedule",
    "tests/test_experiments.py::test_model_selection_nested_cv_scores_the_whole_procedure",
    "tests/test_memory.py::test_4096_members_do_not_grow_host_memory_per_segment",
    "tests/test_overlap.py::test_overlap_gives_the_sequential_results_and_compile_counts",
    "tests/test_overlap.py::test_two_devices_overlap_gives_the_sequential_results",
    "tests/test_pbt.py::test_exploit_copies_the_donors_parameters",
    "tests/test_pbt.py::test_replay_alone_matches_to_tolerance",
    "tests/test_ppo.py::test_a_ppo_sweep_through_the_engine_equals_a_python_loop_and_lr_0_keeps_the_init",
    "tests/test_progress.py::test_resumed_scheduler_run_reaches_what_an_uninterrupted_one_reports[halving]",
    "tests/test_sklearn.py::test_regressor_search_equals_gridsearchcv",
    "tests/test_tune.py::test_grid_search_stops_when_exhausted",
    "tests/test_tune.py::test_random_search_rounds_seeds_and_ids",
    "tests/test_tune.py::test_tune_is_reproducible",
})


def pytest_collection_modifyitems(config, items):
    """Marks the :data:`SLOW_TESTS` slow (``-m "not slow"`` leaves them out)."""
    for item in items:
        if item.nodeid in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)

"""The `harp` command line: every command, its help, its exit codes and its files."""

from __future__ import annotations

import csv
import importlib.metadata
import json
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import harp
from harp import Store, select
from harp.cli import default_weights, main


def run(*args: str, expect: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("command", all_commands(main), ids=" ".join)
def test_every_command_has_help_with_an_example(command):
    result = run(*command, "--help")
    assert "Example" in result.output
    assert main.get_command(click.Context(main), command[0]).help


def test_version_is_the_installed_package_version():
    installed = importlib.metadata.version("harp-explorer")
    assert run("--version").output.split() == ["harp,", "version", installed]
    assert harp.__version__ == installed


def test_unknown_option_is_a_usage_error():
    assert CliRunner().invoke(main, ["select", "--nope"]).exit_code == 2


def test_synth_then_info(tmp_path):
    store = tmp_path / "s.duckdb"
    out = json.loads(run("-q", "synth", "--leaves", 30, "--domains", 3, "--seed", 2, "--out", store).stdout)
    assert out["counts"]["leaves"] == 30
    info = run("info", store).output
    assert "schema_version" in info and "content_hash" in info
    summary = json.loads(run("info", store, "--json").output)
    assert summary["n_leaves"] == 30 and summary["n_domains"] == 3


def test_synth_refuses_to_overwrite_without_force(tmp_store):
    result = CliRunner().invoke(main, ["synth", "--leaves", "5", "--out", str(tmp_store)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert "already exists" in result.stderr
    run("-q", "synth", "--leaves", 5, "--domains", 2, "--out", tmp_store, "--force")


def test_info_on_a_missing_store_is_one_line_error(tmp_path):
    result = CliRunner().invoke(main, ["info", str(tmp_path / "nope.duckdb")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert "nope.duckdb" in result.stderr


def test_select_writes_csv_and_manifest_matching_the_library(tmp_store, tmp_path):
    out = tmp_path / "chosen.csv"
    weights = tmp_path / "w.json"
    inputs = Store.open(tmp_store).selection_inputs()
    weights.write_text(json.dumps({inputs.domain_names[0]: 3.0}))
    summary = json.loads(
        run(
            "-q",
            "select",
            "--store",
            tmp_store,
            "--envelope",
            "harp-e",
            "--budget",
            150,
            "--weights",
            weights,
            "--pin",
            3,
            "--exclude",
            4,
            "--out",
            out,
        ).stdout
    )
    expected_weights = default_weights(inputs.active)
    expected_weights[0] = 3.0
    expected = select(
        inputs.phi,
        inputs.base,
        envelope="E",
        weights=expected_weights,
        members=inputs.members,
        budget=150,
        pinned=[3],
        excluded=[4],
    )
    with out.open() as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["rank", "point_id", "leaf_id"]
    body = np.array(rows[1:], dtype=np.int64).reshape(-1, 3)
    np.testing.assert_array_equal(body[:, 0], np.arange(expected.points.size))
    np.testing.assert_array_equal(body[:, 1], expected.points)
    np.testing.assert_array_equal(body[:, 2], expected.point_leaves)
    assert summary["points"] == expected.points.size <= 150

    manifest = json.loads((tmp_path / "chosen.manifest.json").read_text())
    assert manifest["envelope"] == "HARP-E"
    assert manifest["budget"] == 150
    assert manifest["pinned"] == [3] and manifest["excluded"] == [4]
    assert manifest["weights"][inputs.domain_names[0]] == 3.0
    assert manifest["store_hash"] == Store.open(tmp_store).content_hash()
    assert manifest["harp_version"] == importlib.metadata.version("harp-explorer")
    assert manifest["created_at"]


def test_select_can_save_into_the_store(tmp_store, tmp_path):
    run(
        "-q",
        "select",
        "--store",
        tmp_store,
        "--envelope",
        "C",
        "--out",
        tmp_path / "a.csv",
        "--save-as",
        "first",
    )
    saved = Store.open(tmp_store).load_selection("first")
    rows = (tmp_path / "a.csv").read_text().splitlines()
    assert len(rows) - 1 == len(saved["points"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--envelope", "Z"], "envelope must be one of", id="envelope"),
        pytest.param(["--envelope", "C", "--budget", "-3"], "budget must be >= 0, got -3", id="budget"),
        pytest.param(["--envelope", "C", "--pin", "999"], "pinned holds leaf 999", id="pin"),
        pytest.param(["--envelope", "C", "--weights", "WEIGHTS"], "unknown domains", id="weights-unknown"),
        pytest.param(["--envelope", "C", "--weights", "BROKEN"], "is not valid JSON", id="weights-broken"),
    ],
)
def test_select_bad_input_is_error_exit_1(tmp_store, tmp_path, extra, message):
    (tmp_path / "w.json").write_text(json.dumps({"no such domain": 1}))
    (tmp_path / "b.json").write_text("{not json")
    extra = [
        {"WEIGHTS": str(tmp_path / "w.json"), "BROKEN": str(tmp_path / "b.json")}.get(a, a) for a in extra
    ]
    result = CliRunner().invoke(
        main, ["select", "--store", str(tmp_store), "--out", str(tmp_path / "x.csv"), *extra]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert not (tmp_path / "x.csv").exists()


def test_export_import_round_trip_keeps_the_hash(tmp_store, tmp_path):
    folder = tmp_path / "parquet"
    files = json.loads(run("-q", "export", tmp_store, folder).stdout)
    assert any(Path(f).name == "effects.parquet" for f in files)
    copy = tmp_path / "copy.duckdb"
    result = json.loads(run("-q", "import", folder, copy).stdout)
    assert result["hash"] == Store.open(tmp_store).content_hash()
    assert CliRunner().invoke(main, ["import", str(folder), str(copy)]).exit_code == 1  # no clobbering
    run("-q", "import", folder, copy, "--force")


def test_app_refuses_a_missing_store(tmp_path):
    result = CliRunner().invoke(main, ["app", "--store", str(tmp_path / "missing.duckdb")])
    assert result.exit_code == 1
    assert "Error:" in result.output


def test_app_binds_to_localhost_by_default():
    option = next(p for p in main.get_command(click.Context(main), "app").params if p.name == "host")
    assert option.default == "127.0.0.1"

"""The `harp` command line: every command, its help, its exit codes and its files."""

from __future__ import annotations

import csv
import importlib
import importlib.metadata
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

import harp
from harp import Store, select
from harp.cli import main
from harp.objective import default_weights


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


@pytest.mark.parametrize("command", all_commands(main), ids=" ".join)
def test_every_command_and_subcommand_has_its_own_help_text_with_an_example(command):
    found = main
    for name in command:
        found = found.get_command(click.Context(found), name)
    assert found.help and "Example" in found.help


@pytest.mark.parametrize(
    "arguments",
    [["--help"], ["--version"], ["measure", "--help"], ["design", "measure", "--help"]],
    ids=" ".join,
)
def test_help_and_version_load_no_heavy_library(arguments):
    script = (
        "import sys; from harp.cli import main; "
        f"main({arguments!r}, prog_name='harp', standalone_mode=False); "
        "print('heavy:', sorted(name for name in ('numba', 'torch', 'streamlit') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "heavy: []"


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


def test_info_says_measured_leaves_of_which_held_out_of_the_fit(tmp_store):
    store = Store.open(tmp_store)
    inputs = store.selection_inputs()
    fit = int(inputs.measured.any(axis=1).sum())
    assert f"n_measured_leaves {fit} measured, none held out of the fit" in run("info", tmp_store).output
    # What `harp infer --hold-out` records: the leaves fitted and those held out (measured, not in the fit).
    source = {"config_key": "k", "measured_leaves": fit, "held_out_leaves": 3}
    store.write_effects(inputs.phi, inputs.sd, inputs.measured, source=source)
    line = f"n_measured_leaves {fit + 3} measured, of which 3 held out of the fit (the fit used {fit})"
    assert line in run("info", tmp_store).output
    summary = json.loads(run("info", tmp_store, "--json").output)
    assert (summary["n_measured_leaves"], summary["n_held_out_leaves"], summary["n_fit_leaves"]) == (
        fit + 3,
        3,
        fit,
    )


def test_synth_refuses_to_overwrite_without_force(tmp_store):
    result = CliRunner().invoke(main, ["synth", "--leaves", "5", "--out", str(tmp_store)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("Error: ")
    assert "already exists; pass --force to replace it" in result.stderr
    assert "overwrite=True" not in result.stderr
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


def test_select_pauses_cycle_collection_only_while_it_runs(tmp_store, tmp_path):
    import gc

    try:
        ok = CliRunner().invoke(main, ["select", "--store", str(tmp_store), "--envelope", "C",
                                       "--out", str(tmp_path / "a.csv")])  # fmt: skip
        assert ok.exit_code == 0, ok.output
        assert gc.isenabled()
        refused = CliRunner().invoke(main, ["select", "--store", str(tmp_store), "--envelope", "C",
                                            "--pin", "99999", "--out", str(tmp_path / "b.csv")])  # fmt: skip
        assert refused.exit_code == 1 and gc.isenabled()  # an error turns it back on too
        gc.disable()
        CliRunner().invoke(main, ["select", "--store", str(tmp_store), "--envelope", "C",
                                  "--out", str(tmp_path / "c.csv")])  # fmt: skip
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        gc.enable()


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


def test_select_names_the_contents_it_computed_from_when_a_write_lands_meanwhile(
    tmp_store, tmp_path, monkeypatch
):
    module = importlib.import_module("harp.select")  # the module (harp.select the attribute is the function)
    real_select = module.select
    store = Store.open(tmp_store)
    computed_from = store.content_hash()

    def select_then_infer_lands(phi, *args, **kwargs):
        chosen = real_select(phi, *args, **kwargs)
        store.write_effects(np.asarray(phi) + 0.01, *_sd_and_measured(store))  # another `harp infer`
        return chosen

    monkeypatch.setattr(module, "select", select_then_infer_lands)
    result = CliRunner().invoke(main, ["-q", "select", "--store", str(tmp_store), "--envelope", "C",
                                       "--out", str(tmp_path / "a.csv"), "--save-as", "first"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert store.content_hash() != computed_from
    manifest = json.loads((tmp_path / "a.manifest.json").read_text())
    assert manifest["store_hash"] == computed_from
    assert store.load_selection("first")["store_hash"] == computed_from


def _sd_and_measured(store):
    inputs = store.selection_inputs()
    return inputs.sd, inputs.measured


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--envelope", "Z"], "envelope must be one of", id="envelope"),
        pytest.param(["--envelope", "C", "--budget", "-3"], "budget must be >= 0, got -3", id="budget"),
        pytest.param(["--envelope", "C", "--pin", "999"], "--pin holds leaf 999, outside 0..39", id="pin"),
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
    refused = CliRunner().invoke(main, ["import", str(folder), str(copy)])  # no clobbering
    assert refused.exit_code == 1
    assert "pass --force" in refused.stderr and "overwrite=True" not in refused.stderr
    run("-q", "import", folder, copy, "--force")


def test_app_refuses_a_missing_store(tmp_path):
    result = CliRunner().invoke(main, ["app", "--store", str(tmp_path / "missing.duckdb")])
    assert result.exit_code == 1
    assert "Error:" in result.output


def test_app_binds_to_localhost_by_default():
    option = next(p for p in main.get_command(click.Context(main), "app").params if p.name == "host")
    assert option.default == "127.0.0.1"


@pytest.mark.parametrize("given", [False, True], ids=["default-folder", "--stores"])
def test_app_tells_the_server_its_store_and_folder_of_stores(tmp_store, tmp_path, monkeypatch, given):
    served = {}

    def serve(command, environment, *, quiet):
        served.update(command=command, environment=environment)
        return 0

    monkeypatch.setattr("harp.cli.app._serve", serve)
    monkeypatch.setattr("harp.cli.app._check_port_free", lambda host, port: None)
    other = tmp_path / "other-stores"
    other.mkdir()
    args = ["app", "--store", str(tmp_store)] + (["--stores", str(other)] if given else [])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    environment = served["environment"]
    assert environment["HARP_STORE"] == str(tmp_store.resolve())
    assert environment["HARP_STORES"] == str((other if given else tmp_store.parent).resolve())
    command = served["command"]
    assert command[command.index("--server.address") + 1] == "127.0.0.1"
    # No full garbage collection after each rerun (a quarter of a second of every interaction at 50,000 leaves).
    assert command[command.index("--runner.postScriptGC") + 1] == "false"


def test_app_on_a_folder_of_stores_alone(tmp_path, monkeypatch):
    served = {}
    monkeypatch.setattr(
        "harp.cli.app._serve", lambda command, environment, *, quiet: served.update(environment) or 0
    )
    monkeypatch.setattr("harp.cli.app._check_port_free", lambda host, port: None)
    monkeypatch.setenv("HARP_STORE", "/somewhere/inherited.duckdb")
    result = CliRunner().invoke(main, ["app", "--stores", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert served["HARP_STORES"] == str(tmp_path.resolve()) and "HARP_STORE" not in served
    refused = CliRunner().invoke(main, ["app"])
    assert refused.exit_code == 2 and "give --store STORE, --stores DIR, or both" in refused.output


# -- select: outputs never clobber inputs, a refused save writes nothing, checks come before the work ------------


def select_args(store: Path, out: Path, *extra: object) -> list[str]:
    return [str(a) for a in ("select", "--store", store, "--envelope", "C", "--out", out, *extra)]


def files_in(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("out-is-store", "which is the --store of this command", id="out-is-the-store"),
        pytest.param(
            "out-links-store", "which is the --store of this command", id="out-is-a-link-to-the-store"
        ),
        pytest.param("out-is-weights", "which is the --weights of this command", id="out-is-the-weights"),
        pytest.param(
            "manifest-is-weights", "which is the --weights of this command", id="manifest-is-the-weights"
        ),
        pytest.param("out-is-another-store", "a DuckDB database", id="out-is-another-store"),
        pytest.param("manifest-is-a-store", "a DuckDB database", id="manifest-is-a-store"),
        pytest.param("out-is-a-user-file", "not written by harp select", id="out-is-someone-elses-file"),
    ],
)
def test_select_out_never_clobbers_an_input_or_a_store(tmp_store, tmp_path, case, message):
    weights = tmp_path / ("chosen.manifest.json" if case == "manifest-is-weights" else "w.json")
    weights.write_text(json.dumps({}))
    out = {
        "out-is-store": tmp_store,
        "out-links-store": tmp_path / "link.csv",
        "out-is-weights": weights,
        "out-is-another-store": tmp_path / "other.duckdb",
        "out-is-a-user-file": tmp_path / "notes.csv",
    }.get(case, tmp_path / "chosen.csv")
    if case == "out-links-store":
        out.hardlink_to(tmp_store)
    elif case == "out-is-another-store":
        Store.create(out)
    elif case == "manifest-is-a-store":
        Store.create(tmp_path / "chosen.manifest.json")
    elif case == "out-is-a-user-file":
        out.write_text("id,comment\n1,keep me\n")
    before = files_in(tmp_path)
    result = CliRunner().invoke(main, [*select_args(tmp_store, out), "--weights", str(weights)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: --out: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert files_in(tmp_path) == before  # nothing replaced, nothing added, no temporary left


def test_select_replaces_its_own_earlier_csv_and_manifest(tmp_store, tmp_path):
    out = tmp_path / "chosen.csv"
    run("-q", *select_args(tmp_store, out, "--budget", 10))
    run("-q", *select_args(tmp_store, out, "--budget", 5))
    assert len(out.read_text().splitlines()) == 1 + 5
    assert json.loads((tmp_path / "chosen.manifest.json").read_text())["budget"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "chosen.csv",
        "chosen.manifest.json",
        "synth.duckdb",
    ]


def hold_store(path: Path, *, read_only: bool):
    """Keep ``path`` open in another process until the block ends (read-only: nobody can write it)."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == 'ro'); "
            "print('ready', flush=True); sys.stdin.read()",
            str(path),
            "ro" if read_only else "rw",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
    return holder


@pytest.fixture
def store_held_read_only(tmp_store):
    """The store open read-only in another process (so nobody can write it) until the test ends."""
    holder = hold_store(tmp_store, read_only=True)
    yield tmp_store
    holder.communicate("")


def test_select_on_a_store_another_process_writes_names_lock_timeout(tmp_store, tmp_path):
    holder = hold_store(tmp_store, read_only=False)
    try:
        result = CliRunner().invoke(
            main, [*select_args(tmp_store, tmp_path / "x.csv"), "--lock-timeout", "0.2"]
        )
    finally:
        holder.communicate("")
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: --store: ") and result.stderr.count("\n") == 1
    assert (
        "is locked by another process (waited 0.2 s)" in result.stderr and "--lock-timeout" in result.stderr
    )
    assert "lock_timeout" not in result.stderr
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param("first", "--save-as: a selection named 'first' already exists", id="name-taken"),
        pytest.param("", "--save-as: the name must not be empty", id="empty"),
        pytest.param("   ", "--save-as: the name must not be empty", id="blank"),
        pytest.param("LOCKED", "--save-as: ", id="store-locked"),
    ],
)
def test_a_refused_save_as_writes_nothing_and_names_the_option(tmp_store, tmp_path, request, name, message):
    run("-q", *select_args(tmp_store, tmp_path / "first.csv", "--save-as", "first"))
    (tmp_path / "first.csv").unlink()
    (tmp_path / "first.manifest.json").unlink()
    locked = name == "LOCKED"
    if locked:
        request.getfixturevalue("store_held_read_only")
        name = "second"
    hash_before = Store.open(tmp_store, read_only=True).content_hash()
    saved_before = Store.open(tmp_store, read_only=True).list_selections()
    wait = ["--lock-timeout", "0.2"] if locked else []
    result = CliRunner().invoke(
        main, ["-q", *select_args(tmp_store, tmp_path / "x.csv", "--save-as", name, *wait)]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "overwrite=True" not in result.stderr and "lock_timeout" not in result.stderr
    if locked:
        assert "is locked by another process" in result.stderr and "--lock-timeout" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth.duckdb"]  # no CSV, manifest or temporary
    if not locked:
        assert Store.open(tmp_store, read_only=True).list_selections() == saved_before
    assert Store.open(tmp_store, read_only=True).content_hash() == hash_before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(["--out", "NODIR/x.csv"], "--out: folder", id="out-folder-missing"),
        pytest.param(["--out", "TMP"], "is a folder", id="out-is-a-folder"),
        pytest.param(["--save-as", ""], "--save-as: the name must not be empty", id="save-as-empty"),
        pytest.param(["--save-as", "first"], "already exists", id="save-as-taken"),
        pytest.param(["--envelope", "Z"], "--envelope: envelope must be one of", id="envelope"),
        pytest.param(["--budget", "-3"], "--budget: budget must be >= 0", id="budget"),
        pytest.param(["--pin", "999"], "--pin holds leaf 999", id="pin-outside"),
        pytest.param(["--exclude", "-1"], "--exclude holds leaf -1", id="exclude-outside"),
        pytest.param(
            ["--pin", "3", "--exclude", "3"], "--pin and --exclude both name leaf 3", id="pin-and-exclude"
        ),
        pytest.param(["--weights", "UNKNOWN"], "unknown domains", id="weights-unknown-domain"),
        pytest.param(["--weights", "NEGATIVE"], "--weights: weights must be >= 0", id="weights-negative"),
        pytest.param(["--weights", "ZERO", "--all-domains"], "must not be all zero", id="weights-all-zero"),
    ],
)
def test_select_checks_everything_before_reading_the_selection_inputs(
    tmp_store, tmp_path, monkeypatch, extra, message
):
    run("-q", *select_args(tmp_store, tmp_path / "first.csv", "--save-as", "first"))
    names = Store.open(tmp_store).selection_inputs().domain_names
    files = {
        "UNKNOWN": {"no such domain": 1},
        "NEGATIVE": {names[0]: -1},
        "ZERO": dict.fromkeys(names, 0),
    }
    for key, weights in files.items():
        (tmp_path / f"{key}.json").write_text(json.dumps(weights))
    replace = {"NODIR/x.csv": str(tmp_path / "nodir" / "x.csv"), "TMP": str(tmp_path)}
    replace.update({key: str(tmp_path / f"{key}.json") for key in files})
    extra = [replace.get(a, a) for a in extra]

    def expensive(self):
        raise AssertionError("the selection inputs were read before a check that needs none of them")

    monkeypatch.setattr(Store, "selection_inputs", expensive)
    arguments = ["select", "--store", str(tmp_store), "--envelope", "C", "--out", str(tmp_path / "x.csv")]
    result = CliRunner().invoke(main, [*arguments, *extra], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert not (tmp_path / "x.csv").exists()


# -- harp app: refusals before anything is announced, and a stop on SIGTERM/SIGINT whatever its stdio ------------


def harp_process(*arguments: object, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "harp.cli", *(str(a) for a in arguments)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **options,
    )


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_output(process: subprocess.Popen, marker: bytes, give_up_after: float = 120.0) -> None:
    """Read the process's stdout and stderr until one of them shows ``marker``; fail if it exits or stalls first."""
    import selectors
    import time

    seen = b""
    deadline = time.monotonic() + give_up_after
    with selectors.DefaultSelector() as waiting:
        for stream in (process.stdout, process.stderr):
            waiting.register(stream, selectors.EVENT_READ)
        while marker not in seen:
            ready = waiting.select(timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                pytest.fail(f"no {marker!r} within {give_up_after:g} s; the process wrote {seen[-2000:]!r}")
            for key, _ in ready:
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    waiting.unregister(key.fileobj)
                    if not waiting.get_map():
                        pytest.fail(f"the process closed its output before {marker!r}: {seen[-2000:]!r}")
                seen += chunk


@pytest.fixture
def busy_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("busy-port", "--port: port PORT on 127.0.0.1 is already in use", id="busy-port"),
        pytest.param("not-a-store", "is not a DuckDB file", id="not-a-store"),
        pytest.param("bad-host", "--host: cannot resolve 'no-such-host.invalid'", id="bad-host"),
        pytest.param("no-stores-folder", "--stores: TMP/missing is not a folder", id="no-stores-folder"),
    ],
)
def test_app_refuses_with_one_error_line_before_announcing_anything(
    tmp_store, tmp_path, busy_port, case, message
):
    store = tmp_path / "notes.duckdb" if case == "not-a-store" else tmp_store
    (tmp_path / "notes.duckdb").write_text("not a store")
    host = "no-such-host.invalid" if case == "bad-host" else "127.0.0.1"
    stores = ("--stores", tmp_path / "missing") if case == "no-stores-folder" else ()
    app = harp_process("app", "--store", store, *stores, "--host", host, "--port", busy_port, text=True)
    out, err = app.communicate(timeout=120)
    assert app.returncode == 1, err
    assert out == ""
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert message.replace("PORT", str(busy_port)).replace("TMP", str(tmp_path.resolve())) in err


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_app_stops_on_a_signal_after_its_output_pipes_closed(tmp_store, free_port, stop_signal):
    app = harp_process("app", "--store", tmp_store, "--port", free_port)
    try:
        assert app.stderr is not None and app.stdout is not None
        wait_for_output(app, b"URL:")  # the event: Streamlit says where it serves
        assert not port_is_free(free_port)
        app.stdout.close()  # the reader goes away: every later write of the app to its stdio fails
        app.stderr.close()
        app.send_signal(stop_signal)
        assert app.wait(timeout=60) == 0
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
    assert port_is_free(free_port)  # the server is gone too, not only `harp app`


def test_pipeline_commands_speak_cli_options_not_library_arguments(tmp_path, tmp_store):
    phi, leaf_of_point, parent_of_leaf = tmp_path / "phi.npy", tmp_path / "lop.npy", tmp_path / "pol.npy"
    np.save(phi, np.zeros((2, 1)))
    np.save(leaf_of_point, np.array([0, 1]))
    np.save(parent_of_leaf, np.array([0, 0]))
    (tmp_path / "base.json").write_text("[0.5]")
    (tmp_path / "domains.txt").write_text("d\n")
    result = CliRunner().invoke(
        main,
        ["load", "--store", str(tmp_store), "--phi", str(phi), "--leaf-of-point", str(leaf_of_point),
         "--parent-of-leaf", str(parent_of_leaf), "--base", str(tmp_path / "base.json"),
         "--domains", str(tmp_path / "domains.txt")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"Error: {tmp_store} already exists; pass --force to replace it"
    assert "overwrite=True" not in result.output

"""Faults: a whole-file write killed with SIGKILL leaves the old file (or none), and the next run cleans up after it.

Each kill test stops the writer at a known point of its write (a library function patched to say "paused" and
block), waits for that line, then sends SIGKILL: the tests wait for events, never for durations.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from harp import Store
from harp.cli import main
from harp.store import LeftoverFileWarning, remove_leftover_temporaries

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and PIDs as on POSIX")

# Runs `harp ARGS` with MODULE.ATTRIBUTE replaced by a function that prints "paused" and blocks forever; with
# ATTRIBUTE@N, the first N - 1 calls go through to the original and the N-th pauses.
PAUSED_CLI = textwrap.dedent(
    """
    import importlib, sys, threading
    module_name, attribute, *arguments = sys.argv[1:]
    attribute, _, nth = attribute.partition("@")
    owner_path, _, member = attribute.rpartition(".")
    owner = importlib.import_module(module_name)
    for part in filter(None, owner_path.split(".")):
        owner = getattr(owner, part)
    original, calls = getattr(owner, member), [0]
    def paused(*args, **kwargs):
        calls[0] += 1
        if calls[0] < int(nth or 1):
            return original(*args, **kwargs)
        print("paused", flush=True)
        threading.Event().wait()
    setattr(owner, member, paused)
    from harp.cli import main
    main(arguments, prog_name="harp")
    """
)


def kill_while_paused(module: str, attribute: str, *arguments: object) -> None:
    """Run ``harp ARGUMENTS`` in a child process, wait until it reaches ``attribute`` (``name@N``: its N-th
    call), and SIGKILL it there."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: a chatty child never blocks on it
        child = subprocess.Popen(
            [sys.executable, "-c", PAUSED_CLI, module, attribute, *(str(a) for a in arguments)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        assert child.stdout is not None
        line = child.stdout.readline()
        if line != "paused\n":
            child.kill()
            child.communicate()
            errors.seek(0)
            pytest.fail(f"the child never reached {module}.{attribute}: {line!r} {errors.read()[-3000:]}")
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    child.communicate()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


def harp(*arguments: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harp.cli", *(str(a) for a in arguments)],
        capture_output=True,
        text=True,
        check=False,
    )


def a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


SYNTH_STEPS = [
    ("harp.store", "Store.create"),
    ("harp.store", "Store.write_tree"),
    ("harp.store", "Store.write_domains"),
    ("harp.store", "Store.add_measurements"),
    ("harp.store", "Store.write_effects"),
    ("harp.store", "Store.write_layout"),
    ("harp.store", "Store.finish_run"),
    ("harp.store.files", "publish"),
]


@pytest.mark.parametrize(("module", "step"), SYNTH_STEPS, ids=[step for _, step in SYNTH_STEPS])
def test_a_killed_synth_leaves_no_store_and_the_next_run_removes_its_temporaries(tmp_path, module, step):
    target = tmp_path / "s.duckdb"
    kill_while_paused(module, step, "synth", "--leaves", 300, "--domains", 4, "--out", target)
    assert not target.exists()
    left = leftovers(tmp_path)
    if step == "Store.create":  # killed before the temporary existed: nothing to clean
        assert left == []
        return
    assert left and all(name.lstrip(".").startswith("s.duckdb.synth-") for name in left), left

    done = harp("synth", "--leaves", 30, "--domains", 3, "--out", target)
    assert done.returncode == 0, done.stderr
    assert f"warning: removed {len(left)} temporary file(s)" in done.stderr
    assert left[0] in done.stderr
    assert leftovers(tmp_path) == []
    assert Store.open(target, read_only=True).summary()["n_leaves"] == 30


def test_a_killed_synth_over_a_store_leaves_the_old_store(tmp_path, tmp_store):
    before = tmp_store.read_bytes()
    kill_while_paused(
        "harp.store", "Store.write_effects", "synth", "--leaves", 50, "--out", tmp_store, "--force"
    )
    assert tmp_store.read_bytes() == before
    assert leftovers(tmp_path)
    done = harp("synth", "--leaves", 20, "--domains", 2, "--out", tmp_store, "--force")
    assert done.returncode == 0, done.stderr
    assert "removed" in done.stderr and leftovers(tmp_path) == []


IMPORT_STEPS = [
    ("harp.store.queries", "insert"),
    ("harp.store.connection", "schema_version"),
    ("harp.store.files", "publish"),
]


@pytest.mark.parametrize(("module", "step"), IMPORT_STEPS, ids=[step for _, step in IMPORT_STEPS])
def test_a_killed_import_leaves_the_old_store_and_the_next_run_removes_its_temporaries(
    tmp_path, tmp_store, module, step
):
    folder = tmp_path / "parquet"
    assert harp("-q", "export", tmp_store, folder).returncode == 0
    target = tmp_path / "copy.duckdb"
    Store.create(target)
    before = target.read_bytes()
    kill_while_paused(module, step, "import", folder, target, "--force")
    assert target.read_bytes() == before
    left = leftovers(tmp_path)
    assert left and all(name.startswith(".copy.duckdb.import-") for name in left), left

    done = harp("import", folder, target, "--force")
    assert done.returncode == 0, done.stderr
    assert "warning: removed" in done.stderr
    assert leftovers(tmp_path) == []
    assert Store.open(target, read_only=True).content_hash() == Store.open(tmp_store).content_hash()


def test_a_select_killed_before_publishing_leaves_the_old_csv(tmp_path, tmp_store):
    out = tmp_path / "chosen.csv"
    assert harp("-q", "select", "--store", tmp_store, "--envelope", "C", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in (out, tmp_path / "chosen.manifest.json")}
    kill_while_paused(
        "harp.store",
        "publish_staged",
        "select",
        "--store",
        tmp_store,
        "--envelope",
        "E",
        "--out",
        out,
    )
    assert {p.name: p.read_bytes() for p in (out, tmp_path / "chosen.manifest.json")} == before
    assert any(name.startswith(".chosen.csv.select-") for name in leftovers(tmp_path))

    done = harp("select", "--store", tmp_store, "--envelope", "E", "--out", out)
    assert done.returncode == 0, done.stderr
    assert "warning: removed" in done.stderr
    assert leftovers(tmp_path) == []
    assert json.loads((tmp_path / "chosen.manifest.json").read_text())["envelope"] == "HARP-E"


def test_a_select_killed_while_saving_leaves_the_store_and_the_old_files(tmp_path, tmp_store):
    out = tmp_path / "chosen.csv"
    assert harp("-q", "select", "--store", tmp_store, "--envelope", "C", "--out", out).returncode == 0
    before = {p.name: p.read_bytes() for p in (out, tmp_path / "chosen.manifest.json")}
    hash_before = Store.open(tmp_store, read_only=True).content_hash()
    kill_while_paused(
        "harp.store.queries",
        "insert",
        "select",
        "--store",
        tmp_store,
        "--envelope",
        "E",
        "--out",
        out,
        "--save-as",
        "e",
    )  # inside the transaction that saves the selection
    assert {p.name: p.read_bytes() for p in (out, tmp_path / "chosen.manifest.json")} == before
    saved = Store.open(tmp_store)
    assert saved.list_selections() == [] and saved.content_hash() == hash_before

    done = harp("select", "--store", tmp_store, "--envelope", "E", "--out", out, "--save-as", "e")
    assert done.returncode == 0, done.stderr
    assert "warning: removed" in done.stderr and leftovers(tmp_path) == []
    assert len(Store.open(tmp_store).load_selection("e")["points"]) == len(out.read_text().splitlines()) - 1


def test_only_temporaries_of_dead_writers_on_this_machine_are_removed(tmp_path):
    target = tmp_path / "s.duckdb"
    host = "".join(c for c in socket.gethostname() if c.isalnum())[:32] or "host"
    dead, alive = a_dead_pid(), os.getpid()
    names = {
        f".s.duckdb.synth-{dead}@{host}-0badc0de.tmp": False,
        f".s.duckdb.synth-{dead}@{host}-0badc0de.tmp.wal": False,
        f"..s.duckdb.synth-{dead}@{host}-0badc0de.tmp.create-{dead}@{host}-12345678.tmp": False,
        f".s.duckdb.load-{dead}-0badc0de.tmp": False,  # an older name without the machine
        f".s.duckdb.synth-{alive}@{host}-0badc0de.tmp": True,  # its writer still runs
        f".s.duckdb.synth-{dead}@someotherhost-0badc0de.tmp": True,  # written on another machine
        f".t.duckdb.synth-{dead}@{host}-0badc0de.tmp": True,  # beside another target
        ".s.duckdb.notes": True,  # not a temporary name at all
        "s.duckdb.wal": True,  # the store's own log: DuckDB replays it
    }
    for name in names:
        (tmp_path / name).write_bytes(b"x" * 1000)
    with pytest.warns(LeftoverFileWarning, match=r"removed 4 temporary file\(s\) \(0\.0 MB\)"):
        removed = remove_leftover_temporaries(target)
    assert sorted(p.name for p in removed) == sorted(n for n, kept in names.items() if not kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, kept in names.items() if kept)


def test_harp_q_removes_leftovers_silently(tmp_path):
    target = tmp_path / "s.duckdb"
    (tmp_path / f".s.duckdb.synth-{a_dead_pid()}-0badc0de.tmp").write_bytes(b"x")
    result = CliRunner().invoke(main, ["-q", "synth", "--leaves", 5, "--domains", 2, "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and leftovers(tmp_path) == []


def test_an_infer_killed_while_writing_effects_leaves_the_old_ones_and_a_rerun_gives_the_same_result(
    tmp_path, tmp_store
):
    uninterrupted = tmp_path / "uninterrupted.duckdb"
    uninterrupted.write_bytes(tmp_store.read_bytes())
    assert harp("-q", "infer", "--store", uninterrupted).returncode == 0
    hash_before = Store.open(tmp_store, read_only=True).content_hash()

    kill_while_paused(
        "harp.store.queries", "insert", "infer", "--store", tmp_store
    )  # inside the effects transaction
    assert Store.open(tmp_store).content_hash() == hash_before

    done = harp("-q", "infer", "--store", tmp_store)
    assert done.returncode == 0, done.stderr
    assert Store.open(tmp_store).content_hash() == Store.open(uninterrupted).content_hash() != hash_before
    assert leftovers(tmp_path) == []


def test_load_removes_what_a_killed_load_left_before_it_builds(tmp_path):
    import numpy as np

    from harp.load import load_arrays

    target = tmp_path / "loaded.duckdb"
    leftover = tmp_path / f".loaded.duckdb.load-{a_dead_pid()}@{socket.gethostname()}-0badc0de.tmp"
    leftover.write_bytes(b"x" * 1000)
    with pytest.warns(LeftoverFileWarning, match=r"removed 1 temporary file\(s\).*loaded\.duckdb\.load-"):
        load_arrays(
            target,
            phi=np.zeros((4, 2)),
            leaf_of_point=np.repeat(np.arange(4), 2),
            parent_of_leaf=np.array([0, 0, 1, 1]),
            base=np.array([0.4, 0.6]),
            domain_names=["a", "b"],
            layout_method="pca",
        )
    assert leftovers(tmp_path) == [] and Store.open(target).summary()["n_leaves"] == 4


def test_write_selection_stages_and_never_replaces_a_store_or_a_file_it_did_not_write(tmp_path, tmp_store):
    from harp.export import selection_manifest, write_selection
    from harp.select import select

    inputs = Store.open(tmp_store).selection_inputs()
    chosen = select(inputs.phi, inputs.base, envelope="C", members=inputs.members, budget=20)
    manifest = selection_manifest(
        chosen,
        envelope="C",
        weights=None,
        budget=20,
        store_hash=inputs.content_hash,
        domain_names=inputs.domain_names,
    )
    out = tmp_path / "run-c.csv"
    leftover = tmp_path / f".run-c.csv.export-{a_dead_pid()}@{socket.gethostname()}-0badc0de.tmp"
    leftover.write_text("half")
    with pytest.warns(LeftoverFileWarning):
        write_selection(out, chosen, manifest)
    first = out.read_bytes()
    write_selection(out, chosen, manifest)  # a CSV and manifest of ours are replaced
    assert out.read_bytes() == first and leftovers(tmp_path) == []
    store_copy = tmp_path / "store-c.csv"
    store_copy.write_bytes(tmp_store.read_bytes())
    with pytest.raises(ValueError, match=r"out: the CSV would replace .*store-c\.csv, a DuckDB database"):
        write_selection(store_copy, chosen, manifest)
    notes = tmp_path / "notes.csv"
    notes.write_text("my,own\n")
    with pytest.raises(ValueError, match=r"out: the CSV would replace .*notes\.csv, which was not written"):
        write_selection(notes, chosen, manifest)
    with pytest.raises(
        ValueError, match=r"out: the CSV would be written to .*, which is the store of this command"
    ):
        write_selection(out, chosen, manifest, inputs={"store": out})
    assert store_copy.read_bytes() == tmp_store.read_bytes() and notes.read_text() == "my,own\n"
    assert leftovers(tmp_path) == []


# -- harp measure on a tiny random model -------------------------------------------------------------------------

MEASURE_ORDER = [3, 1, 0, 2]  # the leaves, in the order the in-process worker measures them
# Where a measure run can die: training leaf k (nothing of it written yet), the k-th insert (the domains, then
# each leaf's measurements: inside the transaction that also writes the leaf's finished record), and the k-th
# store write of a leaf's measurements before its transaction. Four of them, drawn by a seeded generator so the
# suite is reproducible.
MEASURE_KILL_POINTS = sorted(
    random.Random(12).sample(
        [("harp.measure.worker", f"train_adapter@{k}") for k in range(1, 5)]
        + [("harp.store.queries", f"insert@{k}") for k in range(1, 6)]
        + [("harp.store", f"Store.add_measurements@{k}") for k in range(1, 5)],
        4,
    )
)


def _measure_inputs(folder: Path) -> tuple[Path, list[str]]:
    """A 4-leaf store without domains yet, a 24-example pool and the conftest eval set; the measure arguments."""
    import numpy as np
    from conftest import EVAL_RECORDS

    from harp.store import points_from_members

    folder.mkdir(parents=True, exist_ok=True)
    store = Store.create(folder / "store.duckdb")
    store.write_tree(points_from_members(np.array_split(np.arange(24), 4)), [0, 0, 1, 1], [0, 0], 1)
    pool = folder / "pool.jsonl"
    pool.write_text(
        "".join(
            json.dumps({"prompt": f"q{i % 7} {'abc'[i % 3]}?", "response": f"answer {i}", "id": i}) + "\n"
            for i in range(24)
        )  # fmt: skip
    )
    eval_path = folder / "eval.jsonl"
    eval_path.write_text("".join(json.dumps(record) + "\n" for record in EVAL_RECORDS))
    arguments = ["measure", "--store", str(store.path), "--pool", str(pool), "--eval", str(eval_path),
                 "--leaves", ",".join(map(str, MEASURE_ORDER)), "--steps", "2", "--batch-size", "4",
                 "--max-length", "48", "--lora-r", "4"]  # fmt: skip
    return store.path, arguments


def _measurement_values(path: Path) -> dict[tuple[int, int], tuple[float, float, int]]:
    rows = Store.open(path, read_only=True).read_table("measurements").to_pylist()
    values = {
        (row["leaf_id"], row["domain_id"]): (row["phi"], row["variance"], row["n_eval"]) for row in rows
    }
    assert len(values) == len(rows), "a leaf and domain measured twice under one config"
    return values


@pytest.fixture(scope="module")
def measured_without_faults(tiny_model, tmp_path_factory):
    """The measurements of an uninterrupted `harp measure` of the four leaves: what every killed run must reach."""
    path, arguments = _measure_inputs(tmp_path_factory.mktemp("uninterrupted"))
    done = harp("-q", *arguments, "--model", tiny_model)
    assert done.returncode == 0, done.stderr
    values = _measurement_values(path)
    assert {leaf for leaf, _ in values} == set(MEASURE_ORDER)
    return values


@pytest.mark.train
@pytest.mark.slow
@pytest.mark.parametrize(("module", "point"), MEASURE_KILL_POINTS, ids=[p for _, p in MEASURE_KILL_POINTS])
def test_a_killed_measure_keeps_whole_leaves_and_a_rerun_measures_only_the_rest(
    tmp_path, tiny_model, measured_without_faults, module, point
):
    path, arguments = _measure_inputs(tmp_path / "run")
    kill_while_paused(module, point, *arguments, "--model", tiny_model)

    # Old or new, leaf by leaf: the leaves in the store are a prefix of the order, each with every domain it had
    # uninterrupted and the same values; the killed run's record says it never finished.
    after_kill = _measurement_values(path)
    kept = sorted({leaf for leaf, _ in after_kill}, key=MEASURE_ORDER.index)
    assert kept == MEASURE_ORDER[: len(kept)] and len(kept) < len(MEASURE_ORDER)
    assert after_kill == {key: v for key, v in measured_without_faults.items() if key[0] in kept}
    runs = Store.open(path, read_only=True).runs()
    [killed] = [run for run in runs if run["kind"] == "measure"]
    assert killed["status"] == "running"
    # a leaf's record lands with its measurements: done for exactly the kept leaves, none left running
    leaf_runs = {run["config"]["leaf_id"]: run["status"] for run in runs if run["kind"] == "measure-leaf"}
    assert leaf_runs == {leaf: "done" for leaf in kept}
    assert leftovers(tmp_path / "run") == []

    rerun = harp("-q", *arguments, "--model", tiny_model)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert sorted(report["skipped"]) == sorted(kept)  # nothing repeated ...
    assert report["measured"] == [g for g in MEASURE_ORDER if g not in kept]  # ... or lost
    assert _measurement_values(path) == measured_without_faults
    rows = Store.open(path, read_only=True).read_table("measurements").to_pylist()
    assert {row["run_id"] for row in rows if row["leaf_id"] in kept} <= {killed["run_id"]}
    assert {row["run_id"] for row in rows if row["leaf_id"] not in kept} == {report["run_id"]}
    assert leftovers(tmp_path / "run") == []

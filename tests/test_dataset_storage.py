"""Datasets over named storage: a local storage used in place, an HPC path on the
loopback test cluster used in place for work there and fetched over SFTP for work
here."""
from __future__ import annotations

import shlex
import uuid
from pathlib import Path

import pytest

from cybershuttle import compute, dataset, storage


@pytest.fixture(autouse=True)
def unseal_cache(cs_home):
    yield
    from cybershuttle.dataset import cache

    for entry in (cs_home / "users").glob("*/cache/datasets/*"):
        cache.unseal(entry)


def cache_entries(cs_home: Path) -> list[str]:
    return sorted(p.name for p in (cs_home / "users").glob("*/cache/datasets/*")
                  if p.name not in ("downloads", "refs", "sources"))


def test_local_storage_is_used_in_place(cli, cs_home, tmp_path):
    lab = tmp_path / "lab"
    (lab / "tables").mkdir(parents=True)
    (lab / "tables" / "t.csv").write_text("a,b\n1,2\n")
    storage.register("lab", str(lab))
    r = cli("dataset", "register", "--name", "table", "--location", "lab:/tables/t.csv")
    assert r.code == 0, r.err
    assert dataset.where("table")[0]["tier"] == 0
    assert Path(dataset.load("table")).resolve() == (lab / "tables" / "t.csv").resolve()
    assert cache_entries(cs_home) == []


@pytest.fixture
def hpc_dir(registered, cluster):
    """A directory in the test user's home on the cluster, with a folder and a .tar.gz."""
    shell = compute.get("testcluster").shell()
    home = shell.run("echo $HOME").stdout.strip()
    remote = f"{home}/cs-dataset-{uuid.uuid4().hex[:8]}"
    q = shlex.quote(remote)
    shell.run(f"mkdir -p {q}/imgs && printf x > {q}/imgs/a.txt && printf yy > {q}/imgs/b.txt "
              f"&& tar -czf {q}/imgs.tar.gz -C {q} imgs")
    yield remote
    shell.run(f"rm -rf {q}", check=False)


def test_hpc_path_in_place_on_the_cluster_fetched_over_sftp_here(cs_home, hpc_dir):
    storage.register("hpc", hpc_dir, resource="testcluster")
    dataset.register("imgs", "hpc:/imgs")

    # Work on the cluster (a job on one of its nodes): the cluster's copy is used in place, nothing
    # is fetched; on a workstation reached through the same server it is that very host.
    assert dataset.where("imgs", "testcluster")[0]["tier"] == 1
    assert dataset.where("imgs", "workstation")[0]["tier"] == 0
    assert dataset.load("imgs", resource="testcluster").rstrip("/") == f"{hpc_dir}/imgs"
    assert cache_entries(cs_home) == []

    # Work here: the folder comes over SFTP into the read-only cache, once.
    assert dataset.where("imgs")[0]["tier"] == 2
    here = Path(dataset.load("imgs"))
    assert (here / "a.txt").read_text() == "x" and (here / "b.txt").read_text() == "yy"
    with pytest.raises(PermissionError):
        (here / "a.txt").write_text("changed")
    assert dataset.load("imgs") == str(here)

    # A file with an after-download command: fetched, unpacked here.
    dataset.register("archive", "hpc:/imgs.tar.gz", after_download_command="tar -xz")
    unpacked = Path(dataset.load("archive"))
    assert (unpacked / "imgs" / "b.txt").read_text() == "yy"
    assert dataset.get("archive").checksums["hpc:/imgs.tar.gz"]["size"] > 0


def test_storage_download_resumes_from_the_partial_file(cs_home, hpc_dir):
    """A copy cut short leaves `.partial`; the next load reads only the rest (seeks the remote file)."""
    from cybershuttle.dataset import cache

    shell = compute.get("testcluster").shell()
    shell.run(f"head -c 3145728 /dev/urandom > {shlex.quote(hpc_dir)}/big.bin")
    storage.register("hpc", hpc_dir, resource="testcluster")
    with storage.open("hpc:/big.bin") as f:
        whole = f.read()
    dataset.register("big", "hpc:/big.bin")
    cache.partial_path("hpc:/big.bin").write_bytes(whole[: len(whole) // 2])  # what the cut-short copy left

    seen: list[int] = []
    loaded = Path(dataset.load("big", progress=lambda done, total: seen.append(done)))
    assert loaded.read_bytes() == whole
    assert seen[0] > len(whole) // 2  # the first bytes counted are beyond the half that was there
    assert not cache.partial_path("hpc:/big.bin").exists()

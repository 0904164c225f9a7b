"""cybershuttle.yml parsing: real files from the wild parse unchanged; mistakes are clear errors.

The files under tests/data/ are byte-for-byte copies of setup files scientists wrote for the
earlier platform (see the `# source:` line at the top of each).
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from cybershuttle.errors import CybershuttleError, SetupFileError
from cybershuttle.setupfile import Mount, Resources, SetupFile, load, parse

DATA = Path(__file__).parent / "data"
SETUPS = DATA / "cybershuttle_yml"
NOTEBOOK_SETUPS = DATA / "notebooks"
REAL_FILES = sorted(SETUPS.glob("*.yml")) + sorted(NOTEBOOK_SETUPS.glob("*.yml"))

NEURODATA = SETUPS / "01_cyber-shuttle__NeuroDATA_2025.yml"
ALLEN_V1 = SETUPS / "04_cyber-shuttle__allen-v1.yml"
CEREBRUM = SETUPS / "06_srirampc__airavata-cerebrum.yml"
HMMGLM = SETUPS / "08_JerrySoybean__onehot-hmmglm.yml"
ABAQUS = SETUPS / "10_benjamin0303__Abaqus_workflow_Cybershuttle.yml"
VIZFOLD = SETUPS / "12_vizfold__vizfold-foundation.yml"
REFERENCE = SETUPS / "14_cyber-shuttle__cybershuttle-reference.yml"
PINN = SETUPS / "16_benjamin0303__DEM_Elastic_2D_PINN.yml"
AMBER = NOTEBOOK_SETUPS / "cyber-shuttle__Amber_demo__cybershuttle.yml"
REFERENCE_NB = NOTEBOOK_SETUPS / "cyber-shuttle__cybershuttle-reference__cybershuttle.yml"
GKEYLL = NOTEBOOK_SETUPS / "cyber-shuttle__gkeyll__cybershuttle.yml"

CEREBRUM_DATA = "~/cybershuttle/airavata-cerebrum/resources/notebooks/"


def write(tmp_path: Path, text: str, name: str = "cybershuttle.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(text: str, tmp_path: Path) -> tuple[str, str]:
    """Load ``text`` from a file and return (file name, the SetupFileError message)."""
    path = write(tmp_path, text)
    with pytest.raises(SetupFileError) as info:
        load(path)
    return str(path), str(info.value)


# --- real files ------------------------------------------------------------------------------


def test_all_eleven_real_setup_files_are_present():
    assert len(REAL_FILES) == 11


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_every_real_file_parses_to_json_with_the_documented_keys(path):
    setup = load(path)
    as_json = json.loads(json.dumps(setup.to_dict()))
    assert list(as_json) == [
        "file", "layout", "project", "resources", "mounts", "modules", "conda", "pip",
        "channels", "location", "unknown", "warnings",
    ]
    assert as_json["file"] == str(path)
    assert as_json["unknown"] == {}
    assert setup.summary_lines()[0].startswith(f"{path}: ")


def test_current_layout_with_unindented_list_items_and_blank_space_line():
    text = NEURODATA.read_text()
    assert "\n  \n" in text  # the whitespace-only line this file is known for
    setup = load(NEURODATA)
    assert setup.layout == "current"
    assert setup.project == {
        "name": "Computing with Neural Oscillators",
        "description": "A speech demo that uses Neural Oscillators",
        "homepage": "https://github.com/nandchandravadia/NeuroDATA_2025",
        "authors": ["nimam6@gatech.edu", "nchandravadia3@gatech.edu"],
        "tags": ["neurodata25", "imamlab", "neural-oscillators"],
        "version": None,
        "privacy": None,
    }
    assert setup.resources == Resources(min_cpu=4, min_mem_mb=4096, min_gpu=0, gpu_mem_mb=0)
    assert setup.mounts == []
    assert setup.modules == []
    assert setup.conda == [
        "python=3.10", "pip", "numpy", "pandas", "matplotlib", "seaborn", "tqdm", "scipy",
        "scikit-learn", "pyyaml",
    ]
    assert setup.pip == ["torch", "torchaudio", "soundfile"]
    assert setup.location is None
    assert setup.warnings == []


def test_legacy_allen_v1_sizes_data_sources_and_nested_pip():
    setup = load(ALLEN_V1)
    assert setup.layout == "legacy"
    assert setup.project["version"] == "1.0.0"
    assert setup.project["description"].endswith('inputs."')  # stray quote kept verbatim
    assert setup.project["authors"] == []
    assert setup.resources == Resources(
        min_cpu=16, min_mem_mb=16384, min_gpu=0, gpu_mem_mb=0, min_disk_mb=32768,
    )
    assert setup.location == "/workspace"
    assert setup.mounts == [
        Mount(kind="data", source="cybershuttle", identifier="<SUBSTITUTE_CORRECT_ID>",
              mount_point="/workspace/data"),
    ]
    assert setup.modules == []
    assert setup.conda == [
        "python=3.10", "pip", "ipywidgets", "numba", "numpy=1.23.5", "matplotlib", "openpyxl",
        "pandas", "pyqtgraph", "pyyaml", "requests", "scipy", "sqlalchemy", "tqdm",
        "nest-simulator", "ipytree", "python-jsonpath", "pydantic=2.7", "anndata", "parse",
    ]
    assert setup.pip == [
        "allensdk", "bmtk", "pytree",
        "git+https://github.com/alleninstitute/abc_atlas_access",
        "git+https://github.com/alleninstitute/neuroanalysis",
        "git+https://github.com/alleninstitute/aisynphys",
        "git+https://github.com/lahirujayathilake/mousev1",
    ]
    # The placeholder is the only warning: version is informational and must not warn.
    assert setup.warnings == [
        "workspace.data_sources[0].identifier '<SUBSTITUTE_CORRECT_ID>' looks like a "
        "template placeholder; replace it with the collection's real identifier"
    ]


def test_cerebrum_scheduler_keys_and_four_collections_with_trailing_slashes():
    setup = load(CEREBRUM)
    assert setup.layout == "current"
    assert setup.project["version"] == "0.1.2"
    assert setup.resources == Resources(
        min_cpu=4, min_mem_mb=4096, min_gpu=0, gpu_mem_mb=1024, min_disk_mb=None,
        gpu_class=["H100", "A100", "Generic"], walltime_min=60, cluster="expanse",
        group="Default", queue="shared",
    )
    # File order; identifiers verbatim ("~/" and trailing "/"), mount points without the "/".
    assert setup.mounts == [
        Mount("data", "cybershuttle", CEREBRUM_DATA + "v1/", "/data/v1"),
        Mount("data", "cybershuttle", CEREBRUM_DATA + "v1l4/", "/data/v1l4"),
        Mount("model", "cybershuttle", CEREBRUM_DATA, "/data"),
        Mount("model", "cybershuttle", CEREBRUM_DATA + "mousev1/", "/data/mousev1"),
    ]
    assert setup.modules == []
    assert setup.conda == ["python=3.10", "pip", "nest-simulator", "mpi4py", "nodejs"]
    assert setup.pip == ["git+https://github.com/srirampc/airavata-cerebrum"]
    assert setup.location == "/workspace"
    assert setup.warnings == []


def test_null_model_collection_means_no_model_mounts_and_file_without_final_newline():
    assert not HMMGLM.read_bytes().endswith(b"\n")
    setup = load(HMMGLM)
    assert [m.kind for m in setup.mounts] == ["data"]
    assert setup.mounts == [
        Mount("data", "cybershuttle", "brainml-onehot-hmmglm",
              "/cybershuttle_data/brainml-onehot-hmmglm"),
    ]
    assert setup.resources == Resources(min_cpu=4, min_mem_mb=4096, min_gpu=0, gpu_mem_mb=0)
    assert setup.conda == ["python=3.10", "pip", "ipywidgets"]
    assert setup.pip == ["git+https://github.com/cyber-shuttle/onehot-hmmglm#subdirectory=hmmglm"]
    assert setup.warnings == []


def test_abaqus_privacy_on_next_line_and_odd_homepage_is_kept_with_a_warning():
    raw = ABAQUS.read_text()
    assert "\n \n" in raw and raw.endswith("pip: []  ")
    setup = load(ABAQUS)
    assert setup.project["privacy"] == "PUBLIC"
    assert setup.project["homepage"] == (
        "hhttps://github.com/benjamin0303/Abaqus_workflow_Cybershuttle"
    )
    assert setup.project["tags"] == ["Abaqus_workflow", "3D_Lug"]
    assert setup.resources == Resources(min_cpu=16, min_mem_mb=32000, min_gpu=1, gpu_mem_mb=1024)
    assert setup.mounts == []
    assert setup.conda == [
        "python=3.10", "pip", "make", "cmake", "compilers", "openmpi", "wget", "numpy",
    ]
    assert setup.pip == []
    assert setup.warnings == [
        "project.homepage 'hhttps://github.com/benjamin0303/Abaqus_workflow_Cybershuttle' "
        "does not start with http:// or https://"
    ]


def test_vizfold_conda_specs_with_channel_prefixes_are_kept_verbatim():
    setup = load(VIZFOLD)
    assert setup.conda == [
        "cuda", "gcc=12.4", "python=3.10", "setuptools=59.5.0", "pip", "openmm", "pdbfixer",
        "pytorch-lightning", "biopython", "numpy", "pandas", "PyYAML", "requests", "scipy",
        "tqdm", "typing-extensions", "wandb", "modelcif==0.7", "awscli", "ml-collections",
        "aria2", "mkl", "git", "bioconda::hmmer", "bioconda::hhsuite", "bioconda::kalign2",
        "pytorch::pytorch=2.5", "pytorch::pytorch-cuda=12.4", "pymol-open-source",
        "deepspeed=0.14.5", "dm-tree=0.1.6", "cutlass=3.6.0", "wget", "matplotlib",
    ]
    assert setup.pip == ["git+https://github.com/NVIDIA/dllogger.git"]
    assert setup.resources == Resources(min_cpu=4, min_mem_mb=16384, min_gpu=0, gpu_mem_mb=1024)
    assert setup.location == "/workspace"
    assert setup.project["tags"] == ["CISSE25"]


def test_reference_project_serialises_to_the_exact_json_shape():
    setup = load(REFERENCE)
    assert setup.to_dict() == {
        "file": str(REFERENCE),
        "layout": "current",
        "project": {
            "name": "Getting started with Cybershuttle",
            "description": "Run a simulation and understand the minimum macros required to "
                           "run Cybershuttle",
            "homepage": "https://github.com/cyber-shuttle/cybershuttle-reference",
            "authors": ["smarru@gatech.edu"],
            "tags": ["cybershuttle", "apache-airavata", "reference"],
            "version": None,
            "privacy": None,
        },
        "resources": {
            "min_cpu": 4, "min_mem_mb": 4096, "min_gpu": 0, "gpu_mem_mb": 0,
            "min_disk_mb": None, "gpu_class": [], "walltime_min": None, "cluster": None,
            "group": None, "queue": None,
        },
        "mounts": [{
            "kind": "model", "source": "cybershuttle", "identifier": "cybershuttle-reference",
            "mount_point": "/cybershuttle_data/cybershuttle-reference",
        }],
        "modules": [],
        "conda": [],
        "pip": [],
        "channels": [],
        "location": None,
        "unknown": {},
        "warnings": [],
    }


def test_reference_summary_matches_what_the_old_platform_printed_for_it():
    # demo_paraview.ipynb's saved output for this file:
    #   [AnvilCPU:shared, 60 Minutes, 1 Node(s), 4 CPU(s), 0 GPU(s), 4096 MB RAM, 0 MB VRAM]
    #   * mounts=['cybershuttle-reference:/cybershuttle_data/cybershuttle-reference']
    assert load(REFERENCE_NB).summary_lines()[1:] == [
        "resources (minimum): 4 CPU(s), 0 GPU(s), 4096 MB RAM, 0 MB VRAM",
        "mounts (1):",
        "  - model: cybershuttle-reference -> /cybershuttle_data/cybershuttle-reference "
        "(from cybershuttle)",
        "modules: none",
        "conda: none",
        "pip: none",
        "warnings: none",
    ]


def test_pinn_lists_an_lmod_module_and_asks_for_one_gpu():
    setup = load(PINN)
    assert setup.modules == ["anaconda3_gpu/22.10.0"]
    assert setup.resources == Resources(min_cpu=16, min_mem_mb=4000, min_gpu=1, gpu_mem_mb=1024)
    assert setup.conda[-3:] == ["numpy", "matplotlib", "pandas"] and len(setup.conda) == 10
    assert setup.pip == []
    assert setup.warnings == []


def test_notebook_setup_files_parse_with_their_values():
    amber = load(AMBER)
    assert amber.resources == Resources(min_cpu=4, min_mem_mb=4096, min_gpu=0, gpu_mem_mb=1024)
    assert amber.conda == ["python=3.10", "pip", "numpy", "tqdm", "rich"]
    assert amber.pip == [] and amber.mounts == []

    gkeyll = load(GKEYLL)
    assert gkeyll.resources == Resources(min_cpu=1, min_mem_mb=4096, min_gpu=0, gpu_mem_mb=0)
    assert gkeyll.conda == ["python=3.11", "pip"]
    assert gkeyll.pip == ["postgkyl", "matplotlib", "numpy"]
    assert gkeyll.project["tags"] == [
        "Gkeyll", "gkyl", "Plasma Science Virtual Laboratory (VLab)", "space weather",
        "plasma physics",
    ]

    reference = load(REFERENCE_NB).to_dict()
    assert {**reference, "file": None} == {**load(REFERENCE).to_dict(), "file": None}


def test_cerebrum_summary_shows_scheduler_hints_and_gpu_classes():
    lines = load(CEREBRUM).summary_lines()
    assert lines[1] == (
        "resources (minimum): 4 CPU(s), 0 GPU(s), 4096 MB RAM, 1024 MB VRAM, "
        "GPU class H100/A100/Generic"
    )
    assert lines[2] == "scheduler: cluster expanse, queue shared, group Default, 60 minutes"
    assert lines[3] == "location: /workspace"
    assert lines[4] == "mounts (4):"


# --- layouts and normalisation ---------------------------------------------------------------


def test_legacy_environment_dependencies_split_into_conda_and_pip():
    setup = parse(
        "environment:\n"
        "  dependencies:\n"
        "    - python=3.11\n"
        "    - bioconda::samtools==1.19\n"
        "    - pip:\n"
        "        - requests\n"
        "        - git+https://example.org/x.git#subdirectory=py\n"
        "    - pip\n"
    )
    assert setup.layout == "legacy"
    assert setup.conda == ["python=3.11", "bioconda::samtools==1.19", "pip"]
    assert setup.pip == ["requests", "git+https://example.org/x.git#subdirectory=py"]
    assert setup.modules == []


def test_data_sources_type_is_read_as_source_and_makes_the_layout_legacy():
    setup = parse(
        "workspace:\n"
        "  data_sources:\n"
        "    - type: s3\n"
        "      identifier: bucket/x\n"
        "      mount_point: /workspace/x/\n"
    )
    assert setup.layout == "legacy"
    assert setup.mounts == [Mount("data", "s3", "bucket/x", "/workspace/x")]


def test_input_collection_items_become_input_mounts_with_default_source():
    setup = parse(
        "workspace:\n"
        "  input_collection:\n"
        "    - identifier: run-inputs\n"
        "      mount_point: /inputs\n"
    )
    assert setup.mounts == [Mount("input", "cybershuttle", "run-inputs", "/inputs")]


@pytest.mark.parametrize(
    ("written", "mb"),
    [
        ("4096", 4096), ("'2048'", 2048), ("16G", 16384), ("16GB", 16384), ("16 GiB", 16384),
        ("16g", 16384), ("512M", 512), ("512MB", 512), ("1T", 1048576), ("1.5G", 1536),
        ("512K", 1), ("0", 0),
    ],
)
def test_sizes_are_converted_to_megabytes(written, mb):
    setup = parse(f"workspace:\n  resources:\n    min_mem: {written}\n    gpu_mem: {written}\n")
    assert setup.resources.min_mem_mb == mb
    assert setup.resources.gpu_mem_mb == mb


def test_missing_resources_give_one_cpu_and_no_other_minimums():
    setup = parse("project:\n  name: bare\n")
    assert setup.resources == Resources(
        min_cpu=1, min_mem_mb=0, min_gpu=0, gpu_mem_mb=0, min_disk_mb=None, gpu_class=[],
        walltime_min=None, cluster=None, group=None, queue=None,
    )
    assert setup.mounts == [] and setup.conda == [] and setup.pip == [] and setup.modules == []


def test_counts_written_as_quoted_digits_are_accepted():
    setup = parse("workspace:\n  resources:\n    min_cpu: '8'\n    walltime: '90'\n")
    assert setup.resources.min_cpu == 8
    assert setup.resources.walltime_min == 90


def test_integer_tags_become_strings():
    assert parse("project:\n  tags: [2025, hpc]\n").project["tags"] == ["2025", "hpc"]


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_keys_anywhere_are_kept_by_dotted_path_and_warned():
    setup = parse(
        "project:\n"
        "  name: x\n"
        "  license: MIT\n"
        "workspace:\n"
        "  resources:\n"
        "    min_cpu: 2\n"
        "    partition: gpu\n"
        "  data_collection:\n"
        "    - identifier: d\n"
        "      mount_point: /d\n"
        "      readonly: true\n"
        "  scratch: /tmp\n"
        "additional_dependencies:\n"
        "  apt: [curl]\n"
        "jupyter:\n"
        "  kernel: python3\n"
        "  started: 2024-05-01\n"
    )
    assert setup.unknown == {
        "project.license": "MIT",
        "workspace.resources.partition": "gpu",
        "workspace.data_collection[0].readonly": True,
        "workspace.scratch": "/tmp",
        "additional_dependencies.apt": ["curl"],
        "jupyter": {"kernel": "python3", "started": datetime.date(2024, 5, 1)},
    }
    assert setup.warnings == [
        "project.license: unknown key, kept but not used",
        "workspace.resources.partition: unknown key, kept but not used",
        "workspace.data_collection[0].readonly: unknown key, kept but not used",
        "workspace.scratch: unknown key, kept but not used",
        "additional_dependencies.apt: unknown key, kept but not used",
        "jupyter: unknown key, kept but not used",
    ]
    # Known values still come through, and the raw date survives --json as ISO text.
    assert setup.resources.min_cpu == 2
    assert setup.mounts == [Mount("data", "cybershuttle", "d", "/d")]
    dumped = json.loads(json.dumps(setup.to_dict()))
    assert dumped["unknown"]["jupyter"] == {"kernel": "python3", "started": "2024-05-01"}
    assert setup.summary_lines()[-7:] == ["warnings (6):"] + [f"  - {w}" for w in setup.warnings]


def test_unknown_keys_in_legacy_environment_are_kept():
    setup = parse(
        "environment:\n"
        "  channels: [conda-forge]\n"
        "  dependencies:\n"
        "    - numpy\n"
        "    - {pip: [rich], npm: [left-pad]}\n"
    )
    assert setup.conda == ["numpy"] and setup.pip == ["rich"]
    # channels are read since conda environments are built (issue 17); npm is still unknown.
    assert setup.channels == ["conda-forge"]
    assert setup.unknown == {
        "environment.dependencies[1].npm": ["left-pad"],
    }


def test_informational_project_keys_do_not_warn():
    setup = parse("project:\n  name: x\n  version: '1.10'\n  privacy: PRIVATE\n")
    assert setup.warnings == []
    assert setup.project["version"] == "1.10" and setup.project["privacy"] == "PRIVATE"


def test_a_key_given_twice_warns_with_its_line():
    setup = parse(
        "additional_dependencies:\n"
        "  pip: [a]\n"
        "  pip: [b]\n"
    )
    assert setup.pip == ["b"]
    assert setup.warnings == [
        "line 3: key 'pip' is given twice in the same mapping; only the later value is used"
    ]


def test_two_collections_at_one_mount_point_warn():
    setup = parse(
        "workspace:\n"
        "  data_collection: [{identifier: a, mount_point: /data/}]\n"
        "  model_collection: [{identifier: b, mount_point: /data}]\n"
    )
    assert setup.warnings == ["mount point /data is used by more than one collection"]


def test_placeholder_identifier_warns_in_current_layout_too():
    setup = parse(
        "workspace:\n  model_collection:\n"
        "    - {identifier: <YOUR_MODEL>, mount_point: /m}\n"
    )
    assert setup.warnings == [
        "workspace.model_collection[0].identifier '<YOUR_MODEL>' looks like a template "
        "placeholder; replace it with the collection's real identifier"
    ]


# --- errors ----------------------------------------------------------------------------------


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    name, message = error_of("project:\n  name: x\n workspace: [\n", tmp_path)
    assert message.startswith(f"{name}: line 3, column 2: not valid YAML (")
    assert message.endswith(
        "fix the file near that line (check the indentation and that each ':' is followed "
        "by a space)"
    )
    assert "\n" not in message


def test_tab_indentation_is_reported_with_its_line(tmp_path):
    name, message = error_of("project:\n\tname: x\n", tmp_path)
    assert message.startswith(f"{name}: line 2, column 1: not valid YAML (")


def test_parse_without_a_path_names_the_string():
    with pytest.raises(SetupFileError) as info:
        parse("project: [a\n")
    # PyYAML notices the unclosed "[" at the end of the text; the message also says where it began.
    assert str(info.value).startswith(
        "<string>: line 2, column 1: not valid YAML (while parsing a flow sequence that starts "
        "at line 1, column 10, expected ',' or ']', but got '<stream end>')"
    )


def test_wrong_count_type_names_key_path_and_expected_type(tmp_path):
    name, message = error_of("workspace:\n  resources:\n    min_cpu: four\n", tmp_path)
    assert message == f"{name}: workspace.resources.min_cpu must be an integer, got 'four'"


def test_pip_given_as_a_single_string_is_an_error_with_the_fix(tmp_path):
    name, message = error_of("additional_dependencies:\n  pip: numpy\n", tmp_path)
    assert message == (
        f"{name}: additional_dependencies.pip must be a list of strings, got 'numpy' "
        "(write [numpy] or one '- numpy' line per entry)"
    )


def test_gpu_class_given_as_a_single_string_is_an_error(tmp_path):
    name, message = error_of("workspace:\n  resources:\n    gpu_class: H100\n", tmp_path)
    assert message.startswith(
        f"{name}: workspace.resources.gpu_class must be a list of strings, got 'H100'"
    )


def test_project_that_is_a_list_is_an_error(tmp_path):
    name, message = error_of("project: [1]\n", tmp_path)
    assert message == f"{name}: project must be a mapping (key: value lines), got a list"


@pytest.mark.parametrize("written", ["16 gigs", "16GBs", "-4", "2048B", "1.5", "true", "[16G]"])
def test_bad_size_names_the_key_path_and_the_expected_form(tmp_path, written):
    name, message = error_of(f"workspace:\n  resources:\n    min_mem: {written}\n", tmp_path)
    assert message.startswith(
        f"{name}: workspace.resources.min_mem must be a size such as 4096 (MB), '512M', "
        "'16G' or '1T', got "
    )


def test_boolean_gpu_count_is_refused(tmp_path):
    name, message = error_of("workspace:\n  resources:\n    min_gpu: yes\n", tmp_path)
    assert message == f"{name}: workspace.resources.min_gpu must be an integer, got true"


def test_negative_gpu_count_and_zero_cpus_are_refused(tmp_path):
    name, message = error_of(
        "workspace:\n  resources:\n    min_cpu: 0\n    min_gpu: -1\n", tmp_path
    )
    assert message == (
        f"{name}: 2 problems: workspace.resources.min_cpu must be 1 or more, got 0; "
        "workspace.resources.min_gpu must be 0 or more, got -1"
    )


def test_walltime_must_be_minutes(tmp_path):
    name, message = error_of("workspace:\n  resources:\n    walltime: '1:00:00'\n", tmp_path)
    assert message == (
        f"{name}: workspace.resources.walltime must be a whole number of minutes "
        "(1 or more), got '1:00:00'"
    )


def test_unquoted_float_version_must_be_quoted(tmp_path):
    name, message = error_of("project:\n  version: 1.10\n", tmp_path)
    assert message == f"{name}: project.version must be a string, got 1.1 (put it in quotes)"


def test_every_problem_in_a_file_is_reported_at_once(tmp_path):
    name, message = error_of(
        "project: [1]\n"
        "workspace:\n"
        "  resources: {min_cpu: four, min_mem: lots}\n"
        "  data_collection: [{source: cybershuttle}]\n"
        "additional_dependencies:\n"
        "  conda: [numpy, null, {x: 1}]\n",
        tmp_path,
    )
    assert message == (
        f"{name}: 7 problems: project must be a mapping (key: value lines), got a list; "
        "workspace.resources.min_cpu must be an integer, got 'four'; "
        "workspace.resources.min_mem must be a size such as 4096 (MB), '512M', '16G' or "
        "'1T', got 'lots'; "
        "workspace.data_collection[0].identifier is required (a non-empty string); "
        "workspace.data_collection[0].mount_point is required (a non-empty string); "
        "additional_dependencies.conda[1] must be a string, got nothing; "
        "additional_dependencies.conda[2] must be a string, got a mapping"
    )


def test_collection_that_is_not_a_list_is_an_error(tmp_path):
    name, message = error_of("workspace:\n  data_collection: my-dataset\n", tmp_path)
    assert message == (
        f"{name}: workspace.data_collection must be a list of {{source, identifier, "
        "mount_point} items, got 'my-dataset'"
    )


def test_both_dependency_layouts_at_once_is_an_error(tmp_path):
    name, message = error_of(
        "environment:\n  dependencies: [numpy]\nadditional_dependencies:\n  pip: [rich]\n",
        tmp_path,
    )
    assert message.startswith(
        f"{name}: additional_dependencies and environment are both given; keep one"
    )


def test_missing_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "nope" / "cybershuttle.yml"
    with pytest.raises(SetupFileError) as info:
        load(path)
    assert str(info.value).startswith(f"{path}: no such file; check the path")
    assert isinstance(info.value, CybershuttleError) and info.value.exit_code == 1


def test_directory_instead_of_file_is_an_error(tmp_path):
    with pytest.raises(SetupFileError, match="is a directory; give the path of the"):
        load(tmp_path)


def test_non_utf8_file_is_an_error(tmp_path):
    path = tmp_path / "cybershuttle.yml"
    path.write_bytes(b"project:\n  name: caf\xe9\n")
    with pytest.raises(SetupFileError) as info:
        load(path)
    assert str(info.value) == (
        f"{path}: line 2 is not UTF-8 text (byte 0xe9); save the file as UTF-8"
    )


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "cybershuttle.yml"
    path.write_bytes(b"\xef\xbb\xbfproject:\n  name: x\n")
    assert load(path).project["name"] == "x"


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_empty_file_is_an_error(tmp_path, text):
    name, message = error_of(text, tmp_path)
    assert message == (
        f"{name}: the file is empty; add at least a project: and a workspace: section"
    )


@pytest.mark.parametrize(("text", "got"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'")])
def test_top_level_that_is_not_a_mapping_is_an_error(tmp_path, text, got):
    name, message = error_of(text, tmp_path)
    assert message == (
        f"{name}: the top level must be a mapping with sections such as project: and "
        f"workspace:, got {got}"
    )


def test_a_conda_environment_file_passed_by_mistake_is_an_error(tmp_path):
    name, message = error_of("name: env\nchannels: [conda-forge]\ndependencies: [numpy]\n",
                             tmp_path)
    assert message == (
        f"{name}: none of the sections project:, workspace:, additional_dependencies: or "
        "environment: is present; is this a cybershuttle.yml?"
    )


def test_setup_file_is_frozen():
    setup = load(REFERENCE)
    assert isinstance(setup, SetupFile)
    with pytest.raises(AttributeError):
        setup.layout = "legacy"  # type: ignore[misc]


def test_conda_channels_are_read_from_either_layout_in_priority_order():
    legacy = parse("environment:\n  channels: [kaeldai, conda-forge]\n  dependencies:\n    - kaeldai::bmtk\n"
                   "    - pip:\n        - six\n", "legacy.yml")
    assert (legacy.channels, legacy.conda, legacy.pip) == (["kaeldai", "conda-forge"], ["kaeldai::bmtk"], ["six"])
    assert legacy.warnings == []
    current = parse("additional_dependencies:\n  channels:\n  - bioconda\n  conda:\n  - hmmer\n", "current.yml")
    assert current.channels == ["bioconda"] and current.conda == ["hmmer"]
    assert "channels: bioconda" in current.summary_lines()

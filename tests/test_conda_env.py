"""`--sdm conda`: the environment file holds no path (Snakemake copies it elsewhere) and its
post-deploy script installs prunebench from the checkout the Snakefile runs from.

conda is not installed on the test machine: these tests check what Snakemake 9 does with the files
(snakemake/deployment/conda.py copies the env file to .snakemake/conda/<hash>.yaml, then runs the
post-deploy script in the new environment with the Snakemake process's environment variables).
"""

import os
import re
import subprocess
import sys

import pytest
import yaml

from tests.conftest import REPO

ENV = REPO / "envs" / "prunebench.yaml"
DEPLOY = REPO / "envs" / "prunebench.post-deploy.sh"


def requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~ ]", spec, maxsplit=1)[0].lower()


def test_the_env_file_holds_every_dependency_and_no_path():
    env = yaml.safe_load(ENV.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    plain = [d for d in env["dependencies"] if isinstance(d, str)]
    assert not [line for line in pip if line.startswith(("-e", "--editable", ".", "/")) or ".." in line]
    names = {requirement_name(d) for d in plain + pip}
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {requirement_name(d) for d in project} - {"snakemake"} <= names  # snakemake runs the jobs


def test_the_post_deploy_script_installs_the_checkout_named_by_the_snakefile(tmp_path):
    # Snakemake looks for it beside the env file, by this name
    assert DEPLOY.with_name(ENV.stem + ".post-deploy.sh") == DEPLOY
    # the Snakefile exports its folder while Snakemake parses it (and creates the environments)
    code = (
        "import os\nfrom snakemake.cli import main\n"
        "try:\n"
        f"    main(['--snakefile', {str(REPO / 'Snakefile')!r}, '-n', '--quiet', '--cores', '1'])\n"
        "except SystemExit:\n    pass\n"
        "print('SOURCE=' + os.environ.get('PRUNEBENCH_SOURCE', ''))\n"
    )
    (tmp_path / "config.yaml").write_text((REPO / "config" / "demo.yaml").read_text())
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    source = re.search(r"^SOURCE=(.*)$", proc.stdout, re.M).group(1)
    assert os.path.samefile(source, REPO)

    # run as Snakemake runs it, with a stand-in `python` that records what it was asked to do
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text('#!/bin/sh\necho "$@" >> "$CALLS"\n')
    (bin_dir / "python").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls"), "PRUNEBENCH_SOURCE": source}
    proc = subprocess.run(["bash", str(DEPLOY)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"-m pip install --no-deps --editable {source}"

    env["PRUNEBENCH_SOURCE"] = str(tmp_path)  # not a checkout
    proc = subprocess.run(["bash", str(DEPLOY)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "is not a prunebench checkout" in proc.stderr

"""The Snakemake process and the light commands import no torch or timm (they parse in well under a second)."""

import json
import subprocess
import sys

from tests.conftest import REPO

# Importing torch or timm in these processes fails, so that any path to them is found.
BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "timm", "torchvision"):
            raise ImportError(f"{name} imported by the light path")
sys.meta_path.insert(0, _Block())
"""


def run_blocked(code: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_modules_the_workflow_and_status_import_do_not_import_torch():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys\n"
            "import prunebench.config, prunebench.errors, prunebench.estimates, prunebench.archs\n"
            "import prunebench.cli, prunebench.report.status, prunebench.report.load, prunebench.prepare\n"
            "from prunebench.config import load_config_file, resolve_config\n"
            "from prunebench.estimates import state_resources\n"
            "r = resolve_config(load_config_file('config.yaml'))\n"
            "[state_resources(e, 1, r.resources) for e in r.experiments.values()]\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'torchvision'))))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def assert_plans_without_torch(workdir) -> None:
    """Snakemake plans workdir/config.yaml (a dry run) with torch unimportable."""
    code = (
        "from snakemake.cli import main\n"
        f"main(['--snakefile', {str(REPO / 'Snakefile')!r}, '-n', '--quiet', 'rules', '--cores', '1'])\n"
    )
    proc = run_blocked(code, cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "train_state0" in proc.stdout + proc.stderr


def test_snakemake_plans_the_reference_matrix_with_torch_unimportable(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    assert_plans_without_torch(tmp_path)


def test_status_and_validate_run_with_torch_unimportable(tmp_path):
    (tmp_path / "config.yaml").write_text((REPO / "config.yaml").read_text())
    (tmp_path / "results" / "shared" / "vit-cifar10-vit_small-s0" / "recovery" / "state0").mkdir(
        parents=True
    )  # running
    for argv in (["status", "--config", "config.yaml"], ["validate", "config.yaml"]):
        proc = run_blocked(f"from prunebench.cli import main\nraise SystemExit(main({argv!r}))", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]


def test_an_image_folder_config_validates_and_plans_with_torch_unimportable(tmp_path):
    # the `datasets` section is checked without torch; nothing scans the folder in the Snakemake process
    (tmp_path / "config.yaml").write_text((REPO / "config" / "imagenet.yaml").read_text())
    proc = run_blocked("from prunebench.cli import main\nraise SystemExit(main(['validate', 'config.yaml']))", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_plans_without_torch(tmp_path)

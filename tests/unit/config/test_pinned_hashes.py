"""The training hash of every experiment and shared state-0 run of the configs prunebench ships.

The hash is the training rules' rerun trigger and the ``config_hash`` every checkpoint and summary
carries: a prunebench whose code changes one of these hashes makes Snakemake retrain that state (and
the states after it) in every user's finished matrix, and refuses the state's old checkpoints. So a
change that alters a hash here must say why in its commit (which setting now counts, or no longer
counts, as what a state trains), update the literal below, and tell users in the release notes that
their finished states of such experiments retrain. A refactor of config.py changes none.
"""

from pathlib import Path

import pytest

from prunebench.config import load_config_file, resolve_config, training_hash

ROOT = Path(__file__).resolve().parents[3]  # the repository, where the configs are

# Changes so far (the commit says which states retrain):
# - x-method sections (issue 20): another method's section is hashed as its defaults, so config.yaml's
#   and the demo's rsst.peak_at: 0.5 (and the demo CNN group's reprune settings) no longer count for
#   the non-RSST (non-REPrune) experiments: those changed, the RSST ones and the shared states 0 kept
#   theirs. train.gpus and train.nodes no longer count: imagenet.yaml (gpus: 8) changed throughout.

PINNED = {
    "config.yaml": {
        "cnn-cifar10-resnet56-dense-s0": "615db1c75432fc866ab28319252b7be3f31b8d2fdf9341d5c8666594fb182b97",
        "cnn-cifar10-resnet56-oneshot-s0": "4e1906c6b6025ed86ba6d5c6f16836fd899f53e8a38caba7e73cb787df550659",
        "cnn-cifar10-resnet56-random-s0": "27c1382c5b3147339e3983850a07df3d1bd08a7c4294d79a60a526778ed0189a",
        "cnn-cifar10-resnet56-refill-s0": "ccca9b8b8dff43ebc0419212f1c10d9d662095d12f13c53a08e559272f1f5744",
        "cnn-cifar10-resnet56-reprune-s0": "c2e01309fa955ae8253c703d9fae6040e09e8a756a56985a795316d667a63e5c",
        "cnn-cifar10-resnet56-rsst-s0": "85ec988bd6b30bc70434bf3639a9d508aab3e927bce15dc051045293e85f6613",
        "linkage_average-cifar10-resnet56-reprune-s0": "c387e3029d36fc3248b7e88260f772b4033fcb2b1d93e18194562bc82e7b5641",
        "linkage_complete-cifar10-resnet56-reprune-s0": "793401e22796297e084af426c4f9b0eb461d605aa974fb5ad2caf79b9b38d698",
        "linkage_single-cifar10-resnet56-reprune-s0": "f471260ce944da362381a39e1d7e1ebb5e201dc954271b93f86763c95d77ad2a",
        "shared/cnn-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_average-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_complete-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_single-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/vit-cifar10-vit_small-s0": "341de4937efa1fa71d59fb5d92d308e47532dbe487fb78a42a051a799174532f",
        "shared/vit-cifar100-vit_small-s0": "002eb23ab4106d344d3f0519827c78e319cbc0b01d1d76197ab91af7b87a840a",
        "vit-cifar10-vit_small-oneshot-s0": "e53b2b76003b7a21d983118bcb3ae5d2d76b74b8e693daf70cbcc97d94f4b5ae",
        "vit-cifar10-vit_small-random-s0": "337724384320399214c505a5d9acae58b6f4eeaba16d7abbbf66d48bc2621b49",
        "vit-cifar10-vit_small-refill-s0": "668d4344dc941f9be0656055a7c3c57fed4e80bf9977aa3da3b68368ac9114e1",
        "vit-cifar10-vit_small-rsst-s0": "f29b1c7a32e18ff4fd1b8248e448f748d75e2f6015636e1e89b007ad2433dc86",
        "vit-cifar100-vit_small-oneshot-s0": "74abc37c7aec0a9539a2c618c924b99ff080ef78aa029f0e36ea97c01766b9bb",
        "vit-cifar100-vit_small-random-s0": "84385a20324ab26bd82d6e599fa5256f90537f050297c16d30f6358a5bba54a6",
        "vit-cifar100-vit_small-refill-s0": "e39524a65adddb8b125132deba88ff4bf93e02ea1a9bef58d8617217a18a9f9a",
        "vit-cifar100-vit_small-rsst-s0": "c741c4cd9457f8a5c818d415914b7c4e032c3a9f9db893542c800dcac359db99",
    },
    "config/demo.yaml": {
        "demo-digits-vit_digits-dense-s0": "f818e1302546933589b70c50fbd447064375d4837dff179509ecbb41d602e0d5",
        "demo-digits-vit_digits-random-s0": "0fbc1956b1d4ebb7e6c69f1560e56439df712520e4ab3d49a281691162ef1b94",
        "demo-digits-vit_digits-refill-s0": "0708a5f4b65fc7cc083c1737f12d6af2c39971a25de666921d69542e9829fe68",
        "demo-digits-vit_digits-rsst-s0": "b468e3404e36a69a928f512c33f67d357e4c4957bcc221e08429665248a48ef1",
        "demo_cnn-digits-cnn_digits-random-s0": "fa34e41d1f6f511a44fc29b044d27cf7300a77d8a12554185fd6dbb44a9074a5",
        "demo_cnn-digits-cnn_digits-refill-s0": "26782fe20ccf289bcea048d21a3a3d576cef860058cd75e635a0c779f2a17212",
        "demo_cnn-digits-cnn_digits-reprune-s0": "d1d3d13fe5bd1e36af5959cf6b9718f9db358ec49baa51ea3aae60096d52f43c",
        "shared/demo-digits-vit_digits-s0": "9e504f79f2b3dc2501a135f3807e82c4499d35a36ab56b52432e440a07975078",
        "shared/demo_cnn-digits-cnn_digits-s0": "fef468a9c36ff6d5d6e58581b4d839f8dd4ba0177b928dd0c66bb6d231639980",
    },
    "config/imagenet.yaml": {
        "cnn-imagenet-resnet50-dense-s0": "c480381107b6d3e6dcccad2547eca95d8bb4b361590ee7c67436931b639f594d",
        "cnn-imagenet-resnet50-refill-s0": "14c764ae750766ca47f2ca120fdf59dcde825a8cc63f3c21091c48587beb45cb",
        "cnn-imagenet-resnet50-reprune-s0": "678eeb50d2313295fff4b49c21df53a8cde37b20362986f2a6f0074151a24377",
        "cnn-imagenet-resnet50-rsst-s0": "9ef7db307dad3dbb326993b90b9097e92c8a2495579edc922186ea9bb371a4b8",
        "shared/cnn-imagenet-resnet50-s0": "f9c8b86108847fdad319f1a72ddc16e681e03125c1f2618030a8090e02344247",
        "shared/vit-imagenet-deit_small-s0": "e41c7636f3ff4b83a6a6774e0c7372e4742fd386a91b6852f3a30bee5e0210cf",
        "vit-imagenet-deit_small-refill-s0": "a75f825e496515409c6d078c9accd97ec875ce0fdf19de9ddc9c322fd61c9539",
        "vit-imagenet-deit_small-rsst-s0": "77cff811d5ec42794920f4d35d74d7d2a6a7bbbe31aba1df542811fdeea9ee76",
    },
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(PINNED))
def test_the_shipped_configs_keep_their_training_hashes(path):
    resolved = resolve_config(load_config_file(ROOT / path), build_models=False)
    runs = {**resolved.experiments, **resolved.state0_runs}
    assert {name: training_hash(exp) for name, exp in runs.items()} == PINNED[path]

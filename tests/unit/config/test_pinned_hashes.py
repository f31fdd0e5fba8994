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

PINNED = {
    "config.yaml": {
        "cnn-cifar10-resnet56-dense-s0": "dd2cd1291dacb45584b143f7b548be334e3d40d8722f23aaec4b80752969c579",
        "cnn-cifar10-resnet56-oneshot-s0": "2fd21786a204f5aa6382dae46ba1134555d8a87afa6bf910101677e6a8a2e5ee",
        "cnn-cifar10-resnet56-random-s0": "9cdeaae4c927e18cd3722f3feae53a9fe646ddaee004f3c17fad126aed888bda",
        "cnn-cifar10-resnet56-refill-s0": "61b9240968eee5e2b88894ad0ae970ae3bb55366a3434d7556d6d9027430ce30",
        "cnn-cifar10-resnet56-reprune-s0": "ed7ecc244161483520a8f59e3ff55bc8826b500538458cff37bf209c0ef27c4b",
        "cnn-cifar10-resnet56-rsst-s0": "85ec988bd6b30bc70434bf3639a9d508aab3e927bce15dc051045293e85f6613",
        "linkage_average-cifar10-resnet56-reprune-s0": "e549422dabcab8048d7300cfc617af0c068a6f85fc6e9e0b22270fd1190d4c46",
        "linkage_complete-cifar10-resnet56-reprune-s0": "38428e66eb48d14d2378d6a295bb22c17fcafb7ac2925fc6986573cef95bf41c",
        "linkage_single-cifar10-resnet56-reprune-s0": "b5d5ddc40bbce5dcbbb3eb25f592c92c641a332535b4f39fe8a55abebc243449",
        "shared/cnn-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_average-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_complete-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_single-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/vit-cifar10-vit_small-s0": "341de4937efa1fa71d59fb5d92d308e47532dbe487fb78a42a051a799174532f",
        "shared/vit-cifar100-vit_small-s0": "002eb23ab4106d344d3f0519827c78e319cbc0b01d1d76197ab91af7b87a840a",
        "vit-cifar10-vit_small-oneshot-s0": "e685b0f1d5ceea56be95ffdf4781e435e49bf6733b833d90842c7b897a8508cf",
        "vit-cifar10-vit_small-random-s0": "03cc76e542d9cd396ba0b05509e60b49f8e97703a25da8551624245cccfa649f",
        "vit-cifar10-vit_small-refill-s0": "e2f8479237ed244be6a9b76ec1ff1937282464620b322c801b834590e5aded98",
        "vit-cifar10-vit_small-rsst-s0": "f29b1c7a32e18ff4fd1b8248e448f748d75e2f6015636e1e89b007ad2433dc86",
        "vit-cifar100-vit_small-oneshot-s0": "25e739b119630bf0e38e434e69214134392d8bd7ba6820d71bb1192e7e9e36d1",
        "vit-cifar100-vit_small-random-s0": "260b30bfeb29227c937e7454f33ecae2934e25ec623f0f9b750f5950009ce3a2",
        "vit-cifar100-vit_small-refill-s0": "369c57241cc2c3b7ddc80c273b4356e46cf70c9c5d521aad1043aba595135762",
        "vit-cifar100-vit_small-rsst-s0": "c741c4cd9457f8a5c818d415914b7c4e032c3a9f9db893542c800dcac359db99",
    },
    "config/demo.yaml": {
        "demo-digits-vit_digits-dense-s0": "839eccd74a5881fcfef486e378425a68aa06956051521fb24cf59512cb4f6833",
        "demo-digits-vit_digits-random-s0": "8f5b5f4455f4e89d9dcdb3947203dc84db0411431d020851c049dc897747ec9b",
        "demo-digits-vit_digits-refill-s0": "776373f7e7825dc34e915a1aa316e6f345e356aa3d73f4489ad7a23bb68005a5",
        "demo-digits-vit_digits-rsst-s0": "b468e3404e36a69a928f512c33f67d357e4c4957bcc221e08429665248a48ef1",
        "demo_cnn-digits-cnn_digits-random-s0": "5221e9207356d42b91ade3ed3839aa3f2ec89da6afc1861b413cbfdcf86d8a47",
        "demo_cnn-digits-cnn_digits-refill-s0": "98576c866b66eac7ea0a1723443d8ec4cd00517a8fcaad99879174f5adc5fbcf",
        "demo_cnn-digits-cnn_digits-reprune-s0": "cda8739768cf3a6ebd5a904bc7206a65537a46ce930e6983cb10f1c31a3482f1",
        "shared/demo-digits-vit_digits-s0": "9e504f79f2b3dc2501a135f3807e82c4499d35a36ab56b52432e440a07975078",
        "shared/demo_cnn-digits-cnn_digits-s0": "fef468a9c36ff6d5d6e58581b4d839f8dd4ba0177b928dd0c66bb6d231639980",
    },
    "config/imagenet.yaml": {
        "cnn-imagenet-resnet50-dense-s0": "d3af165721465483e75edd2cd8da7a4174e418e88c9d253140f877d3c6d87d1c",
        "cnn-imagenet-resnet50-refill-s0": "b7eac3da4261e983a760bde1adc91510340b38ff6a1bb76c3f0d362eef2d59f4",
        "cnn-imagenet-resnet50-reprune-s0": "cb2a7c46e8751daf3f5bebaa49fb8fafd4cf1e655526d4e9e078fc493b7d1b41",
        "cnn-imagenet-resnet50-rsst-s0": "9223307ddaca24d2277a8c3d15ecbf176a06ef171d2e2de44ce4287681267df6",
        "shared/cnn-imagenet-resnet50-s0": "f0a3d27083ede0d0c7ddd9db0a11a6036f46a951b6aec4bd919c405c91edbed1",
        "shared/vit-imagenet-deit_small-s0": "5545d7a7eead8220a65a13f49408e97d8dc5bf0f83b24be000eeb7c4990c441b",
        "vit-imagenet-deit_small-refill-s0": "7102e731226f82b5fbfdaa986890cfee3010020bce45abc5c560eaf1bbc4ac13",
        "vit-imagenet-deit_small-rsst-s0": "a5bc519179ff818eab932dd2a5dcba837f65fe8453573d4b5b73a9384326b36f",
    },
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(PINNED))
def test_the_shipped_configs_keep_their_training_hashes(path):
    resolved = resolve_config(load_config_file(ROOT / path), build_models=False)
    runs = {**resolved.experiments, **resolved.state0_runs}
    assert {name: training_hash(exp) for name, exp in runs.items()} == PINNED[path]

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
# - seeds 1 and 2 and the dense control chains (issue 21) added experiments; every hash above kept.
# - the demo's ViT at patch 8 (issue 21: the demo's 3 CNN seeds within 10 minutes): the demo ViT group's
#   experiments and shared state 0 changed; a finished demo retrains its ViT chains once.

PINNED = {
    "config.yaml": {
        "cnn-cifar10-resnet56-dense-s0": "615db1c75432fc866ab28319252b7be3f31b8d2fdf9341d5c8666594fb182b97",
        "cnn-cifar10-resnet56-dense-s1": "907c7b9814295175d240524297e831fa71ae5fa0e707e8865087129de98e257d",
        "cnn-cifar10-resnet56-dense-s2": "b6cf7890affa8846e956e89c819f1e3acee16a16d2466024e585bef57aa285b1",
        "cnn-cifar10-resnet56-oneshot-s0": "4e1906c6b6025ed86ba6d5c6f16836fd899f53e8a38caba7e73cb787df550659",
        "cnn-cifar10-resnet56-oneshot-s1": "5adbad2a70909268b52d53c686c3fa296a4f6a9fb5d83ec2fcf4825fb44c4e60",
        "cnn-cifar10-resnet56-oneshot-s2": "85a5fa866063e3480f408828ba3897d40d2e3e0e18db26eef3302f1598016c5c",
        "cnn-cifar10-resnet56-random-s0": "27c1382c5b3147339e3983850a07df3d1bd08a7c4294d79a60a526778ed0189a",
        "cnn-cifar10-resnet56-random-s1": "d5b7b94deecb69310edd8680831e54b2b9a70f63f27b2327ca9d28bcaa76b12c",
        "cnn-cifar10-resnet56-random-s2": "08e0d8f4cabc6b943d17b74a8f93c57b09a97e7069886f13d20ccc5b840163a7",
        "cnn-cifar10-resnet56-refill-s0": "ccca9b8b8dff43ebc0419212f1c10d9d662095d12f13c53a08e559272f1f5744",
        "cnn-cifar10-resnet56-refill-s1": "12f728359147d67b583b1bf7e4210df271ec8a21ae6b551c1ef274f60c4c5d05",
        "cnn-cifar10-resnet56-refill-s2": "5b5b59aba3a139449fe432b9f735233c97e66eab11e351c6547862516ba176f9",
        "cnn-cifar10-resnet56-reprune-s0": "c2e01309fa955ae8253c703d9fae6040e09e8a756a56985a795316d667a63e5c",
        "cnn-cifar10-resnet56-reprune-s1": "c8593b5cd1bc675047f572cb62bfc160f4492fb355f8fb555c165f6c28b97609",
        "cnn-cifar10-resnet56-reprune-s2": "3d8f1781fd56bc0707e333a7049d66e179fa2edbfa0b141c58f134dd4234c7ed",
        "cnn-cifar10-resnet56-rsst-s0": "85ec988bd6b30bc70434bf3639a9d508aab3e927bce15dc051045293e85f6613",
        "cnn-cifar10-resnet56-rsst-s1": "084928b5825028fe42d8c4dce673e28abf96d61dfd56d16fc6a18d3c92e1403e",
        "cnn-cifar10-resnet56-rsst-s2": "d49b258a3d947eb21df72a61793e8e42df863bdc12793663aa6ef1b3127a5045",
        "linkage_average-cifar10-resnet56-reprune-s0": "c387e3029d36fc3248b7e88260f772b4033fcb2b1d93e18194562bc82e7b5641",
        "linkage_average-cifar10-resnet56-reprune-s1": "65a336efa1e803f8e26a98aa8256451406c19b6c9720cf6b47180cd92ed04472",
        "linkage_average-cifar10-resnet56-reprune-s2": "7e9bb79c3bf0291ca05935fe157d59f299afab8afcbd3cda4d5ce83f54dad0af",
        "linkage_complete-cifar10-resnet56-reprune-s0": "793401e22796297e084af426c4f9b0eb461d605aa974fb5ad2caf79b9b38d698",
        "linkage_complete-cifar10-resnet56-reprune-s1": "3eaa3273bfbba5aa41584eb8674e739ace4affdac1a93af2840b4a2c2be61d78",
        "linkage_complete-cifar10-resnet56-reprune-s2": "65d6bef89e11b93c31b8447856832a45c8dabf43e3f1d96fdf524c160c1e6893",
        "linkage_single-cifar10-resnet56-reprune-s0": "f471260ce944da362381a39e1d7e1ebb5e201dc954271b93f86763c95d77ad2a",
        "linkage_single-cifar10-resnet56-reprune-s1": "d606c3c77465bf3a78ec54e39c8ea931c8fa39d22a0b08fbdc36c5baa84942cf",
        "linkage_single-cifar10-resnet56-reprune-s2": "4ef65f9395795d0c3b73117747123803d1ef4dbc7d660e481f080765ada0fe4e",
        "shared/cnn-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/cnn-cifar10-resnet56-s1": "9ef18fff8d57efe20956a64c5f384962bff44f46c6027e6e473d6950dd672094",
        "shared/cnn-cifar10-resnet56-s2": "1fd108435395b9aa739e66a94ef0d9f48107885c7ee6be4411b7079828ab85db",
        "shared/linkage_average-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_average-cifar10-resnet56-s1": "9ef18fff8d57efe20956a64c5f384962bff44f46c6027e6e473d6950dd672094",
        "shared/linkage_average-cifar10-resnet56-s2": "1fd108435395b9aa739e66a94ef0d9f48107885c7ee6be4411b7079828ab85db",
        "shared/linkage_complete-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_complete-cifar10-resnet56-s1": "9ef18fff8d57efe20956a64c5f384962bff44f46c6027e6e473d6950dd672094",
        "shared/linkage_complete-cifar10-resnet56-s2": "1fd108435395b9aa739e66a94ef0d9f48107885c7ee6be4411b7079828ab85db",
        "shared/linkage_single-cifar10-resnet56-s0": "09590eb0a570f33a1408a725eeee5a5f9c1b5d90c73d775a97dbdab456d7ae4e",
        "shared/linkage_single-cifar10-resnet56-s1": "9ef18fff8d57efe20956a64c5f384962bff44f46c6027e6e473d6950dd672094",
        "shared/linkage_single-cifar10-resnet56-s2": "1fd108435395b9aa739e66a94ef0d9f48107885c7ee6be4411b7079828ab85db",
        "shared/vit-cifar10-vit_small-s0": "341de4937efa1fa71d59fb5d92d308e47532dbe487fb78a42a051a799174532f",
        "shared/vit-cifar10-vit_small-s1": "77cbbd021ed7668de9adde61096f3009e67ce721148c68342bd8dabdd9d6a3e5",
        "shared/vit-cifar10-vit_small-s2": "21a572a2335892bcd41ccd216eda8de2f9775310dfbd1f70b00249428c471888",
        "shared/vit-cifar100-vit_small-s0": "002eb23ab4106d344d3f0519827c78e319cbc0b01d1d76197ab91af7b87a840a",
        "shared/vit-cifar100-vit_small-s1": "76a9cf377281ddabe06320d89756d32b509ea4894f536b840ad9fe1595f90424",
        "shared/vit-cifar100-vit_small-s2": "5d882cbfd441190e2cdd82ac8d88e9638252c1581545fa5ea419b74aeb030c6e",
        "vit-cifar10-vit_small-dense-s0": "30b87947c8f63e0d320efe713e34fb771de3ff12d185134040d0caf17a1c0d81",
        "vit-cifar10-vit_small-dense-s1": "3096f5a981e5a3c84f40eebbcb51aef97810ffea284ff91ac1126d2575c7585b",
        "vit-cifar10-vit_small-dense-s2": "fe3237f8928977e3fd0111b161732b26521e087cf0b6a73e5041ffd98ed70819",
        "vit-cifar10-vit_small-oneshot-s0": "e53b2b76003b7a21d983118bcb3ae5d2d76b74b8e693daf70cbcc97d94f4b5ae",
        "vit-cifar10-vit_small-oneshot-s1": "d7c60f059410bb17dcc1b93d1d01065fb67b4d9069a02eacfa96e478ad093baf",
        "vit-cifar10-vit_small-oneshot-s2": "c05f7cc6cc4907f6af16d184b7e9592f7c4cf6694e83220d7cfdc9311c86d106",
        "vit-cifar10-vit_small-random-s0": "337724384320399214c505a5d9acae58b6f4eeaba16d7abbbf66d48bc2621b49",
        "vit-cifar10-vit_small-random-s1": "2dc259cc702912522944c3a71734e254c72c9c846dd8e121f766f380e00d34e5",
        "vit-cifar10-vit_small-random-s2": "7cb951887e3446883939e10adacd964d54cc5a8d68f84801d7a9c7d1e3a3781f",
        "vit-cifar10-vit_small-refill-s0": "668d4344dc941f9be0656055a7c3c57fed4e80bf9977aa3da3b68368ac9114e1",
        "vit-cifar10-vit_small-refill-s1": "57e018f772c2778afbb4286fbcc00779bfdf52b5d0b682285ada9bec3d229ea9",
        "vit-cifar10-vit_small-refill-s2": "16c61938ad5cfe612d6a84b7fa6866a69d7039ea377d2d87992205cc4ce6f85e",
        "vit-cifar10-vit_small-rsst-s0": "f29b1c7a32e18ff4fd1b8248e448f748d75e2f6015636e1e89b007ad2433dc86",
        "vit-cifar10-vit_small-rsst-s1": "b68f6178a23edb8f17dfbe421ccc5d6a69aa44b4414e4d0fe8c12c73e3b4805d",
        "vit-cifar10-vit_small-rsst-s2": "5db8420670e2a05be6b1f4b5babce25501c5c3fa9c8526140c012f033dc4539d",
        "vit-cifar100-vit_small-dense-s0": "ff850eb3a6d6c3e63cdce8475bc3771a102f4ac6c667c8b30876257a9d39144a",
        "vit-cifar100-vit_small-dense-s1": "e6a701dc1c70e37c02685992ee0f62dd178db663fd45d045df79f8e89d874222",
        "vit-cifar100-vit_small-dense-s2": "d3547d9a3437deb9b58e9b55f3bf0b005c51a7a5badf08662548829675a2873b",
        "vit-cifar100-vit_small-oneshot-s0": "74abc37c7aec0a9539a2c618c924b99ff080ef78aa029f0e36ea97c01766b9bb",
        "vit-cifar100-vit_small-oneshot-s1": "4d572b0f9b0abe0096fc242d5b5e83e3fae24b77cb83f33058d52b71e69730d3",
        "vit-cifar100-vit_small-oneshot-s2": "55177769056160ba90c3af21f535ef677507983dded84049e7eec857175960cd",
        "vit-cifar100-vit_small-random-s0": "84385a20324ab26bd82d6e599fa5256f90537f050297c16d30f6358a5bba54a6",
        "vit-cifar100-vit_small-random-s1": "065ccd24ea27592aa7e73268d7101cd3e2949fb8eda4d528392acb68dea64e77",
        "vit-cifar100-vit_small-random-s2": "6072d1d3debec693c286833bdf332daac9a3a2398374f71e07afbe84ded966c0",
        "vit-cifar100-vit_small-refill-s0": "e39524a65adddb8b125132deba88ff4bf93e02ea1a9bef58d8617217a18a9f9a",
        "vit-cifar100-vit_small-refill-s1": "98c52fe7777d0330e7e6cfeb9ce374f66116e860b2a1053573e4da4a2cfd6418",
        "vit-cifar100-vit_small-refill-s2": "fd550fd515fbddea79b4bdc58cea178a46cc358c6aa5d51c01c9f1f927d88703",
        "vit-cifar100-vit_small-rsst-s0": "c741c4cd9457f8a5c818d415914b7c4e032c3a9f9db893542c800dcac359db99",
        "vit-cifar100-vit_small-rsst-s1": "a89c915508924ad75dc36302fb2da77ecf80dff91266da32f1e737de7d7c2017",
        "vit-cifar100-vit_small-rsst-s2": "f49028270fa1524a37cfe0458d0f6467aee6d68a993d29a3449efed09b8a8f8b",
    },
    "config/demo.yaml": {
        "demo-digits-vit_digits-dense-s0": "2beee9bfa69310ed03872ce1d97fc30d8ff96ea4f7da7b814e0b684f8098394f",
        "demo-digits-vit_digits-random-s0": "e176261eee16da9446acd3f1c06ea71964e2e0306a3d89c141e33ccbfe65addb",
        "demo-digits-vit_digits-refill-s0": "15f8668750b65e7c6411731632a90e615a2008d524fe5fb511f45163cbaabebe",
        "demo-digits-vit_digits-rsst-s0": "448cbb21c711c9ca268d8012e95a75ab49e8964654f09539d22e44e39b85de71",
        "demo_cnn-digits-cnn_digits-dense-s0": "8ae379909072e02a7d666cbed7da064e83b51e8169b4d7210f393c5ac205ef2f",
        "demo_cnn-digits-cnn_digits-dense-s1": "2d5c907d95d54da8d361b742cd2c9ed54a5df8c66715a3a0a2dc18360aeb76b2",
        "demo_cnn-digits-cnn_digits-dense-s2": "646b45b7efaf2bc483094c4c7d38be60530a2b3d25c69943c1f77a8a53bb2005",
        "demo_cnn-digits-cnn_digits-random-s0": "fa34e41d1f6f511a44fc29b044d27cf7300a77d8a12554185fd6dbb44a9074a5",
        "demo_cnn-digits-cnn_digits-random-s1": "ade41e046bd36e34af61c7f99ca9765d252a4dba55abc620a52c7769769c9c86",
        "demo_cnn-digits-cnn_digits-random-s2": "cf6f9234d63f00a79d3ade5fc0231eddb9e1e0aa0e85ddb7ed771fd9cc446afb",
        "demo_cnn-digits-cnn_digits-refill-s0": "26782fe20ccf289bcea048d21a3a3d576cef860058cd75e635a0c779f2a17212",
        "demo_cnn-digits-cnn_digits-refill-s1": "4c8e1762b4546aba679be7a6ba84ca05527601139cf736367b4abf8f6108945f",
        "demo_cnn-digits-cnn_digits-refill-s2": "1901ffc3b8fb915f326271712acb661d720fd65791fd9f774057027fc308b53a",
        "demo_cnn-digits-cnn_digits-reprune-s0": "d1d3d13fe5bd1e36af5959cf6b9718f9db358ec49baa51ea3aae60096d52f43c",
        "demo_cnn-digits-cnn_digits-reprune-s1": "061643712749d899c5d7e767bd9451204b4fb0a4906c7687914dd221a05526d6",
        "demo_cnn-digits-cnn_digits-reprune-s2": "e4b76277c02fdbbe1ef0b3e49700cdaaaa614aad10f3510034dab7f42e1b284e",
        "shared/demo-digits-vit_digits-s0": "7491475decbe56adf1c9de4a547a0b6e1ee00773faf27b7e4232a2b61ce57a5b",
        "shared/demo_cnn-digits-cnn_digits-s0": "fef468a9c36ff6d5d6e58581b4d839f8dd4ba0177b928dd0c66bb6d231639980",
        "shared/demo_cnn-digits-cnn_digits-s1": "bce002df4bee6ac095acbb0cbc9a20b970cb3b1b45b33f7a5a3995201c86a145",
        "shared/demo_cnn-digits-cnn_digits-s2": "e77e057d6a4daf947251dcf4db2a8448d86f81383ed757255a16c46a59bea62d",
    },
    "config/imagenet.yaml": {
        "cnn-imagenet-resnet50-dense-s0": "c480381107b6d3e6dcccad2547eca95d8bb4b361590ee7c67436931b639f594d",
        "cnn-imagenet-resnet50-refill-s0": "14c764ae750766ca47f2ca120fdf59dcde825a8cc63f3c21091c48587beb45cb",
        "cnn-imagenet-resnet50-reprune-s0": "678eeb50d2313295fff4b49c21df53a8cde37b20362986f2a6f0074151a24377",
        "cnn-imagenet-resnet50-rsst-s0": "9ef7db307dad3dbb326993b90b9097e92c8a2495579edc922186ea9bb371a4b8",
        "shared/cnn-imagenet-resnet50-s0": "f9c8b86108847fdad319f1a72ddc16e681e03125c1f2618030a8090e02344247",
        "shared/vit-imagenet-deit_small-s0": "e41c7636f3ff4b83a6a6774e0c7372e4742fd386a91b6852f3a30bee5e0210cf",
        "vit-imagenet-deit_small-dense-s0": "990fefb0b08915887306b3c842955f09b5d0bd6d699053ce61c4b20e9d08acc7",
        "vit-imagenet-deit_small-refill-s0": "a75f825e496515409c6d078c9accd97ec875ce0fdf19de9ddc9c322fd61c9539",
        "vit-imagenet-deit_small-rsst-s0": "77cff811d5ec42794920f4d35d74d7d2a6a7bbbe31aba1df542811fdeea9ee76",
    },
}  # fmt: skip


@pytest.mark.parametrize("path", sorted(PINNED))
def test_the_shipped_configs_keep_their_training_hashes(path):
    resolved = resolve_config(load_config_file(ROOT / path))
    runs = {**resolved.experiments, **resolved.state0_runs}
    assert {name: training_hash(exp) for name, exp in runs.items()} == PINNED[path]

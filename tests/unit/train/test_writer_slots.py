"""The checkpoint writer's host copies (issue 24): one copy per checkpoint, into buffers a slot reuses
write after write (pinned, filled by non-blocking copies, for CUDA tensors)."""

import pytest
import torch

from prunebench.train.writer import CheckpointWriter, snapshot


def test_files_of_one_slot_share_its_buffers_and_each_holds_its_own_tensors(tmp_path):
    w = torch.arange(4.0)
    writer = CheckpointWriter(background=True)
    writer.save(tmp_path / "best_e1.pt", {"w": w}, slot="best")
    first = writer._copies["best"]["w"]
    w += 1
    writer.save(tmp_path / "best_e2.pt", {"w": w}, slot="best")  # waits for best_e1.pt, then reuses its memory
    assert writer._copies["best"]["w"].data_ptr() == first.data_ptr()
    w += 1
    writer.wait_for(tmp_path / "best_e2.pt")
    assert torch.load(tmp_path / "best_e2.pt", weights_only=True)["w"].tolist() == [1.0, 2.0, 3.0, 4.0]
    writer.close()
    assert torch.load(tmp_path / "best_e1.pt", weights_only=True)["w"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_an_inline_write_copies_no_cpu_tensor(tmp_path):
    w = torch.arange(3.0)
    seen = []
    writer = CheckpointWriter(background=False, save=lambda path, obj: seen.append(obj["w"]))
    writer.save(tmp_path / "r.pt", {"w": w})
    assert seen[0].data_ptr() == w.data_ptr() and writer.written == 1  # written before training goes on: no copy needed
    assert snapshot({"w": w})["w"].data_ptr() != w.data_ptr()  # a background write's copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_copied_into_reused_pinned_memory_and_written_as_they_were(tmp_path):
    w = torch.arange(1 << 20, dtype=torch.float32, device="cuda")
    writer = CheckpointWriter(background=True)
    writer.save(tmp_path / "r.pt", {"w": w})
    first = writer._copies[tmp_path / "r.pt"]["w"]
    assert first.is_pinned() and first.device.type == "cpu"
    w.add_(1)  # queued behind the copy on the same stream: the file has the values before it
    writer.save(tmp_path / "r.pt", {"w": w})
    assert writer._copies[tmp_path / "r.pt"]["w"].data_ptr() == first.data_ptr()
    w.add_(1)
    writer.close()
    got = torch.load(tmp_path / "r.pt", weights_only=True)["w"]
    assert got.device.type == "cpu" and torch.equal(got, torch.arange(1 << 20, dtype=torch.float32) + 1)

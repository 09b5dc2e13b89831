"""`--teacher`: an artifact path loads as it is; a RobustBench name is pulled on first use and reused after."""

from __future__ import annotations

import pytest
import torch

import rdist
from rdist.errors import RdistError
from rdist.resolve import resolve_model, resolve_teacher
from rdist.teachers.catalogue import TEACHERS, teacher_dataset
from rdist.teachers.robustbench import artifact_path, checkpoint_path


def test_a_path_loads_frozen_in_eval_mode(tmp_path):
    path = tmp_path / "teacher.safetensors"
    rdist.save_model(rdist.create_model("tinycnn", in_channels=1), path, dataset="digits", input_shape=[1, 8, 8])
    teacher = resolve_teacher(str(path))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert teacher.rdist_meta["dataset"] == "digits"


def test_a_robustbench_name_is_pulled_once_then_reused(tiny_teacher):
    checkpoint, reference = tiny_teacher.place_checkpoint(seed=3)
    teacher = resolve_teacher(tiny_teacher.entry.name, dataset="cifar10")
    assert resolve_model(tiny_teacher.entry.name, "cifar10").path == artifact_path(tiny_teacher.entry)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), reference(x), rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())

    checkpoint.unlink()
    again = resolve_teacher(tiny_teacher.entry.name, dataset="cifar10")
    with torch.no_grad():
        torch.testing.assert_close(again(x), teacher(x))


def test_bad_teacher_specs_name_the_problem(offline_cache, tmp_path):
    with pytest.raises(RdistError, match="did you mean: Chen2021LTD_WRN34_10"):
        resolve_teacher("Chen2021LTD_WRN34_1O")
    with pytest.raises(RdistError, match="model file not found"):
        resolve_teacher(str(tmp_path / "missing.safetensors"))
    with pytest.raises(RdistError, match="CIFAR-10 model, not a CIFAR-100 one"):
        resolve_teacher("Zhang2019Theoretically", dataset="cifar100")


def test_the_dataset_of_a_name_follows_the_training_data():
    assert teacher_dataset("Chen2021LTD_WRN34_10", "cifar100") == "cifar100"
    assert teacher_dataset("Chen2021LTD_WRN34_10", "npz:cifar10-subset.npz") == "cifar10"
    assert teacher_dataset("Gowal2020Uncovering_extra", None) == "cifar100", "its only dataset"
    assert teacher_dataset("Zhang2019Theoretically", "svhn") == "svhn", "never a CIFAR teacher for SVHN"


def test_a_cifar100_only_name_pulls_the_cifar100_checkpoint(offline_cache):
    with pytest.raises(RdistError) as error:
        resolve_teacher("Gowal2020Uncovering_extra")
    assert str(checkpoint_path(TEACHERS[("Gowal2020Uncovering_extra", "cifar100")])) in str(error.value)


def test_load_model_takes_robustbench_s_keywords_and_reads_its_model_dir(tiny_teacher, tmp_path, monkeypatch):
    """Code written for `robustbench.utils.load_model(model_name=..., model_dir=..., dataset=..., threat_model=...)`
    runs on rdist.load_model by changing the import: the same model (the same logits as rdist's own form), and a
    checkpoint RobustBench downloaded into its model_dir is read from there, not fetched again."""
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    name = tiny_teacher.entry.name
    _, reference = tiny_teacher.place_checkpoint(seed=5)  # in rdist's cache, robustbench/cifar10/Linf/NAME.pt
    positional = rdist.load_model(name, dataset="cifar10")
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(6))

    # A fresh rdist cache and RobustBench's own folder layout elsewhere: ./models/cifar10/Linf/NAME.pt.
    model_dir = tmp_path / "models"
    (model_dir / "cifar10" / "Linf").mkdir(parents=True)
    checkpoint_path(tiny_teacher.entry).rename(model_dir / "cifar10" / "Linf" / f"{name}.pt")
    monkeypatch.setenv("RDIST_CACHE", str(tmp_path / "another-cache"))
    keywords = rdist.load_model(model_name=name, model_dir=str(model_dir), dataset="cifar10", threat_model="Linf")
    enums = rdist.load_model(model_name=name, model_dir=model_dir, dataset=BenchmarkDataset.cifar_10,
                             threat_model=ThreatModel.Linf)
    assert artifact_path(tiny_teacher.entry).is_file(), "converted from the model_dir's checkpoint into the new cache"
    assert not keywords.training and not positional.training
    with torch.no_grad():
        expected = reference(x)
        for model in (positional, keywords, enums):
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        assert torch.equal(keywords(x), positional(x))

    with pytest.raises(RdistError, match=r"threat_model 'L2': rdist has Linf teachers only.*threat_model='Linf'"):
        rdist.load_model(model_name=name, threat_model="L2")
    with pytest.raises(RdistError, match="load_model got two models"):
        rdist.load_model(name, model_name=name)
    with pytest.raises(RdistError, match="name the model once"):
        rdist.load_model()
    with pytest.raises(RdistError, match="model_dir is where RobustBench keeps its checkpoints"):
        rdist.load_model(model_name=str(artifact_path(tiny_teacher.entry)), model_dir=model_dir)

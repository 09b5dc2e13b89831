from rdist.methods.base import Recipe
from rdist.methods.natural import Natural
from rdist.methods.igdm import IGDM


def test_loss_is_cross_entropy_on_clean_inputs(student, make_batch, reference, close, float64_logits):
    batch = make_batch()
    logits = float64_logits(student)(batch.x)
    close(Natural().loss(student, batch, None), reference.ce(logits, batch.y), reference.float32_error(1.0, logits))


def test_trains_without_an_attack(student, make_batch):
    assert Natural().perturb(student, make_batch()) is None


def test_flags_defaults_and_recipe():
    assert Natural.name == "natural" and Natural.kind == "teacher"
    assert Natural.teachers == () and not IGDM.accepts(Natural)
    assert Natural.defaults() == {}
    assert Natural.recipe == Recipe(epochs=100, milestones=(75, 90), weight_decay=5e-4)

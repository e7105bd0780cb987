"""longrope.plan refuses length lists the protocol cannot use: each key's list holds every length once, shortest
first, and evaluation.lengths holds L0; every shipped config passes."""
import pytest
import yaml

from conftest import ROOT
from longrope.plan import Plan, PlanError

SHIPPED = ["config/config.yaml", "config/test.yaml", "config/smollm2.yaml", "config/smollm2-gpu.yaml",
           *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "config" / "paper").glob("*.yaml"))]


def edited(edit) -> dict:
    """config/test.yaml (L0 = 32, an export with check and parity lengths) with `edit` applied."""
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    edit(config)
    return config


def refusal(edit) -> str:
    with pytest.raises(PlanError) as error:
        Plan.load(edited(edit), ROOT, require_files=False)
    return str(error.value)


def setter(*keys, value):
    def edit(config):
        block = config
        for key in keys[:-1]:
            block = block.setdefault(key, {})
        block[keys[-1]] = value
    return edit


def parity_lengths(value):
    return lambda config: config["export"]["parity"].update(lengths=value)


def test_the_shipped_configs_pass():
    assert len(SHIPPED) >= 7
    for path in SHIPPED:
        plan = Plan.load(yaml.safe_load((ROOT / path).read_text()), ROOT, require_files=False)
        assert plan.original_length in plan.evaluation["lengths"], path


def test_derived_check_lengths_pass():
    """export.check_lengths null: Plan.check_lengths derives them (L0, the exported stages' lengths), sorted."""
    plan = Plan.load(edited(setter("export", "check_lengths", value=None)), ROOT, require_files=False)
    assert plan.export.check_lengths is None
    assert plan.check_lengths() == sorted(set(plan.check_lengths())) and 32 in plan.check_lengths()


def test_unsorted_evaluation_lengths_are_refused():
    message = refusal(setter("evaluation", "lengths", value=[32, 128, 64, 256]))
    assert "evaluation.lengths [32, 128, 64, 256] is not in increasing order (64 after 128)" in message


def test_repeated_evaluation_lengths_are_refused_by_the_schema():
    message = refusal(setter("evaluation", "lengths", value=[32, 64, 64, 128]))
    assert message.startswith("evaluation.lengths: [32, 64, 64, 128]") and "non-unique" in message


def test_evaluation_lengths_without_l0_are_refused():
    message = refusal(setter("evaluation", "lengths", value=[64, 128, 256]))
    assert "evaluation.lengths [64, 128, 256] lacks L0 = 32 (base_model.original_length)" in message


def test_unsorted_passkey_lengths_are_refused():
    message = refusal(setter("evaluation", "passkey", "lengths", value=[256, 128]))
    assert "evaluation.passkey.lengths [256, 128] is not in increasing order (128 after 256)" in message


def test_repeated_passkey_lengths_are_refused():
    message = refusal(setter("evaluation", "passkey", "lengths", value=[128, 128, 256]))
    assert "evaluation.passkey.lengths [128, 128, 256] repeats 128" in message


def test_unsorted_needle_lengths_are_refused():
    message = refusal(setter("evaluation", "needles", "lengths", value=[512, 256]))
    assert "evaluation.needles.lengths [512, 256] is not in increasing order (256 after 512)" in message


def test_repeated_needle_lengths_are_refused():
    message = refusal(setter("evaluation", "needles", "lengths", value=[512, 512]))
    assert "evaluation.needles.lengths [512, 512] repeats 512" in message


def test_unsorted_check_lengths_are_refused():
    message = refusal(setter("export", "check_lengths", value=[192, 64]))
    assert "export.check_lengths [192, 64] is not in increasing order (64 after 192)" in message


def test_repeated_check_lengths_are_refused():
    message = refusal(setter("export", "check_lengths", value=[64, 192, 64]))
    assert "export.check_lengths [64, 192, 64] repeats 64" in message


def test_unsorted_parity_lengths_are_refused():
    message = refusal(parity_lengths([192, 64, 96]))
    assert "export.parity.lengths [192, 64, 96] is not in increasing order (64 after 192)" in message


def test_repeated_parity_lengths_are_refused():
    message = refusal(parity_lengths([64, 64, 192, 192]))
    assert "export.parity.lengths [64, 64, 192, 192] repeats 64, 192" in message


def test_lengths_off_multiples_of_l0_are_allowed():
    """Below L0 and between its multiples (48 = 1.5 · L0): every consumer takes any length."""
    def edit(config):
        config["evaluation"]["lengths"] = [16, 32, 48, 64]
        config["evaluation"]["passkey"]["lengths"] = [100, 200]
        config["export"]["check_lengths"] = [40, 192]
        config["export"]["parity"]["lengths"] = [48, 100]
    plan = Plan.load(edited(edit), ROOT, require_files=False)
    assert plan.evaluation["lengths"] == [16, 32, 48, 64] and plan.export.parity.lengths == (48, 100)

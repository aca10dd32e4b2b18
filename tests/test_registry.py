"""Every registered optimizer, from every chapter, on every path it lists: equal to its reference (torch.optim, a
reference package, or the paper's formula) over the registry's 100-step test problem, in float64 and float32, and
resumed bit for bit from a state dict saved with torch.save and read with torch.load(weights_only=True). Adding an
optimizer to the registry adds it here."""
import pytest, torch
import optlib.all
from optlib.registry import OPTIMIZERS, compare_to_reference, check_resume

SPECS = sorted(OPTIMIZERS.values(), key=lambda s: s.name)
IDS = [s.name for s in SPECS]

def test_registry_is_full():
    assert len(SPECS) >= 20
    for s in SPECS: assert s.chapter and s.hypers.get('lr') is not None, s.name

@pytest.mark.parametrize('spec', SPECS, ids=IDS)
def test_equal_to_reference(spec):
    for fe in ([False, None] if 'multi_tensor' in spec.paths else [False]):
        assert compare_to_reference(spec, foreach=fe) < spec.tol, (spec.name, fe)
    if spec.reference is not None: assert compare_to_reference(spec, dtype=torch.float32) < spec.tol32, spec.name
    if 'fused' in spec.paths: assert compare_to_reference(spec, fused=True) < max(spec.tol, 1e-6), spec.name

@pytest.mark.parametrize('spec', SPECS, ids=IDS)
def test_resume(spec):
    assert check_resume(spec)

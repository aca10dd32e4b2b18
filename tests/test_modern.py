"""Chapter 09d beyond the registry's test (tests/test_registry.py runs every entry on both paths against its reference and
resumes it): Schedule-Free's evaluation mode against schedulefree, the cautious mask on a bucket against per tensor, the
errors a user meets (Muon on a vector, Prodigy's shared lr, Adafactor's state shapes), and that the composed steppers keep
working under the engine's corner cases (a tensor with no gradient, mixed dtypes in a group)."""
import copy, io
import pytest, torch
import optlib.all
from optlib.groups import muon_param_groups
from optlib.modern import (Muon, ScheduleFreeAdamW, ScheduleFreeSGD, Prodigy, Adafactor, ADOPT, AdEMAMix,
                           cautious, adam_chain)
from optlib.multitensor import TensorList
from optlib.optimizer import Optimizer, stepper
from optlib.registry import get_spec, make_params, make_grads, groups_of, train_steps, values, max_diff

pytest.importorskip('schedulefree'); pytest.importorskip('prodigyopt'); pytest.importorskip('pytorch_optimizer')

@pytest.mark.parametrize('name', ['schedulefree_adamw', 'schedulefree_sgd'])
@pytest.mark.parametrize('foreach', [False, None])
def test_schedulefree_eval_mode(name, foreach):
    spec = get_spec(name)
    ps = make_params(); opt = spec.build(groups_of(ps, spec.hypers['lr']), foreach=foreach); train_steps(opt, ps, make_grads(50))
    qs = make_params(); ref = spec.reference(groups_of(qs, spec.hypers['lr']), **values(spec, opt)); train_steps(ref, qs, make_grads(50))
    opt.eval(); ref.eval()
    assert max_diff(ps, qs) < 1e-10
    opt.eval()                              # twice: no change
    assert max_diff(ps, qs) < 1e-10
    opt.train(); ref.train()
    assert max_diff(ps, qs) < 1e-10

def test_schedulefree_refuses_eval_steps_and_saves_its_mode():
    w = torch.zeros(3); opt = ScheduleFreeSGD([w], lr=0.1); w.grad = torch.ones(3); opt.step(); opt.eval()
    before = w.clone()
    with pytest.raises(RuntimeError, match='call opt.train'): opt.step()
    assert torch.equal(w, before)
    buf = io.BytesIO(); torch.save(opt.state_dict(), buf); buf.seek(0)
    w2 = w.clone(); opt2 = ScheduleFreeSGD([w2], lr=0.1); opt2.load_state_dict(torch.load(buf, weights_only=True))
    assert opt2.param_groups[0]['train_mode'] is False
    opt.train(); opt2.train()
    assert torch.equal(w, w2)

def test_cautious_bucket_equals_per_tensor():
    gen = torch.Generator().manual_seed(0)
    ts = [torch.randn(s, generator=gen) for s in [(5, 3), (7,), (2, 2, 2)]]
    gs = [torch.randn(t.shape, generator=gen) for t in ts]
    @stepper(multi_tensor=True)
    def rule(p, **kw): p.sub_(p.grad.mul(0.1).add(p, alpha=0.3))
    one = [t.clone() for t in ts]
    for t, g in zip(one, gs):
        t.grad = g; cautious(rule)(t)
    tl = TensorList([t.clone() for t in ts], grad=TensorList(gs)); cautious(rule)(tl)
    for a, b in zip(one, tl): assert torch.allclose(a, b, atol=1e-7)

def test_muon_refuses_vectors_and_splits_models():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Conv1d(16, 4, 1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    with pytest.raises(ValueError, match=r"parameter '0.bias' of group 0 has shape \(16,\)"): Muon(model.named_parameters())
    groups = muon_param_groups(model)
    assert [n for n, _ in groups[0]['params']] == ['0.weight', '2.weight']
    opt = Muon(groups)
    assert [g['use_muon'] for g in opt.param_groups] == [True, False]
    for p in model.parameters(): p.grad = torch.randn_like(p)
    opt.step()
    assert len(opt.state) == len(list(model.parameters()))
    with pytest.raises(ValueError, match='invalid ns_steps'): Muon(groups, ns_steps=0)

def test_prodigy_one_lr_and_frozen_groups():
    a, b = torch.randn(4, 3), torch.randn(5)
    with pytest.raises(ValueError, match='one lr'): Prodigy([{'params': [a], 'lr': 0.5}, {'params': [b]}])
    opt = Prodigy([{'params': [a]}, {'params': [b], 'lr': 0.}])
    b0 = b.clone()
    for _ in range(5):
        a.grad, b.grad = torch.randn(4, 3), torch.randn(5); opt.step()
    assert torch.equal(b, b0) and opt.param_groups[0]['d'] == opt.param_groups[1]['d']
    opt.param_groups[1]['lr'] = 0.3
    with pytest.raises(ValueError, match='group 1 has lr 0.3'): opt.step()

def test_adafactor_state_shapes_are_checked():
    w, v = torch.zeros(6, 4), torch.zeros(4)
    opt = Adafactor([w, v]); w.grad, v.grad = torch.randn(6, 4), torch.randn(4); opt.step()
    sd = copy.deepcopy(opt.state_dict())
    Adafactor([w.clone(), v.clone()]).load_state_dict(sd)             # its own shapes load
    sd['state'][0]['col_var'] = torch.zeros(1, 5)
    with pytest.raises(ValueError, match="state 'col_var' of parameter 0 has shape"): Adafactor([w, v]).load_state_dict(sd)
    with pytest.raises(ValueError, match='saved for other parameters'): Adafactor([torch.zeros(3, 4), v]).load_state_dict(opt.state_dict())

@pytest.mark.parametrize('make', [ADOPT, AdEMAMix, Prodigy, ScheduleFreeAdamW, Adafactor, lambda ps: Optimizer(ps, adam_chain(amsgrad=True, cautious=True), lr=1e-2, mom=0.9, sqr_mom=0.99, eps=1e-8, wd=0.)])
def test_mixed_dtypes_and_missing_grads(make):
    "The default path (buckets by dtype, a tensor without a gradient on some steps) equals the per-tensor path"
    def run(foreach):
        gen = torch.Generator().manual_seed(0)
        ps = [torch.randn(4, 3, generator=gen), torch.randn(5, generator=gen).double(), torch.randn(3, 3, generator=gen)]
        opt = make(ps)
        opt.foreach = foreach
        for k in range(12):
            for i, p in enumerate(ps): p.grad = None if (i == 2 and k % 4 == 1) else torch.randn(p.shape, generator=gen, dtype=p.dtype)
            opt.step()
        return ps
    assert max_diff(run(False), run(None)) < 1e-6

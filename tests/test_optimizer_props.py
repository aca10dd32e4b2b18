"""Property tests of every registered optimizer (chapter 09a's registry, after `import optlib.all`), with hypothesis,
derandomized so CI is deterministic. Where tests/test_registry.py runs each optimizer on one fixed problem, these draw
the problem: shapes of up to four tensors of up to three dimensions, float32, float64 or bfloat16 parameters, splits
into parameter groups with their own learning rates, hyper-parameters around the spec's, 1 to 6 steps, and gradients
missing on random steps.
- every registered optimizer, per tensor (`foreach=False`), multi-tensor (the default) and fused (where its spec lists
  it), stays within tolerance of its reference: the reference optimizer where the spec has one (bfloat16 included),
  the paper's formula otherwise (float32 and float64); step counts equal torch's, and a tensor that never had a
  gradient has no state;
- every registered optimizer's state_dict round-trips through torch.save/torch.load(weights_only=True) and chapter
  11's `load_optimizer_state`: training on from the loaded copy is bit for bit training on from the original."""
import io
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

import optlib.all
from optlib.registry import registered, values
from optlib.optimizer import hyper_items
from optlib.interop import load_optimizer_state

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
TOL = {torch.float64: (1e-8, 1e-8), torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}   # (rtol, atol); bfloat16: a few roundings (its epsilon is 2**-7)
SPECS = sorted((s for s in registered() if s.shapes is None), key=lambda s: s.name)   # Muon's entries take matrices only: the fixed problem of tests/test_registry.py tests them
PATHS = {'per_tensor': {'foreach': False}, 'multi_tensor': {}, 'fused': {'fused': True}}

def test_registry_is_read():
    assert len(SPECS) >= 20 and any(s.reference is not None for s in SPECS) and any(s.formula is not None for s in SPECS)

shapes = st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4)

@st.composite
def problems(draw, dtypes=DTYPES):
    "Tensors of random shapes and dtype, split into groups (each with its own lr factor), and random gradients"
    shp, dtype = draw(shapes), draw(st.sampled_from(dtypes))
    n_groups = draw(st.integers(1, len(shp)))
    cuts = sorted(draw(st.lists(st.integers(1, len(shp) - 1), min_size=n_groups - 1, max_size=n_groups - 1, unique=True))) if n_groups > 1 else []
    lr_factors = draw(st.lists(st.sampled_from([1., 0.5, 2.]), min_size=n_groups, max_size=n_groups))
    steps = draw(st.integers(1, 6))
    missing = draw(st.lists(st.tuples(st.integers(0, steps - 1), st.integers(0, len(shp) - 1)), max_size=3))
    seed = draw(st.integers(0, 2**16))
    return dict(shapes=shp, dtype=dtype, cuts=[0, *cuts, len(shp)], lr_factors=lr_factors, steps=steps, missing=set(missing), seed=seed)

def make_params(pb):
    g = torch.Generator().manual_seed(pb['seed'])
    return [torch.randn(s, generator=g, dtype=torch.float64).to(pb['dtype']) for s in pb['shapes']]

def make_grads(pb, steps=None, offset=0):
    g = torch.Generator().manual_seed(pb['seed'] + 1 + offset)
    return [[None if (i, j) in pb['missing'] else torch.randn(s, generator=g, dtype=torch.float64).to(pb['dtype'])
             for j, s in enumerate(pb['shapes'])] for i in range(steps or pb['steps'])]

def groups(pb, ps, lr):
    c = pb['cuts']
    return [{'params': ps[a:b], 'lr': lr * f} for a, b, f in zip(c, c[1:], pb['lr_factors'])]

def train(opt, ps, grads):
    for gs in grads:
        for p, g in zip(ps, gs): p.grad = None if g is None else g.clone()
        opt.step()

# hyper-parameters drawn around the spec's: lr and wd scaled (a spec without weight decay stays without: its reference
# may not express decoupled decay), mom, sqr_mom and eps drawn for the optimizers that have them
DRAWN = dict(lr_scale=st.sampled_from([0.3, 1., 2.]), wd_scale=st.sampled_from([0., 0.5, 1., 3.]), mom=st.floats(0.5, 0.95),
             sqr_mom=st.floats(0.9, 0.999), eps=st.floats(1e-8, 1e-5))

def build(spec, pb, ps, h, **kw):
    "`spec`'s optimizer on the groups of `ps`, with the drawn hyper-parameters: the optimizer's lr"
    has = hyper_items(spec.build([torch.zeros(1)]).defaults)
    lr = spec.hypers['lr'] * h['lr_scale']
    own = {k: h[k] for k in ('mom', 'sqr_mom', 'eps') if k in has and isinstance(has[k], float)}   # (Adafactor's eps is a pair)
    if spec.hypers.get('wd'): own['wd'] = spec.hypers['wd'] * h['wd_scale']
    return spec.build(groups(pb, ps, lr), lr=lr, **own, **kw), lr

def reference_run(spec, opt, pb, lr, grads):
    "The same training with `spec`'s reference (an optimizer, or the formula tensor by tensor): the final tensors, and the reference optimizer (None for a formula)"
    vals, qs = values(spec, opt), make_params(pb)
    if spec.reference is not None:
        ref = spec.reference(groups(pb, qs, lr), **vals)
        train(ref, qs, grads)
        return qs, ref
    lrs = [g['lr'] for g in groups(pb, qs, lr) for _ in g['params']]
    states = [{} for _ in qs]
    for gs in grads:
        for q, g, s, l in zip(qs, gs, states, lrs):
            if g is not None: spec.formula(q, g.clone(), s, **{**vals, 'lr': l})
    return qs, None

@st.composite
def spec_and_path(draw):
    spec = draw(st.sampled_from(SPECS))
    return spec, draw(st.sampled_from([p for p in PATHS if p in spec.paths]))

@settings(max_examples=300, **SETTINGS)
@given(sp=spec_and_path(), pb=problems(), h=st.fixed_dictionaries(DRAWN))
def test_matches_reference(sp, pb, h):
    spec, path = sp
    if spec.reference is None and pb['dtype'] == torch.bfloat16: pb = {**pb, 'dtype': torch.float32}   # a formula computes in the tensors' dtype, rounding elsewhere
    if path == 'fused' and spec.factory.__name__ == 'SGD' and pb['dtype'] == torch.bfloat16: pb = {**pb, 'dtype': torch.float32}   # refused (torch's bug): see below
    ps = make_params(pb)
    opt, lr = build(spec, pb, ps, h, **PATHS[path])
    grads = make_grads(pb)
    train(opt, ps, grads)
    qs, ref = reference_run(spec, opt, pb, lr, grads)
    rtol, atol = TOL[pb['dtype']]
    for p, q in zip(ps, qs):
        assert p.dtype == q.dtype == pb['dtype']
        assert torch.allclose(p.double(), q.double(), rtol=rtol, atol=atol), (spec.name, path, (p.double() - q.double()).abs().max().item())
    if ref is not None:                                               # the same step counts as the reference's
        for p, q in zip(ps, qs):
            if 'step' in ref.state.get(q, {}) and 'step' in opt.state.get(p, {}): assert opt.state[p]['step'] == int(ref.state[q]['step'])
    for j, p in enumerate(ps):                                        # a tensor that never had a gradient has no state
        if all((i, j) in pb['missing'] for i in range(pb['steps'])): assert not opt.state.get(p)

def test_fused_sgd_low_precision_cpu():
    "torch 2.13's CPU kernel torch._fused_sgd_ leaves most bfloat16/float16 elements unchanged (seen with AVX512): SGD(fused=True) refuses them"
    from optlib.stateful import SGD
    p0 = torch.randn(64, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    g = torch.randn(64, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    p = p0.clone(); opt = SGD([p], lr=0.015, mom=0.5)
    p.grad = g.clone(); opt.step()
    assert int((p != p0).sum()) > 32                                   # the default path moves them (58 of the 64)
    for dt in (torch.bfloat16, torch.float16):
        with pytest.raises(RuntimeError, match='refuses'): SGD([p0.to(dt)], lr=0.015, mom=0.5, fused=True)
        opt = SGD([torch.zeros(3)], lr=0.1, fused=True); q = p0.to(dt).clone()
        opt.add_param_group({'params': [q]}); q.grad = g.to(dt)
        with pytest.raises(RuntimeError, match='refuses'): opt.step()  # added later: refused at the step, before any kernel
        assert torch.equal(q, p0.to(dt))

def state_tensors(sd):
    out = []
    def walk(o):
        if isinstance(o, torch.Tensor): out.append(o)
        elif isinstance(o, dict): [walk(o[k]) for k in sorted(o, key=str)]
        elif isinstance(o, (list, tuple)): [walk(v) for v in o]
    walk(sd); return out

@settings(max_examples=150, **SETTINGS)
@given(sp=spec_and_path(), pb=problems(), h=st.fixed_dictionaries(DRAWN), more=st.integers(1, 5))
def test_state_dict_round_trip(sp, pb, h, more):
    spec, path = sp
    ps = make_params(pb); opt, _ = build(spec, pb, ps, h, **PATHS[path])
    train(opt, ps, make_grads(pb))
    buf = io.BytesIO(); torch.save(opt.state_dict(), buf)
    qs = [p.clone() for p in ps]
    opt2, _ = build(spec, pb, qs, h, **PATHS[path])
    load_optimizer_state(opt2, torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    later = make_grads(pb, steps=more, offset=1)
    train(opt, ps, later); train(opt2, qs, later)
    assert all(torch.equal(p, q) for p, q in zip(ps, qs)), (spec.name, path)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a['param_groups'] == b['param_groups']
    ta, tb = state_tensors(a), state_tensors(b)
    assert len(ta) == len(tb) and all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(ta, tb))

"""Property tests (hypothesis, derandomized so CI is deterministic): on random shapes, dtypes (float32, float64,
bfloat16), splits into parameter groups, hyper-parameters and gradients (some missing on some steps),
- optlib's optimizers stay within tolerance of torch.optim's implementation of the same method, step counts equal;
- every optlib optimizer's state_dict round-trips through torch.save/torch.load(weights_only=True): training on
  from the loaded copy is bit for bit training on from the original."""
import io
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck

from optlib.stateful import SGD, RMSProp, Adam, RAdam, QHAdam, Larc, Lamb, Lookahead, ranger, Adagrad, Lion
from optlib.interop import SAM, load_optimizer_state
from optlib.stateful import AverageGrad, momentum_step

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
TOL = {torch.float64: (1e-9, 1e-9), torch.float32: (1e-5, 1e-5), torch.bfloat16: (2e-2, 2e-2)}   # (rtol, atol); bfloat16: a few roundings (its epsilon is 2**-7)

shapes = st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple), min_size=1, max_size=4)

@st.composite
def problems(draw):
    "Tensors of random shapes and dtype, split into groups (the later ones with their own lr factor), and random gradients"
    shp, dtype = draw(shapes), draw(st.sampled_from(DTYPES))
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

# ---------------------------------------------------------------- optlib vs torch.optim
hp = dict(lr=st.floats(1e-4, 1e-1), mom=st.floats(0., 0.95), sqr_mom=st.floats(0.9, 0.999), eps=st.floats(1e-8, 1e-4),
          wd=st.sampled_from([0., 1e-3, 1e-2, 0.1]), nesterov=st.booleans(), foreach=st.sampled_from([None, False]))
PAIRS = {   # name: (optlib, torch), both called with the drawn hyper-parameters
    'SGD': (lambda g, h: SGD(g, h['lr'], mom=h['mom'], wd=h['wd'], decouple_wd=False, nesterov=h['nesterov'] and h['mom'] > 0, foreach=h['foreach']),
            lambda g, h: torch.optim.SGD(g, h['lr'], momentum=h['mom'], weight_decay=h['wd'], nesterov=h['nesterov'] and h['mom'] > 0)),
    'Adam (L2)': (lambda g, h: Adam(g, h['lr'], mom=h['mom'], sqr_mom=h['sqr_mom'], eps=h['eps'], wd=h['wd'], decouple_wd=False, foreach=h['foreach']),
                  lambda g, h: torch.optim.Adam(g, h['lr'], betas=(h['mom'], h['sqr_mom']), eps=h['eps'], weight_decay=h['wd'])),
    'AdamW': (lambda g, h: Adam(g, h['lr'], mom=h['mom'], sqr_mom=h['sqr_mom'], eps=h['eps'], wd=h['wd'], foreach=h['foreach']),
              lambda g, h: torch.optim.AdamW(g, h['lr'], betas=(h['mom'], h['sqr_mom']), eps=h['eps'], weight_decay=h['wd'])),
    'RMSprop': (lambda g, h: RMSProp(g, h['lr'], sqr_mom=h['sqr_mom'], eps=h['eps'], wd=h['wd'], decouple_wd=False, foreach=h['foreach']),
                lambda g, h: torch.optim.RMSprop(g, h['lr'], alpha=h['sqr_mom'], eps=h['eps'], weight_decay=h['wd'])),
    'Adagrad': (lambda g, h: Adagrad(g, h['lr'], eps=h['eps'], wd=h['wd'], foreach=h['foreach']),
                lambda g, h: torch.optim.Adagrad(g, h['lr'], eps=h['eps'], weight_decay=h['wd'])),
}

@settings(max_examples=200, **SETTINGS)
@given(pb=problems(), name=st.sampled_from(list(PAIRS)), h=st.fixed_dictionaries(hp))
def test_optlib_matches_torch(pb, name, h):
    ours, theirs = PAIRS[name]
    ps, qs = make_params(pb), make_params(pb)
    opt, ref = ours(groups(pb, ps, h['lr']), h), theirs(groups(pb, qs, h['lr']), h)
    grads = make_grads(pb)
    train(opt, ps, grads); train(ref, qs, grads)
    rtol, atol = TOL[pb['dtype']]
    for p, q in zip(ps, qs):
        assert p.dtype == q.dtype == pb['dtype']
        assert torch.allclose(p.double(), q.double(), rtol=rtol, atol=atol), (p, q)
        if 'step' in ref.state.get(q, {}) and 'step' in opt.state.get(p, {}): assert opt.state[p]['step'] == int(ref.state[q]['step'])
    for j, p in enumerate(ps):                                        # a tensor that never had a gradient has no state
        if all((i, j) in pb['missing'] for i in range(pb['steps'])): assert not opt.state.get(p)

# ---------------------------------------------------------------- state_dict round trips
ALL = {   # name: make(groups, lr, foreach)
    'SGD': lambda g, lr, fe: SGD(g, lr, mom=0.9, foreach=fe), 'RMSProp': lambda g, lr, fe: RMSProp(g, lr, mom=0.5, foreach=fe),
    'Adam': lambda g, lr, fe: Adam(g, lr, foreach=fe), 'RAdam': lambda g, lr, fe: RAdam(g, lr, foreach=fe),
    'QHAdam': lambda g, lr, fe: QHAdam(g, lr, foreach=fe), 'Larc': lambda g, lr, fe: Larc(g, lr, foreach=fe),
    'Lamb': lambda g, lr, fe: Lamb(g, lr, foreach=fe), 'Adagrad': lambda g, lr, fe: Adagrad(g, lr, foreach=fe),
    'Lion': lambda g, lr, fe: Lion(g, lr, foreach=fe), 'Lookahead': lambda g, lr, fe: Lookahead(Adam(g, lr, foreach=fe), k=2),
    'ranger': lambda g, lr, fe: ranger(g, lr, k=3, foreach=fe),
}

def state_tensors(sd):
    out = []
    def walk(o):
        if isinstance(o, torch.Tensor): out.append(o)
        elif isinstance(o, dict): [walk(o[k]) for k in sorted(o, key=str)]
        elif isinstance(o, (list, tuple)): [walk(v) for v in o]
    walk(sd); return out

@settings(max_examples=100, **SETTINGS)
@given(pb=problems(), name=st.sampled_from(list(ALL)), foreach=st.sampled_from([None, False]), more=st.integers(1, 5),
       lr=st.sampled_from([1e-3, 1e-2]))
def test_state_dict_round_trip(pb, name, foreach, more, lr):
    ps = make_params(pb); opt = ALL[name](groups(pb, ps, lr), lr, foreach)
    train(opt, ps, make_grads(pb))
    buf = io.BytesIO(); torch.save(opt.state_dict(), buf)
    qs = [p.clone() for p in ps]
    opt2 = ALL[name](groups(pb, qs, lr), lr, foreach)
    load_optimizer_state(opt2, torch.load(io.BytesIO(buf.getvalue()), weights_only=True))
    later = make_grads(pb, steps=more, offset=1)
    train(opt, ps, later); train(opt2, qs, later)
    assert all(torch.equal(p, q) for p, q in zip(ps, qs))
    a, b = opt.state_dict(), opt2.state_dict()
    assert a['param_groups'] == b['param_groups']
    ta, tb = state_tensors(a), state_tensors(b)
    assert len(ta) == len(tb) and all(torch.equal(x, y) and x.dtype == y.dtype for x, y in zip(ta, tb))

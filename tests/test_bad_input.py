"""The bad-input matrix, driven by the registry (as torch's `OptimizerInfo` error inputs drive torch's tests): for every
registered optimizer, every hyper-parameter it has and every value its declared check refuses (`check.bad_values`),
on every path a user can hand a value over -- the factory, `set_hyper`, `set_hypers` (atomic: the valid values given
with it are not applied either), `hypers[i][k] = v`, `add_param_group`, `load_state_dict`, and a value written straight
into `param_groups` (refused by the next `step`) -- the call raises a ValueError or TypeError whose message names the
hyper-parameter, and the parameters, the optimizer state and the groups are bit for bit what they were."""
import copy, inspect, math
import pytest, torch
import optlib.all
from optlib.registry import OPTIMIZERS, make_params, make_grads, groups_of, train_steps
from optlib.optimizer import hyper_items, hyper_check, chain_checks

SPECS = sorted(OPTIMIZERS.values(), key=lambda s: s.name)

def trained(spec):
    "The spec's optimizer after 3 steps of the registry's test problem (so that it has state)"
    shapes = spec.shapes or [(5, 3), (4,), (2, 3, 2), (6,)]
    ps = make_params(shapes=shapes)
    opt = spec.build(groups_of(ps, spec.hypers['lr']))
    train_steps(opt, ps, make_grads(3, shapes=shapes))
    return ps, opt

def snapshot(ps, opt):
    sd = opt.state_dict()
    return ([p.detach().clone() for p in ps], copy.deepcopy(sd['state']), repr(sd['param_groups']), [g['steppers'] for g in opt.param_groups])

def same(a, b):
    def eq(x, y):
        if isinstance(x, torch.Tensor): return isinstance(y, torch.Tensor) and x.shape == y.shape and torch.equal(x, y)
        if isinstance(x, dict): return isinstance(y, dict) and x.keys() == y.keys() and all(eq(x[k], y[k]) for k in x)
        if isinstance(x, (list, tuple)): return type(x) is type(y) and len(x) == len(y) and all(eq(u, v) for u, v in zip(x, y))
        return x == y
    return eq(a, b)

def refused(call, name):
    "Call `call`; it must raise a ValueError or TypeError whose message names `name`"
    with pytest.raises((ValueError, TypeError, KeyError)) as e: call()
    assert not isinstance(e.value, KeyError), f'{name}: {e.value!r}'
    assert name in str(e.value), f'{name!r} not in {e.value}'

def cases(spec):
    ps, opt = trained(spec)
    g = opt.param_groups[0]
    checks = {**opt.checks, **chain_checks(g['steppers'])}
    for k in hyper_items(g):
        for bad in hyper_check(k, checks).bad_values: yield k, bad

ALL = [(s, k, bad) for s in SPECS for k, bad in cases(s)]
IDS = [f'{s.name}-{k}-{bad!r}' for s, k, bad in ALL]

def test_matrix_size():
    per_spec = {s.name: sum(1 for t in ALL if t[0] is s) for s in SPECS}
    assert len(SPECS) >= 20 and min(per_spec.values()) >= 6, per_spec

@pytest.mark.parametrize('spec,k,bad', ALL, ids=IDS)
def test_every_path(spec, k, bad):
    ps, opt = trained(spec)
    before = snapshot(ps, opt)
    params = inspect.signature(spec.factory).parameters
    check = hyper_check(k, {**opt.checks, **chain_checks(opt.param_groups[0]['steppers'])})
    if (k in params or any(p.kind == p.VAR_KEYWORD for p in params.values())) and not getattr(check, 'fixed', False):   # a fixed check: any value when built
        refused(lambda: spec.build(groups_of([p.detach().clone() for p in ps], spec.hypers['lr']), **{k: bad}), k)
    refused(lambda: opt.set_hyper(k, bad), k)
    other = next((h for h in hyper_items(opt.param_groups[0]) if h != k), None)
    if other is not None: refused(lambda: opt.set_hypers(**{other: opt.param_groups[0][other], k: bad}), k)
    refused(lambda: opt.hypers[0].__setitem__(k, bad), k)
    n_groups = len(opt.param_groups)
    if not getattr(check, 'fixed', False):     # a new group may choose either value of a fixed check
        extra = torch.zeros(3, requires_grad=True)
        refused(lambda: opt.add_param_group({'params': [extra], k: bad}), k)
    assert len(opt.param_groups) == n_groups
    sd = opt.state_dict(); sd['param_groups'][0][k] = bad
    refused(lambda: opt.load_state_dict(sd), k)
    good = opt.param_groups[0][k]
    opt.param_groups[0][k] = bad
    for p in ps: p.grad = torch.ones_like(p)
    refused(opt.step, k)
    opt.param_groups[0][k] = good
    assert same(snapshot(ps, opt), before), (spec.name, k, bad)

# ------------------------------------------------------------------ property tests on state dicts
from hypothesis import given, settings, strategies as st, HealthCheck
SETTINGS = dict(deadline=None, derandomize=True, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
spec_names = st.sampled_from([s.name for s in SPECS])

def fresh(spec):
    shapes = spec.shapes or [(5, 3), (4,), (2, 3, 2), (6,)]
    ps = make_params(shapes=shapes)
    return ps, spec.build(groups_of(ps, spec.hypers['lr'])), shapes

@settings(**SETTINGS)
@given(spec_names, st.integers(1, 7), st.integers(0, 1000))
def test_valid_state_dicts_round_trip(name, steps, seed):
    "The state dict of any optimizer after any number of steps loads into a new one, which then steps exactly as the original"
    spec = OPTIMIZERS[name]
    ps, opt, shapes = fresh(spec)
    train_steps(opt, ps, make_grads(steps, shapes=shapes, seed=seed))
    ps2 = [p.detach().clone() for p in ps]
    opt2 = spec.build(groups_of(ps2, spec.hypers['lr']))
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    more = make_grads(2, shapes=shapes, seed=seed + 1)
    train_steps(opt, ps, more); train_steps(opt2, ps2, more)
    assert all(torch.equal(p, q) for p, q in zip(ps, ps2))

@st.composite
def broken(draw):
    "A registered optimizer with state, and one corruption of its state dict"
    name = draw(spec_names)
    kind = draw(st.sampled_from(['drop state key', 'extra state key', 'shape', 'bad hyper', 'missing hyper', 'extra hyper',
                                 'group count', 'param count', 'unknown param index', 'not a dict']))
    return name, kind, draw(st.integers(0, 10**6))

@settings(**SETTINGS)
@given(broken())
def test_invalid_state_dicts_are_refused_unchanged(case):
    name, kind, r = case
    spec = OPTIMIZERS[name]
    ps, opt, shapes = fresh(spec)
    train_steps(opt, ps, make_grads(3, shapes=shapes))
    sd, before = copy.deepcopy(opt.state_dict()), snapshot(ps, opt)
    states = [i for i, s in sd['state'].items() if s]
    g0 = sd['param_groups'][0]
    hypers = sorted(hyper_items(g0))
    if kind == 'drop state key':
        if not states: return
        i = states[r % len(states)]; del sd['state'][i][sorted(sd['state'][i])[r % len(sd['state'][i])]]
    elif kind == 'extra state key': sd['state'][states[r % len(states)] if states else 0] = {**sd['state'].get(0, {}), 'bogus': torch.zeros(1)}
    elif kind == 'shape':
        ts = [(i, k) for i in states for k, v in sd['state'][i].items() if isinstance(v, torch.Tensor) and v.dim() > 0]
        if not ts: return
        i, k = ts[r % len(ts)]; sd['state'][i][k] = torch.zeros(7, 7)
    elif kind == 'bad hyper':
        k = hypers[r % len(hypers)]
        bads = hyper_check(k, {**opt.checks, **chain_checks(opt.param_groups[0]['steppers'])}).bad_values
        g0[k] = bads[r % len(bads)]
    elif kind == 'missing hyper': del g0[hypers[r % len(hypers)]]
    elif kind == 'extra hyper': g0['bogus_hyper'] = 0.5
    elif kind == 'group count': sd['param_groups'] = sd['param_groups'][:1]
    elif kind == 'param count': g0['params'] = g0['params'][:-1]
    elif kind == 'unknown param index': sd['state'][999] = {}
    elif kind == 'not a dict': sd = {'state': [], 'param_groups': sd['param_groups']}
    with pytest.raises((ValueError, TypeError)): opt.load_state_dict(sd)
    assert same(snapshot(ps, opt), before), (name, kind)

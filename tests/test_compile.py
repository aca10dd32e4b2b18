"""`compile=True` (chapter 10a) equals the default path within 1e-6 in float32 over 20 steps of the registry's test
problem, with a schedule that changes `lr` (and `mom` where the optimizer has one) at every step, and compiles no new
graph once every pattern of gradients has been seen (the test problem's last tensor has no gradient every third step).
CI runs one optimizer (compiling takes seconds per graph); `OPTLIB_COMPILE_ALL=1` runs every one the registry lists
with the 'compile' path."""
import os, warnings, pytest, torch
import optlib.all
from optlib.registry import registered, make_params, make_grads, groups_of, SHAPES, max_diff

ALL = os.environ.get('OPTLIB_COMPILE_ALL') == '1'
SPECS = [s for s in registered('compile') if ALL or s.name == 'adamw']

def train(spec, compile, steps=20):
    shapes = spec.shapes or SHAPES
    ps = make_params(torch.float32, shapes)
    opt, graphs = spec.build(groups_of(ps, spec.hypers['lr']), compile=compile), []
    for i, gs in enumerate(make_grads(steps, torch.float32, shapes)):
        for g in opt.param_groups:
            g['lr'] *= 0.95
            if 'mom' in g: g['mom'] = 0.9 - 0.005 * i
        for p, gr in zip(ps, gs): p.grad = gr
        opt.step(); graphs.append(opt.compiled_graphs())
    return ps, opt, graphs

def test_registry_lists_compiled_paths():
    names = {s.name for s in registered('compile')}
    assert {'adamw', 'lamb', 'lion', 'momentum'} <= names

@pytest.mark.parametrize('spec', SPECS, ids=[s.name for s in SPECS])
def test_compiled_equals_default(spec):
    with warnings.catch_warnings():
        warnings.simplefilter('error', UserWarning)   # a fallback to the default path would warn: not here
        ps_c, opt_c, graphs = train(spec, True)
    ps_d, _, _ = train(spec, False)
    assert max_diff(ps_c, ps_d) < 1e-6, spec.name
    assert graphs[2] > 0 and graphs[-1] == graphs[2], (spec.name, graphs)   # no graph after the third step: lr and mom are inputs
    sd = opt_c.state_dict()
    fresh = spec.build(groups_of(make_params(torch.float32, spec.shapes or SHAPES), spec.hypers['lr']))
    fresh.load_state_dict(sd)
    for a, b in zip(sd['state'].values(), fresh.state_dict()['state'].values()):
        assert a.keys() == b.keys()
        for k in a: assert (a[k] == b[k]).all() if isinstance(a[k], torch.Tensor) else (a[k] == b[k] and type(a[k]) is type(b[k]))

def test_static_schedule_falls_back():
    "A schedule of a static hyper-parameter (wd: weight_decay branches on it) compiles 8 sets of constants, then warns and takes the default path, equal to the default path throughout"
    from optlib.stateful import SGD
    def run(compile):
        ps = make_params(torch.float32, SHAPES[:2])
        opt = SGD(ps, lr=0.1, wd=0.01, compile=compile)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            for i, gs in enumerate(make_grads(12, torch.float32, SHAPES[:2])):
                opt.set_hypers(wd=0.01 * (i + 1))
                for p, g in zip(ps, gs): p.grad = g if g is not None else torch.zeros_like(p)
                opt.step()
        return ps, opt, [str(x.message) for x in w]
    ps_c, opt, msgs = run(True)
    ps_d, _, _ = run(False)
    assert max_diff(ps_c, ps_d) < 1e-6
    assert sum('took 8 values' in m for m in msgs) == 4, msgs   # steps 9 to 12
    assert 8 <= opt.compiled_graphs() <= 9   # 8 sets of constants, one graph each (9 seen once: one set compiled two graphs)

"""optlib optimizers under torch.distributed (chapter 11e): DistributedDataParallel and ZeroRedundancyOptimizer in a
2-process gloo group on CPU give the weights (and the optimizer state) of one process on the full batch, for a few
optimizers of the registry (chapter 09a) and torch's AdamW; a ZeRO state dict taken with `zero_state_dict` is data
only (it travels back through torch.load(weights_only=True)) and loads into a one-process optimizer; NaN guards stay
in step across processes (a NaN in one process's batch reaches every process through DDP's all-reduce, so all of
them skip the same step). Every multi-process run goes through `optlib.distributed.run_distributed`, which forks
the processes and stops them after a timeout, so these tests cannot hang CI."""
import os
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import optlib.all
from optlib.registry import get_spec
from optlib.distributed import run_distributed, zero_state_dict
from optlib.interop import skip_nonfinite, load_optimizer_state

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not available')

STEPS, BS, WORLD = 6, 64, 2
REGISTERED = ['momentum', 'adamw', 'lamb', 'ranger']   # registry names: SGD with momentum, AdamW, LAMB, Lookahead over RAdam
NAMES = REGISTERED + ['torch AdamW']
NAN_STEP = 3

def make_opt(name, params):
    "The optimizer `name` on `params`: a registered one with its spec's hyper-parameters, or torch's AdamW"
    if name == 'torch AdamW': return torch.optim.AdamW(params, lr=1e-2)
    return get_spec(name).build(params)

def zero_class(name):
    "What ZeroRedundancyOptimizer calls on each process's share of the groups"
    return lambda params, **kw: make_opt(name, params)

def data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(STEPS * BS, 8, generator=g)
    return x, x[:, :3].sum(1, keepdim=True).tanh()

def make_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))

def train(model, opt, rank=0, world=1, nan_on=None):
    "STEPS steps on batches of BS, this rank's share of each; `nan_on`: the rank whose input has a NaN at step NAN_STEP"
    x, y = data()
    for i in range(STEPS):
        xb, yb = x[i*BS:(i+1)*BS].chunk(world)[rank].clone(), y[i*BS:(i+1)*BS].chunk(world)[rank]
        if i == NAN_STEP and rank == nan_on: xb[0, 0] = float('nan')
        F.mse_loss(model(xb), yb).backward()
        opt.step(); opt.zero_grad()

def ddp_worker(rank, world):
    "Every configuration in one process group: DDP, ZeRO, and the NaN guard under both"
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.distributed.optim import ZeroRedundancyOptimizer
    out = {}
    for name in NAMES:
        model = make_net(); ddp = DDP(model); opt = make_opt(name, ddp.parameters()); train(ddp, opt, rank, world)
        out[('ddp', name)] = [p.detach() for p in model.parameters()]
    for name in NAMES:
        model = make_net(); ddp = DDP(model)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=zero_class(name))
        train(ddp, opt, rank, world)
        opt.consolidate_state_dict(to=0)
        out[('zero', name)] = [p.detach() for p in model.parameters()]
        out[('zero state', name)] = zero_state_dict(opt) if rank == 0 else None
        out[('zero local', name)] = sum(len(s) > 0 for s in opt.optim.state.values())
    # a NaN in rank 1's input: DDP's all-reduce spreads its NaN gradient, so every rank skips the same step
    model = make_net(); ddp = DDP(model); opt = skip_nonfinite(make_opt('adamw', ddp.parameters()))
    train(ddp, opt, rank, world, nan_on=1)
    out[('nan ddp', 'adamw')] = ([p.detach() for p in model.parameters()], opt.n_skipped)
    model = make_net(); ddp = DDP(model)
    opt = skip_nonfinite(ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=zero_class('adamw')))
    train(ddp, opt, rank, world, nan_on=1)
    out[('nan zero', 'adamw')] = ([p.detach() for p in model.parameters()], opt.n_skipped)
    return out

@pytest.fixture(scope='module')
def dist_results():
    return run_distributed(ddp_worker, world_size=WORLD, timeout=120)

def single(name):
    model = make_net(); opt = make_opt(name, model.parameters()); train(model, opt)
    return model, opt

def close(ps, qs, eps=1e-6):
    return all(torch.allclose(p, q, rtol=eps, atol=eps) for p, q in zip(ps, qs))

def test_registry_names():
    for name in REGISTERED: assert get_spec(name).name == name

@pytest.mark.parametrize('name', NAMES)
def test_ddp_equals_one_process(dist_results, name):
    model, _ = single(name)
    moved = max((p - q).abs().max().item() for p, q in zip(model.parameters(), make_net().parameters()))
    assert moved > 1e-3, name   # the agreement is not that of two optimizers doing nothing
    for r in dist_results: assert close(r[('ddp', name)], list(model.parameters())), f'rank {dist_results.index(r)}'
    assert all(torch.equal(a, b) for a, b in zip(dist_results[0][('ddp', name)], dist_results[1][('ddp', name)]))

@pytest.mark.parametrize('name', NAMES)
def test_zero_equals_one_process(dist_results, name):
    model, opt = single(name)
    for r in dist_results: assert close(r[('zero', name)], list(model.parameters()))
    # each process kept the state of its share of the parameters only
    n_local = [r[('zero local', name)] for r in dist_results]
    assert sum(n_local) == 4 and max(n_local) < 4, n_local
    # the consolidated state dict is an ordinary one: it loads into a one-process optimizer and equals its state
    fresh = make_opt(name, make_net().parameters())
    load_optimizer_state(fresh, dist_results[0][('zero state', name)])
    for p, q in zip(fresh.param_groups[0]['params'], opt.param_groups[0]['params']):
        assert set(fresh.state[p]) == set(opt.state[q])
        for k, v in opt.state[q].items():
            w = fresh.state[p][k]
            assert (torch.allclose(w, v, rtol=1e-6, atol=1e-6) if isinstance(v, torch.Tensor) else w == v), k

@pytest.mark.parametrize('kind', ['nan ddp', 'nan zero'])
def test_nonfinite_step_skipped_on_every_rank(dist_results, kind):
    (p0, n0), (p1, n1) = dist_results[0][(kind, 'adamw')], dist_results[1][(kind, 'adamw')]
    assert n0 == n1 == 1
    assert all(torch.equal(a, b) for a, b in zip(p0, p1)) and all(a.isfinite().all() for a in p0)
    # the same as one process that never took that step
    model = make_net(); opt = make_opt('adamw', model.parameters()); x, y = data()
    for i in range(STEPS):
        F.mse_loss(model(x[i*BS:(i+1)*BS]), y[i*BS:(i+1)*BS]).backward()
        if i != NAN_STEP: opt.step()
        opt.zero_grad()
    assert close(p0, list(model.parameters()))

def _raises(rank, world):
    if rank == 1: raise ValueError('boom on rank 1')
    return rank

def test_errors_and_timeouts_are_reported():
    with pytest.raises(RuntimeError, match='boom on rank 1'): run_distributed(_raises, timeout=60)

def _aborts(rank, world):
    if rank == 1: os.abort()
    return rank

def test_a_crash_names_its_signal():
    with pytest.raises(RuntimeError, match=r"\(1, '-6 \(SIGABRT\)'\)"): run_distributed(_aborts, timeout=60)

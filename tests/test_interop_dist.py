"""optlib optimizers under torch.distributed: DistributedDataParallel and ZeroRedundancyOptimizer in a 2-process
gloo group on CPU give the weights (and the optimizer state) of one process on the full batch; NaN guards stay in
step across processes (a NaN in one process's batch reaches every process through DDP's all-reduce, so all of
them skip the same step; a gradient edited after `backward` on one process only would not be seen by the others,
and under ZeRO their steps' collectives would no longer match). Every multi-process run goes through `optlib.interop.run_distributed`, which forks the
processes and stops them after a timeout, so these tests cannot hang CI."""
import copy
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from optlib.interop import run_distributed, skip_nonfinite, load_optimizer_state
from optlib.stateful import SGD, Adam, Lamb, ranger

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason='torch.distributed is not available')

STEPS, BS, WORLD = 6, 64, 2
OPTS = {   # name: make(params) -- module-level callables, so they also work with the 'spawn' start method
    'SGD momentum': lambda ps, **kw: SGD(ps, lr=0.05, mom=0.9, wd=1e-2, **kw),
    'Adam': lambda ps, **kw: Adam(ps, lr=1e-2, **kw),
    'Lamb': lambda ps, **kw: Lamb(ps, lr=1e-2, **kw),
    'ranger': lambda ps, **kw: ranger(ps, lr=1e-2, k=3, **kw),
    'torch AdamW': lambda ps, **kw: torch.optim.AdamW(ps, lr=1e-2, **kw),
}
ZERO_OPTS = ['SGD momentum', 'Adam', 'Lamb', 'torch AdamW']   # ZeroRedundancyOptimizer builds them from param groups
NAN_STEP = 3

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
    for name, make in OPTS.items():
        model = make_net(); ddp = DDP(model); opt = make(ddp.parameters()); train(ddp, opt, rank, world)
        out[('ddp', name)] = [p.detach() for p in model.parameters()]
    for name in ZERO_OPTS:
        model = make_net(); ddp = DDP(model)
        opt = ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=OPTS[name])
        train(ddp, opt, rank, world)
        opt.consolidate_state_dict(to=0)
        out[('zero', name)] = [p.detach() for p in model.parameters()]
        out[('zero state', name)] = opt.state_dict() if rank == 0 else None
        out[('zero local', name)] = sum(len(s) > 0 for s in opt.optim.state.values())
    # a NaN in rank 1's input: DDP's all-reduce spreads its NaN gradient, so every rank skips the same step
    model = make_net(); ddp = DDP(model); opt = skip_nonfinite(OPTS['Adam'](ddp.parameters()))
    train(ddp, opt, rank, world, nan_on=1)
    out[('nan ddp', 'Adam')] = ([p.detach() for p in model.parameters()], opt.n_skipped)
    model = make_net(); ddp = DDP(model)
    opt = skip_nonfinite(ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=OPTS['Adam']))
    train(ddp, opt, rank, world, nan_on=1)
    out[('nan zero', 'Adam')] = ([p.detach() for p in model.parameters()], opt.n_skipped)
    return out

@pytest.fixture(scope='module')
def dist_results():
    return run_distributed(ddp_worker, world_size=WORLD, timeout=120)

def single(name, **kw):
    model = make_net(); opt = OPTS[name](model.parameters(), **kw); train(model, opt)
    return model, opt

def close(ps, qs, eps=1e-6):
    return all(torch.allclose(p, q, rtol=eps, atol=eps) for p, q in zip(ps, qs))

@pytest.mark.parametrize('name', list(OPTS))
def test_ddp_equals_one_process(dist_results, name):
    model, _ = single(name)
    for r in dist_results: assert close(r[('ddp', name)], list(model.parameters())), f'rank {dist_results.index(r)}'
    assert all(torch.equal(a, b) for a, b in zip(dist_results[0][('ddp', name)], dist_results[1][('ddp', name)]))

@pytest.mark.parametrize('name', ZERO_OPTS)
def test_zero_equals_one_process(dist_results, name):
    model, opt = single(name)
    for r in dist_results: assert close(r[('zero', name)], list(model.parameters()))
    # each process kept the state of its share of the parameters only
    n_local = [r[('zero local', name)] for r in dist_results]
    assert sum(n_local) == 4 and max(n_local) < 4, n_local
    # the consolidated state dict is an ordinary one: it loads into a one-process optimizer and equals its state
    fresh = OPTS[name](make_net().parameters())
    load_optimizer_state(fresh, dist_results[0][('zero state', name)])
    for p, q in zip(fresh.param_groups[0]['params'], opt.param_groups[0]['params']):
        for k, v in opt.state[q].items():
            w = fresh.state[p][k]
            assert (torch.allclose(w, v, rtol=1e-6, atol=1e-6) if isinstance(v, torch.Tensor) else w == v), k

@pytest.mark.parametrize('kind', ['nan ddp', 'nan zero'])
def test_nonfinite_step_skipped_on_every_rank(dist_results, kind):
    (p0, n0), (p1, n1) = dist_results[0][(kind, 'Adam')], dist_results[1][(kind, 'Adam')]
    assert n0 == n1 == 1
    assert all(torch.equal(a, b) for a, b in zip(p0, p1)) and all(a.isfinite().all() for a in p0)
    # the same as one process that never took that step
    model = make_net(); opt = OPTS['Adam'](model.parameters()); x, y = data()
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

"""optlib in PyTorch Lightning (chapter 11f): an optlib optimizer with torch's or optlib's schedule returned by
`configure_optimizers` trains exactly as the plain loop; resuming from Lightning's checkpoint (written every 8 steps,
at the end of an epoch) is bit for bit; `ScheduleFreeCallback` gives schedulefree's AdamW the plain loop's
validation losses, final weights and exact resumption. `optlib.lightning` imports without Lightning."""
import glob, logging, subprocess, sys, tempfile, warnings
import pytest
import torch
import torch.nn.functional as F
from torch import nn

pl = pytest.importorskip('pytorch_lightning')
from optlib.lightning import ScheduleFreeCallback, set_train_mode
from optlib.stateful import Adam, Lamb, Lookahead, SGD
from optlib.schedulers import sched_cos

logging.getLogger('pytorch_lightning').setLevel(logging.ERROR)
pytestmark = pytest.mark.filterwarnings('ignore')
STEPS, EVERY, BS = 16, 8, 32
X = torch.randn(EVERY * BS, 8, generator=torch.Generator().manual_seed(0)); Y = X[:, :3].sum(1, keepdim=True).tanh()

def loader(n=EVERY * BS, bs=BS):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X[:n], Y[:n]), batch_size=bs, shuffle=False)

def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))

class Regression(pl.LightningModule):
    def __init__(self, make_opt, seed=0):
        super().__init__(); self.net, self.make_opt, self.val_losses = make_net(seed), make_opt, []
    def training_step(self, batch, i): x, y = batch; return F.mse_loss(self.net(x), y)
    def validation_step(self, batch, i): x, y = batch; self.val_losses.append(F.mse_loss(self.net(x), y).item())
    def configure_optimizers(self):
        r = self.make_opt(self.net.parameters())
        return {'optimizer': r[0], 'lr_scheduler': {'scheduler': r[1], 'interval': 'step'}} if isinstance(r, tuple) else r

def trainer(**kw):
    return pl.Trainer(max_steps=STEPS, accelerator='cpu', logger=False, enable_progress_bar=False, enable_model_summary=False,
                      deterministic=True, num_sanity_val_steps=0, **{'enable_checkpointing': False, **kw})

def batches():
    while True: yield from loader()

def plain(make_opt):
    net = make_net(); r = make_opt(net.parameters()); opt, sched = r if isinstance(r, tuple) else (r, None)
    for _, (x, y) in zip(range(STEPS), batches()):
        opt.zero_grad(); F.mse_loss(net(x), y).backward(); opt.step()
        if sched: sched.step()
    return net

def with_sched(opt_func, sched_func):
    def make(ps):
        opt = opt_func(ps); return opt, sched_func(opt)
    return make

one_cycle = lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=STEPS, cycle_momentum=False)
_cos = sched_cos(1e-2, 1e-4)
CASES = {'adam_onecycle': with_sched(lambda ps: Adam(ps, lr=1e-2), one_cycle),
         'lamb_optlib_cos': with_sched(lambda ps: Lamb(ps, lr=1e-2), lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda t: _cos(t/STEPS)/1e-2)),
         'sgd_momentum': lambda ps: SGD(ps, lr=0.05, mom=0.9, wd=1e-2),
         'lookahead_onecycle': with_sched(lambda ps: Lookahead(Adam(ps, lr=1e-2), k=3), one_cycle)}

def same(a, b): return all(map(torch.equal, a.parameters(), b.parameters()))

def checkpointed(make, callbacks=()):
    "An uninterrupted run with Lightning's checkpoint every EVERY steps (the end of each epoch), and a new model resumed from the first"
    d = tempfile.mkdtemp(); m = Regression(make)
    ck = pl.callbacks.ModelCheckpoint(dirpath=d, every_n_train_steps=EVERY, save_top_k=-1)
    trainer(enable_checkpointing=True, callbacks=[*callbacks, ck], default_root_dir=d).fit(m, loader())
    r = Regression(make, seed=1)
    trainer(callbacks=list(callbacks)).fit(r, loader(), ckpt_path=next(c for c in glob.glob(f'{d}/*.ckpt') if f'step={EVERY}' in c))
    return m, r

@pytest.mark.parametrize('name', CASES)
def test_configure_optimizers_is_the_plain_loop(name):
    m = Regression(CASES[name]); trainer().fit(m, loader())
    assert same(m.net, plain(CASES[name]))
    assert (m.net[0].weight - make_net()[0].weight).abs().max() > 1e-3

@pytest.mark.parametrize('name', ['adam_onecycle', 'lookahead_onecycle'])
def test_resume_from_lightning_checkpoint(name):
    m, r = checkpointed(CASES[name])
    assert same(m.net, r.net)

def sf(ps):
    import schedulefree
    return schedulefree.AdamWScheduleFree(ps, lr=1e-2, warmup_steps=4)

def test_schedule_free_callback():
    pytest.importorskip('schedulefree')
    net = make_net(); opt = sf(net.parameters()); losses = []
    for i, (x, y) in zip(range(STEPS), batches()):
        opt.train(); opt.zero_grad(); F.mse_loss(net(x), y).backward(); opt.step()
        if (i + 1) % EVERY == 0:
            opt.eval()
            with torch.no_grad(): losses += [F.mse_loss(net(xv), yv).item() for xv, yv in loader(128, 64)]
    opt.eval()
    def fit(cbs):
        m = Regression(sf); trainer(val_check_interval=EVERY, check_val_every_n_epoch=None, callbacks=cbs).fit(m, loader(), loader(128, 64))
        return m
    m = fit([ScheduleFreeCallback()])
    assert m.val_losses == losses and same(m.net, net)
    assert m.trainer.optimizers[0].param_groups[0]['train_mode'] is False   # evaluation mode after fit: the model holds x
    with pytest.raises(Exception, match='not in train mode'): fit([])
    m, r = checkpointed(sf, [ScheduleFreeCallback()])
    assert same(m.net, r.net)

def test_set_train_mode_leaves_other_optimizers():
    p = torch.zeros(2, requires_grad=True)
    a, b = Adam([p], lr=1e-2), sf([p])
    set_train_mode([a, b], True); assert b.param_groups[0]['train_mode'] is True
    set_train_mode([a, b], False); assert b.param_groups[0]['train_mode'] is False

def test_imports_without_lightning():
    code = ("import sys; sys.modules['lightning'] = sys.modules['lightning.pytorch'] = sys.modules['pytorch_lightning'] = None\n"
            "import optlib.all, optlib.lightning as L\n"
            "try: L.ScheduleFreeCallback()\n"
            "except ImportError as e: print('ImportError', e)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('ImportError') and 'pip install lightning' in out.stdout

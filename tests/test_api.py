"The public API: `optlib.all` exports every public name of every module, and `import optlib` alone gives every Optimizer the multi-tensor engine"
import importlib, pkgutil, subprocess, sys
import optlib, optlib.all

def modules():
    return [importlib.import_module(f'optlib.{m.name}') for m in pkgutil.iter_modules(optlib.__path__) if not m.name.startswith('_') and m.name != 'all']

def test_all_is_the_union_of_every_module():
    exported = {n for n in dir(optlib.all) if not n.startswith('_')}
    mods = modules()
    assert len(mods) >= 8
    for m in mods:
        assert hasattr(m, '__all__'), m.__name__
        missing = set(m.__all__) - exported
        assert not missing, (m.__name__, sorted(missing))
    union = set().union(*(m.__all__ for m in mods))
    for name in ('Optimizer', 'stepper', 'sgd_step', 'weight_decay', 'l2_reg', 'TensorList', 'check_hyper', 'HyperView',
                 'register', 'OptimizerSpec', 'Adam', 'Learner', 'DataLoaders', 'ParamScheduler'):
        assert name in union, name

def test_import_optlib_gives_the_engine():
    code = ("import optlib.optimizer as o, torch; from optlib.stateful import Adam; import optlib.compiled as c; "
            "print(o.Optimizer._step_group.__module__, c._default_step_group.__module__)")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == 'optlib.compiled optlib.multitensor'   # chapter 10a's step (compile=True) over chapter 10's engine

def test_star_import():
    ns = {}
    exec('from optlib.all import *', ns)
    for name in ('Optimizer', 'sgd_step', 'weight_decay', 'l2_reg', 'TensorList', 'HyperView', 'check_hyper', 'Adam', 'SGD', 'Learner', 'OPTIMIZERS'):
        assert name in ns, name

"""Everything public in optlib, for `from optlib.all import *`: the union of every module's `__all__`"""
from .optimizer import *
from .registry import *
from .stateful import *
from .modern import *
from .multitensor import *
from .schedulers import *
from .data import *
from .learner import *
from .interop import *
from .closures import *
from .groups import *
from .callbacks import *
from .checkpoints import *
from .distributed import *
from .lightning import *
from .race import *
from .compare import *

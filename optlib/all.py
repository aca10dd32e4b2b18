"""Everything public in optlib, for `from optlib.all import *`"""
from .data import *
from .learner import *
from .stateful import *
from .schedulers import *
from .interop import *

__version__ = "0.1.0"

from . import multitensor as _engine  # chapter 10: the multi-tensor engine is part of every Optimizer, whatever module is imported
from . import compiled as _compiled   # chapter 10a: `compile=True`, each group's chain as compiled graphs

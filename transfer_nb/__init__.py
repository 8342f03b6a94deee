__version__ = "0.0.1"

import warnings
# Two warnings third-party packages raise when transfer_nb imports them, each naming a file on the user's machine and
# neither about anything a user of transfer_nb can change: filtered here, once, for every module and notebook.
# fastai.layers decorates with `torch.jit.script` at import, which torch ≥ 2.10 deprecates;
warnings.filterwarnings('ignore', message=r'`torch\.jit\.script` is deprecated', category=FutureWarning)
# fastai.tabular.core (imported by fastai.callback.progress) sets a pandas option that pandas 3 deprecates.
warnings.filterwarnings('ignore', message=r".*'mode\.chained_assignment' option is deprecated")

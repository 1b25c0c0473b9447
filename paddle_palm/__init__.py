"""paddle_palm: pathologic-myopia screening on fundus photographs with PaddlePaddle.

Subpackages follow the data flow (STYLE.md): ``data`` (archives, labels, readers,
datasets) -> ``models`` (the architecture zoo and its registry) -> ``engine``
(training, evaluation, checkpoints) -> ``viz`` (plots).  Importing this package
does not import Paddle; the subpackages that need it do.
"""

from paddle_palm import compat
from paddle_palm.errors import PalmError

compat.load_zlib_before_paddle()  # before anything imports Paddle 2.6 (see the function)

__version__ = "0.1.0"

__all__ = ["PalmError", "__version__"]

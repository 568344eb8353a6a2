"""The Gemma4Deployment API (``serving.gemma4.dev/v1alpha1``): spec and status models, metric names, CRD.

``from gemma4_operator.api import X`` is the public import path; the models live in ``api.models``.
"""

from gemma4_operator.api.models import *  # noqa: F403 - the package is the API's public surface
from gemma4_operator.api.models import __all__ as __all__

"""How Plumbline's flows are run: the deployment definitions, ``serve`` and ``up``.

``prefect.yaml`` (work pools, scale-out) and ``deployments.specs`` (``plumbline serve``, the
embedded default) describe the same deployments; a test keeps them in agreement.
"""

from deployments.specs import SPECS, DeploymentSpec, spec_by_name

__all__ = ["SPECS", "DeploymentSpec", "spec_by_name"]

"""Console: the operations API (``rigwatch console``) on the control-plane topics.

A faust-streaming app: rig.alerts, rig.metrics, rig.deployments, rig.audit and
rig.scorer-status are folded into in-memory tables and served as JSON under
``/api/v1`` with role-checked API tokens; scoring and the lifecycle operations
call the same code as the scorer and the command line.
"""

from wallie_common.testing import node_process, probe, ros_context, ros_env  # noqa: F401

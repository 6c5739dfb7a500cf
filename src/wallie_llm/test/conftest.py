from wallie_common.testing import node_process, probe, ros_env  # noqa: F401

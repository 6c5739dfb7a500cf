from wallie_testing.fixtures import node_process, probe, ros_context, ros_env  # noqa: F401

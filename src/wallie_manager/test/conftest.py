from wallie_testing.fixtures import node_process, probe, ros_env  # noqa: F401

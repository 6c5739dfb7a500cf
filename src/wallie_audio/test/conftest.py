from wallie_common.testing import ros_env, probe, node_process  # noqa

"""Bring the whole Wallie assistant up: `ros2 launch wallie_bringup bringup.launch.py`.

The node list, executables, dependency order and parameter layering come from this package
(wallie_bringup.graph, wallie_bringup.config) -- the same source `wallie up` uses without a
ROS distro, so the two cannot drift. Every stage is a lifecycle node with respawn; the manager
node drives them configure -> activate in dependency order, re-drives a respawned stage
(with timeouts, retries and GetState checks, which launch's own ChangeState events lack),
and reports readiness on `assistant/state`.

Examples:
  ros2 launch wallie_bringup bringup.launch.py
  ros2 launch wallie_bringup bringup.launch.py profile:=gpu namespace:=robot1 log_level:=debug
  ros2 launch wallie_bringup bringup.launch.py params_file:=/path/my_params.yaml use_respawn:=false
  ros2 launch wallie_bringup bringup.launch.py input:=question.wav output:=answer.wav no_wake:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessStart
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

try:  # Jazzy and later
    from launch_ros.actions import PushROSNamespace
except ImportError:  # Humble
    from launch_ros.actions import PushRosNamespace as PushROSNamespace

ARGUMENTS = (
    ('namespace', '', 'ROS namespace of every Wallie node.'),
    ('params_file', '', 'Extra ROS parameter file, layered over the profile and '
                        '~/.wallie_voice_bot/config.toml.'),
    ('profile', '', 'Parameter profile: cpu or gpu (empty: config.toml `profile`, else cpu).'),
    ('config_file', '', 'config.toml to read (empty: $WALLIE_CONFIG or '
                        '~/.wallie_voice_bot/config.toml).'),
    ('use_respawn', 'true', 'Respawn a node process that exits.'),
    ('log_level', 'info', 'Log level of every node: debug, info, warn, error.'),
    ('autostart', 'true', 'The manager configures and activates the stages at start-up.'),
    ('skip', '', 'Comma-separated nodes not to start (replay.launch.py skips capture).'),
    ('input', '', 'Read the microphone audio from this WAV/FLAC file or rosbag2 (directory, '
                  '.mcap or .db3) instead of the microphone.'),
    ('output', '', 'Write replies to this WAV file, or `null`, instead of the speaker.'),
    ('no_wake', 'false', 'No wake word: every utterance is a turn.'),
)


def _truthy(text: str) -> bool:
    return text.strip().lower() in ('1', 'true', 'yes', 'on')


def _setup(context):
    from wallie_bringup import bringup
    from wallie_bringup import config as wconfig
    from wallie_bringup.supervisor import write_pid

    def arg(name):
        return LaunchConfiguration(name).perform(context)

    skip = [n.strip() for n in arg('skip').split(',') if n.strip()]
    cli_params = {}
    if arg('input'):
        cli_params['capture'] = wconfig.input_params(arg('input'))
    if arg('output'):
        cli_params['player'] = wconfig.output_params(arg('output'))
    if _truthy(arg('no_wake')):
        cli_params['voice_gate'] = dict(wconfig.NO_WAKE_PARAMS)

    plan, run_dir = bringup.launch_plan_for(
        profile=arg('profile'), params_file=arg('params_file'),
        config_file=arg('config_file'),
        use_respawn=_truthy(arg('use_respawn')), log_level=arg('log_level'),
        autostart=_truthy(arg('autostart')), skip=skip, cli_params=cli_params)
    # The namespace is pushed once for the group; each node's own namespace stays relative.
    actions = [PushROSNamespace(arg('namespace'))] if arg('namespace').strip('/') else []
    for entry in plan:
        kind = entry.pop('kind')
        name = entry['name']
        entry['namespace'] = ''
        node = LifecycleNode(**entry) if kind == 'lifecycle' else Node(**entry)
        actions.append(node)
        # The manager watches processes through pid files, as under `wallie up`.
        actions.append(RegisterEventHandler(OnProcessStart(
            target_action=node,
            on_start=lambda event, _ctx, name=name: write_pid(run_dir, name, event.pid))))
    return [GroupAction(actions)]


def generate_launch_description():
    """Declare the launch arguments; the nodes are built from them when the launch runs."""
    args = [DeclareLaunchArgument(name, default_value=default, description=desc)
            for name, default, desc in ARGUMENTS]
    return LaunchDescription(args + [OpaqueFunction(function=_setup)])

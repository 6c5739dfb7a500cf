# Source this (bash/zsh) to use the ROS 2 tools on the Wallie venv without a ROS distro:
#   source scripts/ros_env.sh
#   ros2 launch wallie_bringup bringup.launch.py
# It needs scripts/ros_tooling.sh (or scripts/setup.sh --ros) to have run once. It puts the
# venv first on PATH and the colcon install layout (install/) and the venv on the ament
# index path. Nothing else: the console scripts in install/lib/<pkg>/ run the venv's Python
# and import the venv's (editable) Wallie packages.
_wallie_root="$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")/.." && pwd)"
_wallie_venv="${WALLIE_VENV:-$_wallie_root/.venv}"
if [ ! -d "$_wallie_root/install/share/ament_index" ]; then
  echo "ros_env.sh: no install/ layout yet: run scripts/ros_tooling.sh first" >&2
else
  export PATH="$_wallie_venv/bin:$PATH"
  export AMENT_PREFIX_PATH="$_wallie_root/install:$_wallie_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
  export ROS_DISTRO="${ROS_DISTRO:-jazzy}"
  export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
fi
unset _wallie_root _wallie_venv

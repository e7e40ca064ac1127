# shellcheck shell=bash
# Run-time environment of the edgetam_ros package built by scripts/build_ros.sh:
#   source scripts/ros_env.sh
# - activates .venv (ROS 2 Kilted wheels, torch) and sources build/ros/install/setup.bash;
# - keeps DDS on this machine: the loopback-only Fast DDS profile (config/fastdds_loopback.xml),
#   ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, and a ROS_DOMAIN_ID of this shell's own (1..100,
#   from its pid) unless one is set already.
_edgetam_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_edgetam_venv=${VENV:-$_edgetam_root/.venv}
if [ -f "$_edgetam_venv/bin/activate" ] && [ "${VIRTUAL_ENV:-}" != "$_edgetam_venv" ]; then
  # shellcheck disable=SC1091
  source "$_edgetam_venv/bin/activate"
fi
export AMENT_PREFIX_PATH="$_edgetam_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
if [ -f "$_edgetam_root/build/ros/install/setup.bash" ]; then
  # colcon's setup scripts read unset variables: relax `set -u` while sourcing.
  case $- in *u*) _edgetam_u=1; set +u ;; *) _edgetam_u=0 ;; esac
  # shellcheck disable=SC1091
  source "$_edgetam_root/build/ros/install/setup.bash"
  [ "$_edgetam_u" = 1 ] && set -u
  unset _edgetam_u
else
  echo "ros_env.sh: edgetam_ros is not built yet: run scripts/build_ros.sh" >&2
fi
export RMW_IMPLEMENTATION=${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}
export FASTDDS_DEFAULT_PROFILES_FILE="$_edgetam_root/config/fastdds_loopback.xml"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( $$ % 100 + 1 ))}
unset _edgetam_root _edgetam_venv

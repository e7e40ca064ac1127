"""rosbag2 record and replay for edgetam_ros, on the pure-Python ``rosbags`` library.

- ``messages``: the type store (standard ROS 2 types + this package's ``msg/*.msg``), the
  bag's topic names and message builders.
- ``bagio``: writing and reading bags (mcap or sqlite3).
- ``from_frames``: a frame folder or video (+ ground truth, prompts) -> a bag.
- ``offline``: the tracker node's logic run straight over a bag, no DDS.
- ``evaluate``: J&F, latency and dropped frames of recorded masks against a bag's ground truth.
- ``replay``: publish a bag over DDS with its timing and record topics (needs rclpy; the only
  module here that imports it).
- ``cli``: ``edgetam-bag``; ``demo``: the whole product on the bundled demo model.

Everything except ``replay`` (and the demo, which runs it) works without ROS installed.
"""

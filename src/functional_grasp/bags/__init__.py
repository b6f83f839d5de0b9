"""rosbag2 (MCAP) record, replay and regression check for the grasp stack (``fgrasp record`` / ``replay``).

Modules: :mod:`.catalog` (which topics, their types and QoS), :mod:`.bagfile` (validated
reading, atomic writing; rosbags only), :mod:`.compare` (pure: grasp outputs of a bag and their
diff against a reference), :mod:`.recorder` / :mod:`.player` (rclpy, raw CDR bytes),
:mod:`.replay` and :mod:`.record` (the two commands), :mod:`.sample` (regenerates the shipped
sample bag from the simulator).
"""

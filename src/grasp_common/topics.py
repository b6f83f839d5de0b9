"""Default topic names of the node graph (each is a parameter/remapping of the node using it)."""

COLOR_IMAGE = "/camera/color/image_raw"          # sensor_msgs/Image, rgb8
DEPTH_IMAGE = "/camera/depth/image_raw"          # sensor_msgs/Image, 32FC1 metres (16UC1 mm accepted)
CAMERA_INFO = "/camera/color/camera_info"        # sensor_msgs/CameraInfo (depth registered to color)
OBJECT_CLOUD = "/grasp_perception/object_cloud"  # sensor_msgs/PointCloud2 xyz+rgb+uv (pixel), base frame
OBJECT_IMAGE = "/grasp_perception/object_image"  # sensor_msgs/Image: the colour frame OBJECT_CLOUD came from (same stamp)
OBJECT_MASK = "/grasp_perception/object_mask"    # sensor_msgs/Image mono8, 255 = target object
JOINT_STATES = "/joint_states"                   # sensor_msgs/JointState, arm + hand
JOINT_GOAL = "/grasp_planner/joint_goal"         # sensor_msgs/JointState, grasp configuration
GRASP_TRAJECTORY = "/grasp_planner/trajectory"   # trajectory_msgs/JointTrajectory, arm + hand
GRASP_MARKERS = "/grasp_planner/markers"         # visualization_msgs/MarkerArray
PLANNER_STATUS = "/grasp_planner/status"         # std_msgs/String (JSON): timings, failure reason
OBJECT_POSE = "/sim/object_pose"                 # geometry_msgs/PoseStamped, base frame
GRASP_RESULT = "/sim/grasp_result"               # std_msgs/String (JSON): held, max displacement
